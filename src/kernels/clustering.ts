/**
 * Entry points of shaders/clustering.wgsl, the clustering primitives of src/ops/clustering.ts. Unless an
 * entry says otherwise, n counts rows (or elements), d is the row width and k the number of clusters.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32, writeU32 } from './common.ts';

const atomicU32 = { access: 'read_write', type: 'atomic<u32>' } as const;

/**
 * Fused GEMM + row argmax: labels[r] = argmax_c x[row r]·centroids[c] (+ bias[c] when has_bias), ties to
 * the lowest c; row r is x[idx[r]] when gather. Workgroup y handles the centroids
 * [y·split_size, min(k, (y + 1)·split_size)); with `partials` each split writes its winner (and score)
 * at [y·n + r] for nearest_merge, else labels[r] (and scores[r] when write_scores).
 */
const nearestEntry = {
  params: {
    n: 'u32',
    d: 'u32',
    k: 'u32',
    split_size: 'u32',
    gather: 'bool',
    has_bias: 'bool',
    write_scores: 'bool',
    partials: 'bool',
  },
  bindings: { x: readF32, idx: readU32, centroids: readF32, bias: readF32, labels: writeU32, scores: writeF32 },
} as const;

export const clustering = declareKernels('clustering', {
  /** 64×64 tiles staged in workgroup memory (real GPUs) */
  nearest: nearestEntry,
  /** no workgroup memory: 4 rows per invocation, centroids 4 at a time in registers (CPU adapters) */
  nearest_regs: nearestEntry,
  /** the best of the `splits` per-split winners of each row (the earlier split on ties) */
  nearest_merge: {
    params: { n: 'u32', splits: 'u32', write_scores: 'bool' },
    bindings: { part_labels: readU32, part_scores: readF32, labels: writeU32, scores: writeF32 },
  },
  /** bias[c] = -||centroids[c]||² / 2 (the L2 nearest centroid through `nearest`) */
  l2_bias: { params: { k: 'u32', d: 'u32' }, bindings: { centroids: readF32, bias: writeF32 } },
  /** bias[c] = mask[c] != 0 ? -3e38 : 0 (a masked argmax through `nearest`) */
  mask_bias: { params: { k: 'u32' }, bindings: { mask: readU32, bias: writeF32 } },
  /** hist[labels[i]] += 1 for i < n (labels >= k are skipped) */
  histogram: { params: { n: 'u32', k: 'u32' }, bindings: { labels: readU32, hist: atomicU32 } },
  fill_u32: { params: { n: 'u32', value: 'u32' }, bindings: { out: writeU32 } },
  /** out[r, :] = src[idx[r], :] for r < n */
  gather_rows: { params: { n: 'u32', d: 'u32' }, bindings: { idx: readU32, src: readF32, out: writeF32 } },
  /** out[r, :] = src[idx[r] - row0, :] for the r < n whose idx[r] lies in [row0, row0 + row_count) (one shard of a sharded matrix) */
  gather_rows_range: {
    params: { n: 'u32', d: 'u32', row0: 'u32', row_count: 'u32' },
    bindings: { idx: readU32, src: readF32, out: writeF32 },
  },
  /** Centroid means, pass 1: zero the fixed-point sums and counts of n clusters (list[j] when listed, else j). */
  acc_zero: {
    params: { n: 'u32', d: 'u32', listed: 'bool' },
    bindings: { list: readU32, acc: writeU32, counts: writeU32 },
  },
  /** Pass 2: acc[labels[label_offset + r]] += x[row r] as 64-bit fixed point (row r = idx[r] when gather), counts += 1. */
  acc_rows: {
    params: { n: 'u32', d: 'u32', k: 'u32', gather: 'bool', label_offset: 'u32' },
    bindings: { x: readF32, idx: readU32, labels: readU32, acc: atomicU32, counts: atomicU32 },
  },
  /** Pass 3: out[c] = acc[c] / counts[c] for the n clusters (listed or all) with members; others keep out[c]. */
  acc_finalize: {
    params: { n: 'u32', d: 'u32', listed: 'bool' },
    bindings: { list: readU32, acc: readU32, counts: readU32, out: writeF32 },
  },
  /**
   * Ordered compaction of the i < n with labels[i] == value (or, by_mask, mask[labels[i]] != 0, labels < k):
   * per-chunk counts, their exclusive prefix (n = chunks; total at [n]), then the indices in order.
   */
  compact_count: {
    params: { n: 'u32', k: 'u32', value: 'u32', by_mask: 'bool' },
    bindings: { labels: readU32, mask: readU32, counts: writeU32 },
  },
  compact_scan: { params: { n: 'u32' }, bindings: { counts: writeU32 } },
  compact_write: {
    params: { n: 'u32', k: 'u32', value: 'u32', by_mask: 'bool' },
    bindings: { labels: readU32, mask: readU32, offsets: readU32, out: writeU32 },
  },
  /** partial[chunk] = Σ x[i] (or, squared_distance, Σ max(x[i] - 2·y[i], 0)) over a 4096-element chunk */
  sum_partial: {
    params: { n: 'u32', squared_distance: 'bool' },
    bindings: { x: readF32, y: readF32, partial: writeF32 },
  },
  /** out[slot] = Σ partial[0..n) */
  sum_final: { params: { n: 'u32', slot: 'u32' }, bindings: { partial: readF32, out: writeF32 } },
  /** out[r] = ||x[r]||² for n rows of d */
  row_norm2: { params: { n: 'u32', d: 'u32' }, bindings: { x: readF32, out: writeF32 } },
});
