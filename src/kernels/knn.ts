/**
 * Entry points of shaders/knn.wgsl: evaluation kernels over frozen features (src/eval/knn.ts,
 * src/eval/linear-probe.ts). KMAX is a bucket >= k that sizes the per-thread top-k lists.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, writeF32, writeU32 } from './common.ts';

/**
 * The k largest entries of each of `rows` rows of a similarity block [rows, cols] (value descending,
 * index ascending on ties), rows starting at global row row_offset; exclude_self skips the column equal
 * to a row's global index (leave-one-out).
 */
const topk = {
  params: { rows: 'u32', cols: 'u32', row_offset: 'u32', exclude_self: 'bool', k: 'u32' },
  bindings: { sim: readF32, top_val: writeF32, top_idx: writeU32 },
  defines: { KMAX: 'u32' },
  sample: { KMAX: 8 },
} as const;

export const knn = declareKernels('knn', {
  /** one 64-thread workgroup per row (GPUs) */
  topk,
  /** one invocation per row with a heap (CPU adapters: no barriers) */
  topk_rows: topk,
  /** out [2, dim] = per-column mean and 1/std over `rows` rows */
  column_moments: { params: { rows: 'u32', dim: 'u32' }, bindings: { x: readF32, out: writeF32 } },
  /** out = (x - mean[col]) · invstd[col] over `cols` elements (stats from column_moments) */
  standardize: { params: { cols: 'u32', dim: 'u32' }, bindings: { x: readF32, stats: readF32, out: writeF32 } },
});
