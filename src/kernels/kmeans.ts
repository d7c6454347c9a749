/**
 * Entry points of shaders/kmeans.wgsl: the k-means algorithm's own kernels (src/odc/kmeans.ts) and the
 * GPU 2-means splitter's (src/odc/split.ts). Centers live in a [centers, d] buffer; x rows are read
 * through idx (a cluster's members) where the entry says `gather` or always for the 2-means kernels.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32, writeU32 } from './common.ts';

export const kmeans = declareKernels('kmeans', {
  /** After a centroid update: faiss-style repair of empty clusters; stats[2·iteration (+1)] = #empty before (after). */
  repair_empty: {
    params: { k: 'u32', d: 'u32', seed: 'u32', iteration: 'u32' },
    bindings: { counts: writeU32, centroids: writeF32, stats: writeU32 },
  },
  /** centers[center] = x[idx[member]] (one workgroup) */
  tm_center_from_row: {
    params: { d: 'u32', member: 'u32', center: 'u32' },
    bindings: { x: readF32, idx: readU32, centers: writeF32 },
  },
  /**
   * d2[d2_row0 + r] = ||x[row r] - centers[center]||² (or its minimum with that d2 entry when running_min); d2_row0
   * places the rows of one shard of a sharded matrix in a d2 of all rows
   */
  tm_dist: {
    params: { n: 'u32', d: 'u32', center: 'u32', gather: 'bool', running_min: 'bool', d2_row0: 'u32' },
    bindings: { x: readF32, idx: readU32, centers: readF32, d2: writeF32 },
  },
  /**
   * k-means++ draw (one workgroup): row r with probability d2[r] / Σ d2 at the uniform `draw` in [0, 1) becomes
   * centers[center] when it lies in [row0, row0 + row_count), read from x's row r - row0 (x: one shard of a sharded
   * matrix; the whole matrix with row0 0)
   */
  tm_pick: {
    params: { n: 'u32', d: 'u32', center: 'u32', draw: 'f32', gather: 'bool', row0: 'u32', row_count: 'u32' },
    bindings: { x: readF32, idx: readU32, d2: readF32, centers: writeF32 },
  },
  /** side[r] = 1 when center 1 is nearer than center 0 (ties to 0), dmin[r] = the smaller squared distance */
  tm_assign: {
    params: { n: 'u32', d: 'u32' },
    bindings: { x: readF32, idx: readU32, centers: readF32, side: writeU32, dmin: writeF32 },
  },
  /** best = inertia and flag = 1 when inertia[0] < best[0] (earlier restarts win ties), else flag = 0 */
  tm_keep_best: { bindings: { inertia: readF32, best: writeF32, flag: writeU32 } },
  tm_copy_if: { params: { n: 'u32' }, bindings: { flag: readU32, src: readU32, dst: writeU32 } },
  /** counts[slot] += #{r < n : side[r] == 1} */
  tm_count: {
    params: { n: 'u32', slot: 'u32' },
    bindings: { side: readU32, counts: { access: 'read_write', type: 'atomic<u32>' } },
  },
  /** side = halves (a random half) when counts[0] is 0 or n: one side of the split came out empty */
  tm_fallback: { params: { n: 'u32' }, bindings: { counts: readU32, halves: readU32, side: writeU32 } },
  /** labels[idx[r]] = label where side[r] == 1 */
  tm_relabel: { params: { n: 'u32', label: 'u32' }, bindings: { idx: readU32, side: readU32, labels: writeU32 } },
  /** Greedy k-means++: the candidate with the lowest potential (of `trials`) becomes centers[center]. */
  pp_choose: {
    params: { trials: 'u32', d: 'u32', center: 'u32' },
    bindings: { potential: readF32, candidates: readF32, centers: writeF32 },
  },
});
