/**
 * Entry points of shaders/batchnorm.wgsl: batch normalisation over the last axis of x viewed as
 * [rows, channels]. Template constants CT (channels per workgroup) and RL (row lanes, CT·RL = 256) size
 * the reduction tiles. stats: per channel [mean | invstd | scale = weight·invstd | bias] (4·C floats);
 * partial: two rows of C floats per block of rows_per_block rows, folded per channel inside the elementwise
 * pass that needs them (stats_apply, dx_train), or by grad_finalize alone. relu: a ReLU is fused after the BN (y,
 * the saved output, masks the gradient; it is a placeholder and not read otherwise). x, out and y are
 * activations, in the working precision (f16 under `--precision f16`); statistics, dy and dx are f32.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

const tiles = { CT: 'u32', RL: 'u32' } as const;
const sample = { CT: 16, RL: 16 };

/** The training apply with the statistics' second pass folded in: what stats_apply and its residual twin share. */
const foldedApplyParams = {
  rows: 'u32',
  channels: 'u32',
  nblocks: 'u32',
  rows_per_block: 'u32',
  eps: 'f32',
  momentum: 'f32',
  has_weight: 'bool',
  has_bias: 'bool',
} as const;
const foldedApplyBindings = {
  x: readFloat,
  partial: readF32,
  weight: readF32,
  bias: readF32,
  stats: writeF32,
  running_mean: writeF32,
  running_var: writeF32,
} as const;
/** The training dx with the backward sums' second pass folded in: what dx_train and its residual twin share. */
const foldedDxParams = { rows: 'u32', channels: 'u32', nblocks: 'u32' } as const;
const foldedDxBindings = {
  dy: readF32,
  x: readFloat,
  stats: readF32,
  partial: readF32,
  dy_sum: writeF32,
  dy_xhat_sum: writeF32,
  dx: writeF32,
  y: readFloat,
} as const;

export const batchnorm = declareKernels('batchnorm', {
  stats_partial: {
    params: { rows: 'u32', channels: 'u32', rows_per_block: 'u32' },
    bindings: { x: readFloat, partial: writeF32 },
    defines: tiles,
    sample,
  },
  stats_eval: {
    params: { channels: 'u32', eps: 'f32', has_weight: 'bool', has_bias: 'bool' },
    bindings: { running_mean: readF32, running_var: readF32, weight: readF32, bias: readF32, stats: writeF32 },
    defines: tiles,
    sample,
  },
  apply: {
    params: { rows: 'u32', channels: 'u32', relu: 'bool' },
    bindings: { x: readFloat, stats: readF32, out: writeFloat },
    defines: tiles,
    sample,
  },
  /**
   * Training forward: the statistics' second pass (partials folded per channel) inside the apply; it also writes
   * stats and updates the running stats. weight and bias are placeholders when has_weight / has_bias are false.
   */
  stats_apply: {
    params: { ...foldedApplyParams, relu: 'bool' },
    bindings: { ...foldedApplyBindings, out: writeFloat },
    defines: tiles,
    sample,
  },
  /**
   * A residual block's end in the training apply: out = relu(bn(x) + res), res an activation like x (needs 9 storage
   * bindings: src/ops/batchnorm.ts falls back to separate kernels where the adapter has fewer).
   */
  stats_apply_add_relu: {
    params: foldedApplyParams,
    bindings: { ...foldedApplyBindings, res: readFloat, out: writeFloat },
    defines: tiles,
    sample,
  },
  grad_partial: {
    params: { rows: 'u32', channels: 'u32', rows_per_block: 'u32', relu: 'bool' },
    bindings: { dy: readF32, x: readFloat, stats: readF32, partial: writeF32, y: readFloat },
    defines: tiles,
    sample,
  },
  grad_finalize: {
    params: { channels: 'u32', nblocks: 'u32' },
    bindings: { partial: readF32, stats: readF32, dy_sum: writeF32, dy_xhat_sum: writeF32 },
    defines: tiles,
    sample,
  },
  /** Training dx, with the backward sums' second pass folded in (it writes dy_sum and dy_xhat_sum too). */
  dx_train: {
    params: { ...foldedDxParams, relu: 'bool' },
    bindings: foldedDxBindings,
    defines: tiles,
    sample,
  },
  /** The backward of stats_apply_add_relu: dy masked by y > 0 (y: the block's output) into dres, and the training dx. */
  dx_train_add_relu: {
    params: foldedDxParams,
    bindings: { ...foldedDxBindings, dres: writeF32 },
    defines: tiles,
    sample,
  },
  dx_eval: {
    params: { rows: 'u32', channels: 'u32', relu: 'bool' },
    bindings: { dy: readF32, stats: readF32, dx: writeF32, y: readFloat },
    defines: tiles,
    sample,
  },
});
