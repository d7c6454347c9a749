/**
 * Entry points of shaders/reduce.wgsl: deterministic two-pass sums (partials, then a final pass) and the
 * broadcasts of their gradients. n: elements (sum) or rows (sum over axis 0); cols: row length; groups:
 * partial sums; per: elements (or rows) per partial; alpha: scale of the result (1 for a sum, 1/n for a mean).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, writeF32 } from './common.ts';

const io = { src: readF32, dst: writeF32 } as const;

export const reduce = declareKernels('reduce', {
  sum_partial: { params: { n: 'u32', per: 'u32' }, bindings: io },
  sum_final: { params: { groups: 'u32', alpha: 'f32' }, bindings: io },
  sum_axis0_partial: { params: { n: 'u32', cols: 'u32', groups: 'u32', per: 'u32' }, bindings: io },
  sum_axis0_final: { params: { cols: 'u32', groups: 'u32', alpha: 'f32' }, bindings: io },
  broadcast_scalar: { params: { n: 'u32', alpha: 'f32' }, bindings: io },
  broadcast_rows: { params: { n: 'u32', cols: 'u32', alpha: 'f32' }, bindings: io },
});
