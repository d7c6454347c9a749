/**
 * The ODC memories (spec section 2) on the GPU: the sample memory (features [N, D] f32 with unit-norm
 * rows, labels [N] u32) and the centroid memory ([K, D] f32, plain means, NOT normalised), plus the loss
 * weights [K]: its state and per-step updates. Every per-sample step is a WGSL kernel. Beside it:
 * small-clusters.ts (the small-cluster policy, spec 2.5), memory-records.ts (checkpoint records) and
 * host-reads.ts (every read of an iteration: the late check of the status word and histogram, and on the
 * rare path a histogram and one count per split).
 *
 * Trainer usage, in the spec's order (2.8):
 *
 *   const memory = OdcMemory.create({ n, dim, k, momentum: 0.5, minCluster, seed });
 *   await memory.init(rawFeatures);                 // [N, D] neck outputs of the untrained network
 *   // every iteration:
 *   const y = memory.labelsOf(indices);             // labels BEFORE the update, for the loss
 *   ... loss with memory.weights ...
 *   memory.update(indices, neckFeatures);           // momentum update + relabel (GPU only)
 *   if ((iter + 1) % centroidInterval === 0) memory.recomputeCentroids();
 *   await handleSmallClusters(memory);             // small-clusters.ts
 *   memory.updateWeights(0.5);
 *   // for logs: await memory.stats(); change ratio = memory.changeCount[0] / memory.lastBatchSize
 *
 * Rules chosen where the reference is loose (documented for reproducibility):
 * - Duplicate indices inside one batch: the LAST occurrence wins (its row and label are written). Every
 *   occurrence is still mixed against the same pre-update row, relabelled and counted in the change ratio.
 * - argmax ties go to the lowest cluster index; the "largest" cluster is the lowest id among the largest.
 * - Centroid means are computed with 64-bit fixed-point integer atomics (scale 2^24), so they do not
 *   depend on the GPU's scheduling (WGSL has no float atomics).
 * - The 2-means of a split runs on the GPU (src/odc/split.ts); the recycled id gets 2-means side 1.
 * - Sharding (memories past one storage binding): the feature rows live in S shards of rowsPerShard rows (the
 *   largest multiple of 64 rows within one binding, and at most what one nearest-centroid launch takes; the
 *   bookkeeping is memory-shards.ts); S = 1 whenever the memory fits, and then every launch is the one-buffer
 *   launch. With S > 1 the momentum update and its scatter run once per shard on the batch rows in its row range;
 *   k-means (and its k-means++ seeding) assigns and normalises shard by shard (each row's result is its own);
 *   centroid sums add the shards in shard order into the same 64-bit integer accumulators (exact, so order-free);
 *   the small-cluster policy gathers the rows it needs into one buffer. Results are bit-identical to one buffer
 *   (test/odc-memory-shards.test.ts, test/train-shards.test.ts). Labels stay one [N] buffer (4 bytes a row: 33M
 *   rows per 128 MiB). Checkpoints stream the features shard by shard (memory-records.ts).
 * - Out-of-range indices passed as host arrays throw before any GPU work; passed as GPU tensors they
 *   cannot be checked without a readback, so the kernels skip them and count them, and the next
 *   `stats()` / `checkErrors()` throws.
 */
import { gpu } from '../gpu/device.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';
import { readHistogram, readSizesLater, readStatusWord, type SizeCheck } from './host-reads.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { odcMemory } from '../kernels/odc_memory.ts';
import {
  centroidMeans,
  fillU32,
  forEachShard,
  histogram,
  nearest,
  threads,
  type RowShards,
} from '../ops/clustering.ts';
import {
  allocateFeatureShards,
  featureShardRows,
  gatheredRows,
  normalizeIntoShards,
  shardsData,
  singleShard,
} from './memory-shards.ts';
import { kmeans } from './kmeans.ts';
import { handleSmallClusters, type ClusterMemory, type SmallClusterReport } from './small-clusters.ts';

export interface OdcMemoryOptions {
  /** Dataset size N (one memory row per sample). */
  n: number;
  /** Feature dimension D (the neck's output width). */
  dim: number;
  /** Number of clusters K (<= N). */
  k: number;
  /** Weight of the fresh feature: new = (1 - m) old + m fresh (ODC: 0.5). */
  momentum?: number;
  /** Clusters with fewer members (strict <) are dissolved and refilled (ODC: 20). */
  minCluster: number;
  seed?: number;
  /** Initial k-means iterations (ODC: 20). */
  kmeansIterations?: number;
  /** Initial k-means seeding: 'random' distinct points (faiss, ODC; default) or 'kmeans++' (small k). */
  kmeansInit?: 'random' | 'kmeans++';
  /** 2-means restarts per split (lowest inertia kept). */
  splitRestarts?: number;
  /** Lloyd steps per 2-means restart (ODC: 20). */
  splitMaxIter?: number;
  /**
   * Largest feature shard in bytes (default: the device's maxStorageBufferBindingSize / maxBufferSize, whichever
   * is smaller); tests lower it to force several shards. Results do not depend on it.
   */
  maxShardBytes?: number;
}

export interface MemoryStats {
  min: number;
  max: number;
  empty: number;
  small: number;
  total: number;
}

export interface InitReport {
  /** k-means inertia at each assignment step (last: the final assignment). */
  inertia: number[];
  /** Empty clusters before / after each iteration's repair. */
  emptyBefore: number[];
  emptyAfter: number[];
  smallClusters: SmallClusterReport;
}

/** Min/max cluster size, empty and small (< minCluster) cluster counts and the total of a label histogram. */
export function summarizeHistogram(h: ArrayLike<number>, minCluster: number): MemoryStats {
  let min = Infinity;
  let max = 0;
  let empty = 0;
  let small = 0;
  let total = 0;
  for (let c = 0; c < h.length; c++) {
    const v = h[c];
    min = Math.min(min, v);
    max = Math.max(max, v);
    if (v === 0) empty++;
    if (v < minCluster) small++;
    total += v;
  }
  return { min, max, empty, small, total };
}

/** Indices for a batch: host arrays are range-checked on the host; GPU tensors in the kernels. */
export type Indices = Tensor<'u32'> | Uint32Array | readonly number[];

function checkInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new RangeError(`OdcMemory: ${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

export class OdcMemory implements ClusterMemory {
  readonly n: number;
  readonly dim: number;
  readonly k: number;
  readonly momentum: number;
  readonly minCluster: number;
  readonly seed: number;
  readonly kmeansIterations: number;
  readonly kmeansInit: 'random' | 'kmeans++';
  readonly splitRestarts: number;
  readonly splitMaxIter: number;
  /**
   * [N, D] unit-norm memory features as row shards, each within one storage binding: one shard (the whole
   * memory) whenever it fits, else ceil(N / rowsPerShard). Per-step kernels run once per shard on its row range.
   */
  readonly featureShards: RowShards;
  /** [N] memory labels in [0, K). */
  readonly labels: Tensor<'u32'>;
  /** [K, D] centroids: plain means of member features (not normalised). */
  readonly centroids: Tensor<'f32'>;
  /** [K] loss weights, proportional to (n_c + 1e-5)^-power, summing to 1. */
  readonly weights: Tensor<'f32'>;
  /** [1] number of batch rows whose label changed in the last `update` (GPU scalar; read it lazily). */
  readonly changeCount: Tensor<'u32'>;
  /** Rows in the last `update` batch (denominator of the change ratio). */
  lastBatchSize = 0;
  /** [4] u32 error word: out-of-range GPU-tensor indices the kernels skipped (read by checkErrors and checkLater). */
  private readonly status: Tensor<'u32'>;
  /** [K] u32 cluster sizes as of the last checkLater or updateWeights: what the loss weights are computed from. */
  private readonly sizes: Tensor<'u32'>;
  /** Seeds k-means and the 2-means splits; its state is part of the checkpoint (memory-records.ts). */
  readonly rng: Rng;

  private constructor(o: Required<Omit<OdcMemoryOptions, 'maxShardBytes'>>, shardRows: number) {
    this.n = o.n;
    this.dim = o.dim;
    this.k = o.k;
    this.momentum = o.momentum;
    this.minCluster = o.minCluster;
    this.seed = o.seed;
    this.kmeansIterations = o.kmeansIterations;
    this.kmeansInit = o.kmeansInit;
    this.splitRestarts = o.splitRestarts;
    this.splitMaxIter = o.splitMaxIter;
    this.rng = new Rng(o.seed);
    this.featureShards = allocateFeatureShards(o.n, o.dim, shardRows);
    this.labels = Tensor.empty([o.n], 'u32');
    this.centroids = Tensor.empty([o.k, o.dim], 'f32');
    this.weights = Tensor.from(new Float32Array(o.k).fill(1 / o.k), [o.k], 'f32');
    this.changeCount = Tensor.empty([1], 'u32');
    this.status = Tensor.empty([4], 'u32');
    this.sizes = Tensor.empty([o.k], 'u32');
    fillU32(this.labels, 0);
    fillU32(this.centroids, 0);
    fillU32(this.changeCount, 0);
    fillU32(this.status, 0);
    fillU32(this.sizes, 0);
  }

  /**
   * Validates the sizes (clear errors before any GPU work) and allocates the memories: features 0,
   * labels 0, centroids 0, uniform weights. Call `init` (or restore with memoryFromState) before training.
   */
  static create(options: OdcMemoryOptions): OdcMemory {
    const n = checkInt('n', options.n, 1);
    const dim = checkInt('dim', options.dim, 1);
    const k = checkInt('k', options.k, 1);
    const minCluster = checkInt('minCluster', options.minCluster, 1);
    const momentum = options.momentum ?? 0.5;
    if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1))
      throw new RangeError(`OdcMemory: momentum must be in [0, 1], got ${String(momentum)}`);
    if (k > n) throw new RangeError(`OdcMemory: k = ${k} clusters need at least k samples, got n = ${n}`);
    if (k > 1 && minCluster * (k - 1) > n) {
      throw new RangeError(
        `OdcMemory: minCluster = ${minCluster} is too large for n = ${n} samples in k = ${k} clusters (need minCluster * (k - 1) <= n)`,
      );
    }
    const seed = options.seed ?? 0;
    const o: Required<Omit<OdcMemoryOptions, 'maxShardBytes'>> = {
      n,
      dim,
      k,
      momentum,
      minCluster,
      seed,
      kmeansIterations: checkInt('kmeansIterations', options.kmeansIterations ?? 20, 0),
      kmeansInit: options.kmeansInit ?? 'random',
      splitRestarts: checkInt('splitRestarts', options.splitRestarts ?? 3, 1),
      splitMaxIter: checkInt('splitMaxIter', options.splitMaxIter ?? 20, 0),
    };
    return new OdcMemory(o, featureShardRows(n, dim, options.maxShardBytes));
  }

  /** The [N, D] features as one tensor; only a memory held in one shard has one (else use featureShards / featuresData). */
  get features(): Tensor<'f32'> {
    return singleShard(this.featureShards);
  }

  /** Host copy of all the features (read shard by shard; for small memories and tests: checkpoints stream instead). */
  featuresData(): Promise<Float32Array> {
    return shardsData(this.featureShards);
  }

  /** ClusterMemory.indexedRows: the memory and idx itself when it is one shard, else the gathered rows and 0..count-1. */
  indexedRows(idx: Tensor<'u32'>, count: number): { x: Tensor<'f32'>; rowIdx: Tensor<'u32'>; release(): void } {
    return gatheredRows(this.featureShards, idx, count);
  }

  private checkFeatures(features: Tensor<'f32'>, rows: number | null, what: string): number {
    expectDType(features, 'f32', what);
    if (features.rank !== 2 || features.shape[1] !== this.dim || (rows !== null && features.shape[0] !== rows)) {
      throw new RangeError(
        `${what}: expected features [${rows ?? 'B'}, ${this.dim}] (memory dim ${this.dim}), got ${fmtShape(features.shape)}`,
      );
    }
    return features.shape[0];
  }

  /** Uploads host indices after checking them, or passes a u32 tensor through. */
  private indexTensor(indices: Indices, what: string): { t: Tensor<'u32'>; owned: boolean; count: number } {
    if (indices instanceof Tensor) {
      expectDType(indices, 'u32', what);
      if (indices.rank !== 1) throw new RangeError(`${what}: indices must be 1-D, got ${fmtShape(indices.shape)}`);
      return { t: indices, owned: false, count: indices.size };
    }
    for (let i = 0; i < indices.length; i++) {
      const v = indices[i];
      if (!Number.isInteger(v) || v < 0 || v >= this.n)
        throw new RangeError(`${what}: index ${String(v)} at position ${i} is out of range [0, ${this.n})`);
    }
    return { t: Tensor.from(Uint32Array.from(indices), [indices.length], 'u32'), owned: true, count: indices.length };
  }

  /**
   * Initial clustering (spec 2.2 + the port's fix from section 6): L2-normalise the raw features into
   * the memory, k-means (seeded, GPU), labels = final nearest-centroid assignment, centroids = plain
   * means, one small-cluster pass (so no cluster starts empty), centroids recomputed, weights (power 0.5).
   * The raw features come as one [N, D] tensor, or as one block per feature shard ([rows of shard s, D] each,
   * see featureShards) when N x D does not fit one tensor.
   */
  async init(rawFeatures: Tensor<'f32'> | readonly Tensor<'f32'>[]): Promise<InitReport> {
    const { parts } = this.featureShards;
    if (rawFeatures instanceof Tensor) this.checkFeatures(rawFeatures, this.n, 'OdcMemory.init');
    else {
      if (rawFeatures.length !== parts.length)
        throw new RangeError(
          `OdcMemory.init: ${rawFeatures.length} feature blocks for a memory of ${parts.length} shards`,
        );
      rawFeatures.forEach((raw, s) => this.checkFeatures(raw, parts[s].shape[0], `OdcMemory.init (block ${s})`));
    }
    normalizeIntoShards(rawFeatures, this.featureShards);
    const km = kmeans(this.featureShards, this.n, this.dim, this.k, {
      iterations: this.kmeansIterations,
      seed: this.rng.nextU32(),
      init: this.kmeansInit,
    });
    gpu().copy(km.labels.buffer, 0, this.labels.buffer, 0, this.n * 4);
    gpu().copy(km.centroids.buffer, 0, this.centroids.buffer, 0, this.k * this.dim * 4);
    const inertia = [...(await km.inertia.data())];
    const empties = await km.emptyStats.data();
    for (const t of [km.labels, km.centroids, km.inertia, km.emptyStats]) t.dispose();
    this.recomputeCentroids();
    const smallClusters = await handleSmallClusters(this);
    this.recomputeCentroids();
    this.updateWeights();
    const it = this.kmeansIterations;
    return {
      inertia,
      emptyBefore: Array.from({ length: it }, (_, i) => empties[2 * i]),
      emptyAfter: Array.from({ length: it }, (_, i) => empties[2 * i + 1]),
      smallClusters,
    };
  }

  /**
   * Spec 2.3, GPU work only: for each batch row b, fresh = f_b / (||f_b|| + 1e-10), mix =
   * (1 - m) bank[i_b] + m fresh, new = mix / (||mix|| + 1e-10); new label = argmax_c new . centroid_c
   * (dot product, un-normalised centroids, ties to the lowest c); changeCount = #rows whose label
   * changed; then the rows and labels are scattered back (last occurrence of a duplicate index wins).
   */
  update(indices: Indices, features: Tensor<'f32'>): void {
    const b = this.checkFeatures(features, null, 'OdcMemory.update');
    const idx = this.indexTensor(indices, 'OdcMemory.update');
    if (idx.count !== b) {
      if (idx.owned) idx.t.dispose();
      throw new RangeError(`OdcMemory.update: ${idx.count} indices for ${b} feature rows`);
    }
    this.lastBatchSize = b;
    fillU32(this.changeCount, 0, 1);
    if (b === 0) {
      if (idx.owned) idx.t.dispose();
      return;
    }
    const d = this.dim;
    const fresh = Tensor.empty([b, d], 'f32');
    const winner = Tensor.empty([b], 'u32');
    const newLabels = Tensor.empty([b], 'u32');
    // one launch per shard, each on the batch rows in its row range (one shard: the whole memory, as before sharding)
    forEachShard(this.featureShards, (bank, row0, rows) =>
      dispatchKernel(odcMemory.momentum, {
        params: { n: b, d, bank_rows: this.n, momentum: this.momentum, row0, row_count: rows },
        bindings: {
          idx: idx.t.buffer,
          features: features.buffer,
          bank: bank.buffer,
          out: fresh.buffer,
          winner: winner.buffer,
          status: this.status.buffer,
        },
        workgroups: threads(b),
      }),
    );
    nearest({ x: fresh, n: b, d, centroids: this.centroids, k: this.k, labels: newLabels });
    dispatchKernel(odcMemory.count_changes, {
      params: { n: b, bank_rows: this.n },
      bindings: {
        idx: idx.t.buffer,
        new_labels: newLabels.buffer,
        labels: this.labels.buffer,
        count: this.changeCount.buffer,
      },
      workgroups: threads(b),
    });
    forEachShard(this.featureShards, (bank, row0, rows) =>
      dispatchKernel(odcMemory.scatter_update, {
        params: { n: b, d, bank_rows: this.n, row0, row_count: rows },
        bindings: {
          idx: idx.t.buffer,
          rows: fresh.buffer,
          new_labels: newLabels.buffer,
          winner: winner.buffer,
          bank: bank.buffer,
          labels: this.labels.buffer,
        },
        workgroups: threads(b),
      }),
    );
    for (const t of [fresh, winner, newLabels]) t.dispose();
    if (idx.owned) idx.t.dispose();
  }

  /** Labels of the given samples (a new u32 tensor; gather on the GPU). */
  labelsOf(indices: Indices): Tensor<'u32'> {
    const idx = this.indexTensor(indices, 'OdcMemory.labelsOf');
    const out = Tensor.empty([idx.count], 'u32');
    if (idx.count > 0) {
      dispatchKernel(odcMemory.gather_u32, {
        params: { n: idx.count, src_len: this.n },
        bindings: { idx: idx.t.buffer, src: this.labels.buffer, out: out.buffer, status: this.status.buffer },
        workgroups: threads(idx.count),
      });
    }
    if (idx.owned) idx.t.dispose();
    return out;
  }

  /** Spec 2.4: every non-empty centroid = plain mean of its members' features; empty ones keep theirs. */
  recomputeCentroids(): void {
    const { parts } = this.featureShards;
    centroidMeans({
      x: parts.length === 1 ? parts[0] : this.featureShards,
      n: this.n,
      d: this.dim,
      labels: this.labels,
      k: this.k,
      out: this.centroids,
    });
  }

  /** A new [K] u32 tensor with the label histogram. */
  histogram(): Tensor<'u32'> {
    const hist = Tensor.empty([this.k], 'u32');
    histogram(this.labels, this.n, this.k, hist);
    return hist;
  }

  /** Spec 1.4 / 2.7: w_c = (n_c + eps)^-power, normalised to sum 1 (GPU; ODC runs power 0.5, eps 1e-5). */
  updateWeights(power = 0.5, eps = 1e-5): void {
    histogram(this.labels, this.n, this.k, this.sizes);
    this.weightsFromSizes(power, eps);
  }

  /** The loss weights from the cluster sizes the last checkLater or updateWeights counted (no second histogram). */
  weightsFromSizes(power = 0.5, eps = 1e-5): void {
    if (!(power >= 0)) throw new RangeError(`OdcMemory.updateWeights: power must be >= 0, got ${power}`);
    dispatchKernel(odcMemory.weights, {
      params: { k: this.k, power, smoothing: eps },
      bindings: { hist: this.sizes.buffer, out: this.weights.buffer },
      workgroups: [1],
    });
  }

  /**
   * Counts the cluster sizes on the GPU and reads them with the error word through one late read (host-reads.ts):
   * nothing waits now, the promise settles once the GPU has run everything recorded so far.
   */
  checkLater(): Promise<SizeCheck> {
    histogram(this.labels, this.n, this.k, this.sizes);
    const both = Tensor.empty([4 + this.k], 'u32');
    gpu().copy(this.status.buffer, 0, both.buffer, 0, 16);
    gpu().copy(this.sizes.buffer, 0, both.buffer, 16, 4 * this.k);
    const check = readSizesLater(both);
    both.dispose();
    return check;
  }

  /** Throws if a kernel met an out-of-range index passed as a GPU tensor (a blocking read: host-reads.ts). */
  async checkErrors(): Promise<void> {
    const skipped = await readStatusWord(this.status);
    if (skipped > 0) {
      fillU32(this.status, 0);
      throw new RangeError(
        `OdcMemory: ${skipped} out-of-range sample index(es) (memory holds ${this.n} rows) were passed as GPU tensors and skipped`,
      );
    }
  }

  /** Histogram summary for logs (spec 2.8 step 7d): min, max, #empty, #small (< minCluster), total (blocking reads: host-reads.ts). */
  async stats(): Promise<MemoryStats> {
    await this.checkErrors();
    return summarizeHistogram(await readHistogram(this.histogram()), this.minCluster);
  }

  /** Releases every GPU buffer of this memory. */
  dispose(): void {
    for (const t of [
      ...this.featureShards.parts,
      this.labels,
      this.centroids,
      this.weights,
      this.changeCount,
      this.status,
      this.sizes,
    ])
      t.dispose();
  }
}
