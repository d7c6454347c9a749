/**
 * Per shape class, whether an f16 GEMM the tensor cores can serve (plain matmuls, conv forwards) runs on the
 * subgroup-matrix kernel, and with how many result matrices per subgroup, or on the f16 kernels without
 * tensor cores: a variant family of src/gpu/variants.ts (`tensor-cores`), so the autotuner times the
 * choices where the self-check passed, runs pin them, and `odc info` lists them. Until the self-check of
 * src/ops/tensor-cores.ts has passed in this process every tensor-core variant is unsupported, with the
 * reason; the default after it passed is `sgmat-2x2` for every shape (as before the tuner knew them).
 */
import { gpu } from '../gpu/device.ts';
import { VariantChoice } from '../gpu/variants.ts';
import { gemmShapeClass } from './gemm-variants.ts';

/** C[M, N] (f32) = A[M, K]·B[K, N] over row-major f16 buffers: the shape of GEMM the tensor-core path serves. */
export type PlainGemm = (a: GPUBuffer, b: GPUBuffer, out: GPUBuffer, M: number, N: number, K: number) => void;

/** Result matrices per subgroup along M (TR) and N (TC); null: the f16 kernels without tensor cores. */
export interface TensorCoreVariant {
  tiles: { TR: number; TC: number } | null;
}

const sgmat = (TR: number, TC: number): [string, TensorCoreVariant] => [`sgmat-${TR}x${TC}`, { tiles: { TR, TC } }];

/** Every tensor-core choice by name: the default first, then the other tilings, then `off`. */
export const TENSOR_CORE_VARIANTS: ReadonlyMap<string, TensorCoreVariant> = new Map([
  sgmat(2, 2),
  sgmat(1, 1),
  sgmat(2, 4),
  sgmat(4, 2),
  sgmat(4, 4),
  ['off', { tiles: null }],
]);

export const TENSOR_CORE_DEFAULT = 'sgmat-2x2';

let makeRunner: ((tiles: { TR: number; TC: number }) => PlainGemm) | null = null;
let unavailable = 'the tensor-core self-check has not run in this process';

/**
 * Set by src/ops/tensor-cores.ts: once the self-check passed, how to make the GEMM of a tiling (null to
 * stop, with the reason every tensor-core variant then gives).
 */
export function setTensorCoreGemm(make: ((tiles: { TR: number; TC: number }) => PlainGemm) | null, reason = ''): void {
  makeRunner = make;
  unavailable = make ? '' : reason || 'the tensor-core self-check has not run in this process';
}

/** The per-shape choice (src/gpu/variants.ts); tests and the tuner force variants through it. */
export const tensorCoreChoice = new VariantChoice<TensorCoreVariant>({
  kernel: 'tensor-cores',
  variants: TENSOR_CORE_VARIANTS,
  unsupported: (v) => (v.tiles && !makeRunner ? unavailable : null),
});

/** Whether the tensor-core path serves f16 GEMMs in this process (its self-check passed). */
export function tensorCoresEnabled(): boolean {
  return makeRunner !== null;
}

/**
 * The tensor-core GEMM for an f16 M×N×K GEMM of `mode` (a plain matmul or a conv forward's im2col GEMM),
 * or null when the f16 kernels without tensor cores run it (the path is off, or `off` was chosen here).
 */
export function tensorCoreGemmFor(mode: 'matmul' | 'conv_forward', M: number, N: number, K: number): PlainGemm | null {
  if (!makeRunner) return null;
  const v = tensorCoreChoice.choose(gpu(), gemmShapeClass(mode, M, N, K, 'f16'), TENSOR_CORE_DEFAULT);
  return v.tiles ? makeRunner(v.tiles) : null;
}
