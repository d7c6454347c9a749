/**
 * Entry points of shaders/odc_memory.wgsl: the ODC memory's per-step kernels (src/odc/memory.ts,
 * src/odc/small-clusters.ts). n counts batch rows; bank_rows is the number of memory rows N. Indices at or
 * past bank_rows (or src_len) are skipped and counted in status[0].
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32, writeU32 } from './common.ts';

const atomicU32 = { access: 'read_write', type: 'atomic<u32>' } as const;

export const odcMemory = declareKernels('odc_memory', {
  /**
   * Spec 2.3: out[b] = normalise((1 - momentum)·bank[idx[b]] + momentum·normalise(features[b])), both with
   * ||·|| + 1e-10; winner[b] = 1 iff b is the last occurrence of idx[b] in the batch. `bank` is the shard
   * holding memory rows [row0, row0 + row_count); batch rows of other shards are skipped (row0 0: the invalid ones are handled).
   */
  momentum: {
    params: { n: 'u32', d: 'u32', bank_rows: 'u32', momentum: 'f32', row0: 'u32', row_count: 'u32' },
    bindings: { idx: readU32, features: readF32, bank: readF32, out: writeF32, winner: writeU32, status: atomicU32 },
  },
  /** count[0] += #{b : new_labels[b] != labels[idx[b]]} */
  count_changes: {
    params: { n: 'u32', bank_rows: 'u32' },
    bindings: { idx: readU32, new_labels: readU32, labels: readU32, count: atomicU32 },
  },
  /** Winners write their row and label back into the memory (`bank`: the shard of rows [row0, row0 + row_count)). */
  scatter_update: {
    params: { n: 'u32', d: 'u32', bank_rows: 'u32', row0: 'u32', row_count: 'u32' },
    bindings: { idx: readU32, rows: readF32, new_labels: readU32, winner: readU32, bank: writeF32, labels: writeU32 },
  },
  /** out[r] = src[idx[r]] (0 and status[0] += 1 past src_len) */
  gather_u32: {
    params: { n: 'u32', src_len: 'u32' },
    bindings: { idx: readU32, src: readU32, out: writeU32, status: atomicU32 },
  },
  /** labels[idx[r]] = values[r] */
  scatter_labels: { params: { n: 'u32' }, bindings: { idx: readU32, values: readU32, labels: writeU32 } },
  /** Spec 1.4 (one workgroup): out[c] = (hist[c] + smoothing)^-power, normalised to sum 1. */
  weights: { params: { k: 'u32', power: 'f32', smoothing: 'f32' }, bindings: { hist: readU32, out: writeF32 } },
});
