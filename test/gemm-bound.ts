/**
 * GEMM test fixtures: the variants the properties draw from, operands run forward and backward, and the
 * tolerance for GEMM-shaped results (matmul, linear, conv): the classical forward error bound of a
 * floating-point sum of k products, |computed - exact| <= gamma_k · Σ|a_i·b_i| with gamma_k ≈ k·u and
 * u = 2^-24 (f32 unit roundoff). The inputs are exactly representable in f32 (randomPair rounds them),
 * so the f64 reference is exact to ~1e-16 and the whole difference is the GPU's f32 accumulation, in any
 * order (split-K partials, tiles, FMA or not). We allow (k + 4)·u·Σ|a_i·b_i| (+1e-30 for exact zeros),
 * with Σ|a_i·b_i| computed by running the reference on |A| and |B|; a tolerance that is tight where the
 * terms are small and scales with k as the bound does.
 */
import { assert, randomPair } from './helpers.ts';
import { CPU_NARROW_VARIANT, CPU_VARIANT, GPU_VARIANT, type GemmVariant } from '../src/ops/gemm-variants.ts';
import { matmul } from '../src/ops/matmul.ts';
import { conv2d, type Conv2dOptions } from '../src/ops/conv.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { refMap, type RefArray } from '../src/ref/array.ts';

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

/** |A| elementwise: the reference run on |A| and |B| gives the Σ|a_i·b_i| the bounds scale with. */
export const absOf = (a: RefArray): RefArray => refMap(a, Math.abs);

/**
 * C = op(A)·op(B) on the GPU, then backward with the upstream gradient G, so A and B hold their gradients.
 * A, B and G are seeded pairs (seeds seed, seed + 1, seed + 2) shaped as the transposes ask.
 */
export function matmulWithGrads(seed: number, M: number, N: number, K: number, tA: boolean, tB: boolean) {
  const a = randomPair(seed, tA ? [K, M] : [M, K]);
  const b = randomPair(seed + 1, tB ? [N, K] : [K, N]);
  const g = randomPair(seed + 2, [M, N]);
  a.gpu.requiresGrad = true;
  b.gpu.requiresGrad = true;
  const c = tidy(() => {
    const out = matmul(a.gpu, b.gpu, { transA: tA, transB: tB });
    backward(out, g.gpu);
    return out;
  });
  return { a, b, g, c };
}

/**
 * y = conv2d(x, w) on the GPU (x [N, H, W, Cin], w [KH, KW, Cin, Cout]), then backward with the upstream
 * gradient G, so x and w hold their gradients. x, w and G are seeded pairs (seeds seed, seed + 1, seed + 2).
 */
export function convWithGrads(seed: number, xShape: number[], wShape: number[], opts: Conv2dOptions) {
  const [batch, H, W] = xShape;
  const [KH, KW, , Cout] = wShape;
  const side = (size: number, k: number): number =>
    Math.floor((size + 2 * (opts.padding ?? 0) - k) / (opts.stride ?? 1)) + 1;
  const x = randomPair(seed, xShape);
  const w = randomPair(seed + 1, wShape);
  const g = randomPair(seed + 2, [batch, side(H, KH), side(W, KW), Cout]);
  x.gpu.requiresGrad = true;
  w.gpu.requiresGrad = true;
  const y = tidy(() => {
    const out = conv2d(x.gpu, w.gpu, opts);
    backward(out, g.gpu);
    return out;
  });
  return { x, w, g, y };
}
