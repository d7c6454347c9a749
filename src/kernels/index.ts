/**
 * Every declared kernel entry point, family by family: the list test/kernels.test.ts compiles so that a
 * declaration that does not match its WGSL body fails at test time rather than at dispatch.
 */
import type { KernelDecl } from '../gpu/kernel.ts';
import { augment } from './augment.ts';
import { batchnorm } from './batchnorm.ts';
import { clustering } from './clustering.ts';
import { dropout } from './dropout.ts';
import { elementwise } from './elementwise.ts';
import { gemm } from './gemm.ts';
import { kmeans } from './kmeans.ts';
import { knn } from './knn.ts';
import { loss } from './loss.ts';
import { lossScale } from './loss_scale.ts';
import { odcMemory } from './odc_memory.ts';
import { pool } from './pool.ts';
import { precision } from './precision.ts';
import { gemmSgmat } from './gemm_sgmat.ts';
import { reduce } from './reduce.ts';
import { rows } from './rows.ts';
import { sgd } from './sgd.ts';

/** The declaration objects of each WGSL family, by family name. */
export const KERNEL_FAMILIES: Readonly<Record<string, Readonly<Record<string, KernelDecl>>>> = {
  augment,
  batchnorm,
  clustering,
  dropout,
  elementwise,
  gemm,
  kmeans,
  knn,
  loss,
  loss_scale: lossScale,
  odc_memory: odcMemory,
  pool,
  precision,
  reduce,
  rows,
  sgd,
};

/**
 * Families that compile only where the adapter has a feature, with its own config values: not in
 * KERNEL_FAMILIES (the compile-every-entry test runs everywhere); test/tensor-cores.test.ts compiles them
 * where the feature exists.
 */
export const FEATURE_GATED_FAMILIES: Readonly<Record<string, Readonly<Record<string, KernelDecl>>>> = {
  gemm_sgmat: gemmSgmat,
};

/** Every declared entry point. */
export function allKernels(): KernelDecl[] {
  return Object.values(KERNEL_FAMILIES).flatMap((family) => Object.values(family));
}
