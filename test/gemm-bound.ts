/**
 * Tolerance for GEMM-shaped results (matmul, linear, conv): the classical forward error bound of a
 * floating-point sum of k products, |computed - exact| <= gamma_k · Σ|a_i·b_i| with gamma_k ≈ k·u and
 * u = 2^-24 (f32 unit roundoff). The inputs are exactly representable in f32 (randomPair rounds them),
 * so the f64 reference is exact to ~1e-16 and the whole difference is the GPU's f32 accumulation, in any
 * order (split-K partials, tiles, FMA or not). We allow (k + 4)·u·Σ|a_i·b_i| (+1e-30 for exact zeros),
 * with Σ|a_i·b_i| computed by running the reference on |A| and |B|; a tolerance that is tight where the
 * terms are small and scales with k as the bound does.
 */
import { assert } from './helpers.ts';
import { CPU_NARROW_VARIANT, CPU_VARIANT, GPU_VARIANT, type GemmVariant } from '../src/ops/gemm-variants.ts';
import type { RefArray } from '../src/ref/array.ts';

const U = 2 ** -24;

export function assertWithinSumBound(
  actual: ArrayLike<number>,
  expected: RefArray,
  absSum: RefArray,
  k: number,
  what: string,
): void {
  assert.equal(actual.length, expected.data.length, `${what}: length ${actual.length} != ${expected.data.length}`);
  for (let i = 0; i < actual.length; i++) {
    const e = expected.data[i];
    const bound = (k + 4) * U * absSum.data[i] + 1e-30;
    const err = Math.abs(actual[i] - e);
    if (!(err <= bound))
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${e} (error ${err.toExponential(2)} > bound ${bound.toExponential(2)}, k = ${k})`,
      );
  }
}

/** The GEMM variants the properties draw from: the adapter's own choice, lavapipe's two, the GPU's (workgroup memory), and forced split-K. */
export const VARIANTS: ReadonlyArray<{ name: string; v: GemmVariant | null }> = [
  { name: 'auto', v: null },
  { name: 'cpu', v: CPU_VARIANT },
  { name: 'cpu-narrow', v: CPU_NARROW_VARIANT },
  { name: 'tiled', v: GPU_VARIANT },
  { name: 'split-K', v: { ...CPU_VARIANT, minWorkgroups: 1 << 20, minKChunk: 3 } },
  { name: 'tiled split-K', v: { ...GPU_VARIANT, minWorkgroups: 1 << 20, minKChunk: 3 } },
];
