/**
 * Entry points of shaders/loss.wgsl: weighted softmax cross-entropy as the mean over row chunks of per-chunk
 * weighted means. weighted: false when every class weight is 1 (the weights binding is then a stand-in, not read).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32 } from './common.ts';

export const loss = declareKernels('loss', {
  /** terms [rows, 2] = (w_i·CE_i, w_i); one 64-thread workgroup per row */
  ce_rows: {
    params: { rows: 'u32', cols: 'u32', weighted: 'bool' },
    bindings: { logits: readF32, labels: readU32, weights: readF32, terms: writeF32 },
  },
  ce_reduce: { params: { rows: 'u32', chunk: 'u32' }, bindings: { terms: readF32, loss: writeF32 } },
  /** coef [rows]: each row's factor in the gradient */
  ce_coef: {
    params: { rows: 'u32', cols: 'u32', chunk: 'u32', weighted: 'bool' },
    bindings: { gout: readF32, labels: readU32, weights: readF32, coef: writeF32 },
  },
  ce_backward: {
    params: { rows: 'u32', cols: 'u32' },
    bindings: { logits: readF32, labels: readU32, coef: readF32, grad: writeF32 },
  },
});
