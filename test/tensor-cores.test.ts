/**
 * The tensor-core GEMM (subgroup matrices) and its self-check. lavapipe lists no subgroup-matrix config,
 * so the kernel's own compile-and-compare test skips there and says why; the self-check is tested by
 * handing it candidates: a right one (it is then used for f16 GEMMs) and a wrong one (it must disable
 * itself with one warning, and f16 training goes on without it).
 */
import { test, before, afterEach } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, randomPair, setupGpu } from './helpers.ts';
import { matmul, runGemm, type PlainGemm } from '../src/ops/matmul.ts';
import { setWorkingPrecision } from '../src/ops/precision.ts';
import {
  checkTensorCores,
  paddedGemm,
  resetTensorCores,
  tensorCoreConfig,
  tensorCoreStatus,
} from '../src/ops/tensor-cores.ts';
import { toF16 } from '../src/ops/precision.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { tidy } from '../src/tensor/scope.ts';
import { refMatmul } from '../src/ref/matmul.ts';
import { refConv2d } from '../src/ref/conv.ts';
import { conv2d } from '../src/ops/conv.ts';
import { refMap } from '../src/ref/array.ts';
import { refRoundF16 } from '../src/ref/precision.ts';
import { train } from '../src/odc/trainer.ts';
import { applyOverride } from '../src/config/settings.ts';
import { syntheticDataset, tinyConfig } from './train-fixtures.ts';
import { assertWithinSumBound } from './gemm-bound.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});
afterEach(() => {
  resetTensorCores();
  if (hasF16) setWorkingPrecision('f32');
});

/** The f16 GEMM without tensor cores, counting its calls: a candidate that is right by construction. */
function countingCandidate(kDrop = 0): { run: PlainGemm; calls: () => number } {
  let calls = 0;
  return {
    run: (a, b, out, M, N, K) => {
      calls++;
      // kDrop > 0 makes it a wrong kernel: it forgets the last k terms (as an off-by-one K tile would).
      // An explicit split count keeps runGemm from routing this GEMM back to the candidate itself.
      runGemm({ mode: 'matmul', M, N, K: Math.max(1, K - kDrop), a, b, out, precision: 'f16', splits: 1 });
    },
    calls: () => calls,
  };
}

test('the tensor-core GEMM compiles and matches the f64 reference where the adapter has subgroup matrices', async (t) => {
  const found = tensorCoreConfig();
  if ('reason' in found) return t.skip(`skipped: ${found.reason}`);
  const status = await checkTensorCores();
  assert.equal(status.state, 'passed', JSON.stringify(status));
  setWorkingPrecision('f16');
  for (const [M, N, K] of [
    [64, 64, 64],
    [67, 45, 83],
    [130, 260, 200],
  ]) {
    const a = randomPair(M, [M, K]);
    const b = randomPair(N, [K, N]);
    const c = tidy(() => matmul(a.gpu, b.gpu));
    const [ra, rb] = [refRoundF16(a.ref), refRoundF16(b.ref)];
    const abs = (x: typeof ra) => refMap(x, Math.abs);
    // Tensor cores may sum in another order (or in blocks): twice the f32 bound.
    assertWithinSumBound(
      await c.data(),
      refMatmul(ra, rb),
      refMap(refMatmul(abs(ra), abs(rb)), (v) => 2 * v),
      2 * K,
      `tensor-core GEMM ${M}x${N}x${K}`,
    );
    for (const x of [a.gpu, b.gpu, c]) x.dispose();
  }
});

test('without subgroup matrices the path is unavailable, with the reason', async (t) => {
  if (!('reason' in tensorCoreConfig())) return t.skip('this adapter has subgroup matrices');
  const status = await checkTensorCores();
  assert.equal(status.state, 'unavailable');
  assert.match(status.state === 'unavailable' ? status.reason : '', /subgroup-matrix|shader-f16|subgroup size/);
});

test('the zero padding around the tensor-core kernel (pad_float, crop_f32) keeps ragged GEMMs exact', async (t) => {
  if (!hasF16) return t.skip('the adapter has no shader-f16');
  let innerShapes: number[][] = [];
  const inner: PlainGemm = (a, b, out, M, N, K) => {
    innerShapes.push([M, N, K]);
    runGemm({ mode: 'matmul', M, N, K, a, b, out, precision: 'f16', splits: 1 });
  };
  const padded = paddedGemm(inner, { rows: 32, cols: 16, depth: 16 });
  for (const [M, N, K] of [
    [67, 45, 83],
    [32, 16, 16],
    [1, 3, 5],
    [40, 16, 33],
  ]) {
    innerShapes = [];
    const a = randomPair(M * 7 + 1, [M, K]);
    const b = randomPair(N * 7 + 2, [K, N]);
    const c = tidy(() => {
      const out = Tensor.empty([M, N]);
      padded(toF16(a.gpu).buffer, toF16(b.gpu).buffer, out.buffer, M, N, K);
      return out;
    });
    const [ra, rb] = [refRoundF16(a.ref), refRoundF16(b.ref)];
    const abs = (x: typeof ra) => refMap(x, Math.abs);
    assertWithinSumBound(
      await c.data(),
      refMatmul(ra, rb),
      refMatmul(abs(ra), abs(rb)),
      K,
      `padded GEMM ${M}x${N}x${K}`,
    );
    const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;
    assert.deepEqual(
      innerShapes,
      [[roundUp(M, 32), roundUp(N, 16), roundUp(K, 16)]],
      'the inner kernel saw whole blocks',
    );
    for (const x of [a.gpu, b.gpu, c]) x.dispose();
  }
  // The padded runner is also a candidate the self-check accepts.
  assert.equal((await checkTensorCores(padded)).state, 'passed');
});

test('a candidate that passes the self-check serves the f16 plain GEMMs (and only those) and the conv forwards (im2col)', async (t) => {
  if (!hasF16) return t.skip('the adapter has no shader-f16');
  const good = countingCandidate();
  const status = await checkTensorCores(good.run);
  assert.equal(status.state, 'passed');
  const checked = good.calls();
  assert.equal(checked, 2, 'the check ran a GEMM and a 3x3 conv');
  setWorkingPrecision('f16');
  const a = randomPair(1, [20, 30]).gpu;
  const b = randomPair(2, [30, 12]).gpu;
  const bt = randomPair(3, [12, 30]).gpu;
  const outs = tidy(() => [
    matmul(a, b),
    matmul(a, bt, { transB: true }),
    matmul(b, a, { transA: true, transB: true }),
  ]);
  assert.equal(good.calls() - checked, 2, 'A·B and A·Btᵀ go through the candidate; a transposed A does not');
  for (const x of [a, b, bt, ...outs]) x.dispose();
  // A 3x3 conv forward goes through im2col and the candidate, and matches the f64 reference on f16-rounded inputs.
  const x = randomPair(4, [2, 6, 5, 3]);
  const w = randomPair(5, [3, 3, 3, 7]);
  const before = good.calls();
  const y = tidy(() => conv2d(x.gpu, w.gpu, { stride: 2, padding: 1 }));
  assert.equal(good.calls() - before, 1, 'the conv forward used the candidate');
  const [rx, rw] = [refRoundF16(x.ref), refRoundF16(w.ref)];
  const abs = (v: typeof rx) => refMap(v, Math.abs);
  assertWithinSumBound(
    await y.data(),
    refConv2d(rx, rw, { stride: 2, padding: 1 }),
    refConv2d(abs(rx), abs(rw), { stride: 2, padding: 1 }),
    27,
    'im2col conv',
  );
  for (const v of [x.gpu, w.gpu, y]) v.dispose();
});

test('a wrong kernel result fails the self-check: one warning, the path disabled, f16 training goes on without it', async (t) => {
  if (!hasF16) return t.skip('the adapter has no shader-f16');
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(' '));
  const dir = mkdtempSync(join(tmpdir(), 'odc-tc-'));
  try {
    const wrong = countingCandidate(1);
    const status = await checkTensorCores(wrong.run);
    assert.equal(status.state, 'failed');
    assert.equal(warnings.length, 1, warnings.join('\n'));
    assert.match(
      warnings[0],
      /tensor-core GEMM failed its self-check and is disabled .*GEMM 67x45x83: element \d+ is .*, the f16 kernel without tensor cores gives/,
    );
    assert.deepEqual(await checkTensorCores(), status, 'the verdict stands for the process');
    assert.equal(tensorCoreStatus().state, 'failed');
    const calls = wrong.calls();
    const config = applyOverride(applyOverride(tinyConfig(), 'optim.precision=f16'), 'optim.epochs=1');
    const result = await train({ config, outDir: dir, dataset: syntheticDataset(), quiet: true });
    assert.ok(Number.isFinite(result.epochs[0].loss), `f16 training went on: loss ${result.epochs[0].loss}`);
    assert.equal(wrong.calls(), calls, 'the disabled candidate was never called again');
    assert.equal(warnings.length, 1, 'still one warning');
  } finally {
    console.warn = warn;
    rmSync(dir, { recursive: true, force: true });
  }
});
