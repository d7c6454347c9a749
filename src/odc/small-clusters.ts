/**
 * ODC's small-cluster policy (spec 2.5) with its host decisions: which clusters are small, where their members
 * go, and which cluster each recycled id is refilled from. The GPU does the moves, the 2-means splits
 * (split.ts) and the centroid updates; the host reads are the ones listed in host-reads.ts.
 */
import { Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';
import { readHistogram, readSplitCount } from './host-reads.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { kmeans as kmeansKernels } from '../kernels/kmeans.ts';
import { odcMemory } from '../kernels/odc_memory.ts';
import { centroidMeans, compactIndices, maskBias, nearest, threads } from '../ops/clustering.ts';
import { twoMeansSplit } from './split.ts';

export interface SplitRecord {
  /** The recycled (previously small, now emptied) cluster id. */
  dead: number;
  /** The cluster that was split: the largest at that moment (lowest id on ties). */
  big: number;
  /** Its size before the split. */
  bigSize: number;
  /** Members moved to `dead` (2-means side 1). */
  moved: number;
}

export interface SmallClusterReport {
  /** Clusters with fewer than minCluster members at the start of the call, ascending. */
  small: number[];
  /** Members of small clusters reassigned to their nearest allowed centroid. */
  reassigned: number;
  splits: SplitRecord[];
  /** Only with `{ trace: true }` (tests): all labels right after the move step, before any split. */
  labelsAfterMoves?: Uint32Array;
}

/** What the policy needs of a memory (OdcMemory is one; declared here so memory.ts can import this file). */
export interface ClusterMemory {
  readonly n: number;
  readonly dim: number;
  readonly k: number;
  readonly minCluster: number;
  readonly splitRestarts: number;
  readonly splitMaxIter: number;
  readonly features: Tensor<'f32'>;
  readonly labels: Tensor<'u32'>;
  readonly centroids: Tensor<'f32'>;
  /** Seeds the 2-means restarts. */
  readonly rng: Rng;
  /** A new [K] u32 label histogram. */
  histogram(): Tensor<'u32'>;
  /** Labels of the given samples (a new u32 tensor). */
  labelsOf(indices: Tensor<'u32'>): Tensor<'u32'>;
  /** Throws if a kernel skipped an out-of-range GPU-tensor index. */
  checkErrors(): Promise<void>;
}

/**
 * Spec 2.5. Reads the histogram (host decides which clusters are small), moves every member of a small
 * cluster to its nearest allowed centroid (dot product over clusters that were not small; GPU), re-reads the
 * histogram, then refills each small id in ascending order by splitting the current largest cluster with GPU
 * 2-means and recomputing the centroids of both halves. Reads one count back per split. Afterwards no cluster
 * is empty.
 */
export async function handleSmallClusters(memory: ClusterMemory, options: { trace?: boolean } = {}): Promise<SmallClusterReport> {
  const { n, dim, k, minCluster, features, labels, centroids } = memory;
  await memory.checkErrors();
  let h = await readHistogram(memory.histogram());
  const small: number[] = [];
  for (let c = 0; c < k; c++) if (h[c] < minCluster) small.push(c);
  if (small.length === 0) return { small, reassigned: 0, splits: [], ...(options.trace ? { labelsAfterMoves: await labels.data() } : {}) };
  if (small.length === k) throw new Error(`OdcMemory: all ${k} clusters have fewer than minCluster = ${minCluster} members; nothing to move them to`);
  const maskHost = new Uint32Array(k);
  let members = 0;
  for (const c of small) {
    maskHost[c] = 1;
    members += h[c];
  }
  if (members > 0) {
    const mask = Tensor.from(maskHost, [k], 'u32');
    const idx = compactIndices(labels, n, k, members, { mask });
    const bias = Tensor.empty([k], 'f32');
    maskBias(mask, k, bias);
    const dest = Tensor.empty([members], 'u32');
    nearest({ x: features, n: members, d: dim, idx, centroids, k, bias, labels: dest });
    dispatchKernel(odcMemory.scatter_labels, {
      params: { n: members },
      bindings: { idx: idx.buffer, values: dest.buffer, labels: labels.buffer },
      workgroups: threads(members),
    });
    for (const t of [mask, idx, bias, dest]) t.dispose();
    h = await readHistogram(memory.histogram());
  }
  const labelsAfterMoves = options.trace ? await labels.data() : undefined;
  const splits: SplitRecord[] = [];
  for (const dead of small) {
    let big = 0;
    for (let c = 1; c < k; c++) if (h[c] > h[big]) big = c;
    const size = h[big];
    if (size < 2) throw new Error(`OdcMemory: cannot refill cluster ${dead}: the largest cluster ${big} has ${size} member(s)`);
    const idx = compactIndices(labels, n, k, size, { value: big });
    const { side, count1 } = twoMeansSplit(features, dim, idx, size, memory.rng, { restarts: memory.splitRestarts, maxIter: memory.splitMaxIter });
    dispatchKernel(kmeansKernels.tm_relabel, {
      params: { n: size, label: dead },
      bindings: { idx: idx.buffer, side: side.buffer, labels: labels.buffer },
      workgroups: threads(size),
    });
    const lab = memory.labelsOf(idx);
    const list = Tensor.from([big, dead], [2], 'u32');
    centroidMeans({ x: features, n: size, d: dim, idx, labels: lab, k, out: centroids, list, listLength: 2 });
    const moved = await readSplitCount(count1);
    for (const t of [idx, side, count1, lab, list]) t.dispose();
    h[dead] = moved;
    h[big] = size - moved;
    splits.push({ dead, big, bigSize: size, moved });
  }
  return { small, reassigned: members, splits, ...(labelsAfterMoves ? { labelsAfterMoves } : {}) };
}
