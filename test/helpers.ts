/**
 * Shared test utilities: one GPU per test process, seeded random data, float comparison with stated
 * tolerances, and fast-check settings sized for lavapipe (a CPU pretending to be a GPU: keep shapes small).
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import fc from 'fast-check';
import { closeGpu, initGpu, type Gpu } from '../src/gpu/device.ts';
import { Rng } from '../src/util/rng.ts';
import { refArray, type RefArray } from '../src/ref/array.ts';
import { Tensor } from '../src/tensor/tensor.ts';

export { assert };

export function setupGpu(): Promise<Gpu> {
  return initGpu();
}

// Every test file that imports this closes its GPU once its tests are done: the GPU work finishes and the
// device is destroyed while the runtime still runs, rather than being left to garbage collection as the
// file's runtime ends (under `deno test` every file has a runtime of its own in one process).
after(closeGpu);

const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};

/** fast-check runs per property: small, since every run launches GPU kernels on a CPU. */
export const RUNS = Number(env.ODC_TEST_RUNS ?? 12);

// Property seeds: CI (CI=true) replays the same cases every run, so its verdict is reproducible; other
// runs draw new cases each time. FC_SEED=<seed printed by a failing property> replays that run (use it
// with the runner's test-name filter).
const seed = env.FC_SEED ?? (env.CI === 'true' ? '1' : undefined);
if (seed !== undefined) fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: Number(seed) });

/** Values uniform in [-1, 1) from a seed. */
export function randomValues(seed: number, n: number, lo = -1, hi = 1): Float64Array {
  const rng = new Rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.range(lo, hi);
  return out;
}

/** n integers uniform in [0, bound) from a seed (labels, row indices). */
export function randomInts(seed: number, n: number, bound: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => rng.int(bound));
}

/** A reference array and the equal GPU tensor (the f32 rounding of the same values). */
export function randomPair(seed: number, shape: number[], lo = -1, hi = 1): { ref: RefArray; gpu: Tensor<'f32'> } {
  const values = Float64Array.from(
    Float32Array.from(
      randomValues(
        seed,
        shape.reduce((a, b) => a * b, 1),
        lo,
        hi,
      ),
    ),
  );
  return { ref: refArray(shape, values), gpu: Tensor.from(values, shape) };
}

export interface Tolerance {
  rtol: number;
  atol: number;
}

/**
 * f32 GPU vs f64 reference: |a - e| <= atol + rtol * |e| elementwise. Tolerances are per test and
 * scale with the length of the reductions involved (f32 epsilon is 1.2e-7; a sum of k terms of size
 * ~1 carries an error of order sqrt(k) * 1e-7 in random order, k * 1e-7 worst case).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
  what = 'values',
): void {
  assert.equal(actual.length, expected.length, `${what}: length ${actual.length} != ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const e = expected[i];
    const excess = Math.abs(a - e) - (tol.atol + tol.rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
      if (Number.isNaN(excess)) break;
    }
  }
  if (worst >= 0) {
    assert.fail(
      `${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (rtol ${tol.rtol}, atol ${tol.atol})`,
    );
  }
}
