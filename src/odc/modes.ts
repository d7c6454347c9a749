/**
 * The two ways of producing the pseudo-labels a training step learns from, behind one interface:
 * - ODC (ODC-SPEC 2.8): a feature memory of every image, clustered once on the random-init network and
 *   then updated by every step (momentum update + relabel, centroid recomputes, small-cluster handling,
 *   loss re-weighting); uniform sampling.
 * - DeepCluster: backbone features re-clustered by k-means at the start of every epoch, labels fixed for
 *   the epoch, class-balanced sampling, a fresh head every epoch; no memory, no re-weighting.
 * The session, step and loop call only this interface, so neither mode's rules leak into them.
 */
import { Tensor } from '../tensor/tensor.ts';
import { sum } from '../ops/reduce.ts';
import type { OdcModel } from '../models/odc-model.ts';
import type { GpuAugmenter } from '../data/augment.ts';
import { UniformSampler, balancedEpoch, streamRng } from '../data/sampler.ts';
import type { Rng } from '../util/rng.ts';
import { nmi } from '../metrics/nmi.ts';
import { labelHistogram } from '../metrics/metrics.ts';
import { OdcMemory, summarizeHistogram, type MemoryStats } from './memory.ts';
import { LateSmallClusterChecks } from './small-clusters.ts';
import { kmeansLabels } from './kmeans.ts';
import { extractFeatures } from './extract.ts';
import type { TrainState } from './checkpoint.ts';
import type { Progress } from './progress.ts';
import type { TrainConfig } from '../config/settings.ts';

/** What a mode needs from the session to cluster: the network, the images and the clustering RNG. */
export interface ModeContext {
  config: TrainConfig;
  model: OdcModel;
  augmenter: GpuAugmenter;
  clusterRng: Rng;
  /** Largest ODC memory feature shard in bytes, below the device's binding limit (tests force S > 1 with it). */
  maxMemoryShardBytes?: number;
}

export interface TrainingMode {
  /** Whether labels change between iterations (ODC relabels every step), so change ratios are meaningful. */
  readonly tracksChange: boolean;
  /** Whether `epochOrder` extracts the whole set's features and clusters them (DeepCluster), not just shuffles. */
  readonly extractsAtEpochStart: boolean;
  /** The per-cluster loss weights of the next step, or null for an unweighted loss. */
  readonly weights: Tensor<'f32'> | null;
  /** How many labels the last `observe` changed (a GPU scalar), or null when labels never change mid-epoch. */
  readonly changeCount: Tensor<'u32'> | null;
  /** The sample order of `epoch`; `batchInEpoch` > 0 when a resumed run continues the epoch midway. */
  epochOrder(epoch: number, batchInEpoch: number): Promise<Uint32Array>;
  /** The labels the batch `idx` learns from, read before this step's update (inside the step's tidy). */
  targets(idx: Uint32Array, idxT: Tensor<'u32'>): Tensor<'u32'>;
  /** Takes in the batch's features of this step (inside the step's tidy). */
  observe(idxT: Tensor<'u32'>, features: Tensor<'f32'>): void;
  /** Before an iteration records anything (ODC: holds its GPU work back while an earlier decision is open). */
  beginStep(): void;
  /** Records the work after the optimiser step of iteration `iteration` (0-based); its host decisions stay open. */
  afterStep(iteration: number): void;
  /** After a failure inside an iteration: drops what it held back. */
  abandonStep(): void;
  /** Makes the open decisions of past iterations, oldest first, until `keep` remain open; returns the clusters split. */
  settle(keep: number): Promise<number>;
  /** Cluster-size statistics for a log record, or null where the mode has none between epochs. */
  logStats(): Promise<MemoryStats | null>;
  /** The current labels of every image and their cluster-size statistics (end of an epoch). */
  epochLabels(): Promise<{ labels: Uint32Array; stats: MemoryStats }>;
  /** The mode's part of a checkpoint. */
  checkpointState(): Pick<TrainState, 'memory' | 'pseudoLabels'>;
  dispose(): void;
}

/** The mode of a resumed run, from the state its checkpoint restored. */
export function resumedMode(
  ctx: ModeContext,
  restored: Pick<TrainState, 'memory' | 'pseudoLabels'>,
  n: number,
): TrainingMode {
  if (ctx.config.mode !== 'odc') return new DeepClusterMode(ctx, n, restored.pseudoLabels);
  if (!restored.memory) {
    throw new Error(
      'The checkpoint holds no ODC memory, but the run is in ODC mode (mode = "odc"): train afresh without --resume.',
    );
  }
  return new OdcMode(ctx.config, restored.memory);
}

/**
 * The mode of a fresh run. ODC clusters the random-init network's features (eval mode) into its memory and
 * re-initialises the head (spec 2.2); DeepCluster clusters at each epoch start instead.
 */
export async function freshMode(
  ctx: ModeContext,
  progress: Progress,
  trueLabels: Int32Array | null,
  n: number,
): Promise<{ mode: TrainingMode; initialNmi?: number; initialLabels?: Uint32Array }> {
  if (ctx.config.mode !== 'odc') return { mode: new DeepClusterMode(ctx, n, null) };
  const { config, model, augmenter } = ctx;
  const t0 = performance.now();
  let memory: OdcMemory | null = null;
  // one block of raw features per memory shard (the whole set in one when it fits one binding)
  const raw: Tensor<'f32'>[] = [];
  try {
    memory = OdcMemory.create({
      n,
      dim: config.model.featureDim,
      k: config.odc.k,
      momentum: config.odc.memoryMomentum,
      minCluster: config.odc.minCluster,
      seed: ctx.clusterRng.nextU32(),
      kmeansIterations: config.odc.kmeansIterations,
      kmeansInit: config.odc.kmeansInit,
      splitRestarts: config.odc.splitRestarts,
      splitMaxIter: config.odc.splitMaxIter,
      maxShardBytes: ctx.maxMemoryShardBytes,
    });
    const { rowsPerShard } = memory.featureShards;
    for (const part of memory.featureShards.parts) {
      const rows = { start: raw.length * rowsPerShard, count: part.shape[0] };
      raw.push(
        extractFeatures(
          model,
          (x) => model.features(x),
          augmenter,
          config.model.featureDim,
          config.optim.batchSize,
          rows,
        ),
      );
    }
    for (const block of raw) await checkFinite(block, "the random-init network's features");
    const report = await memory.init(raw);
    for (const block of raw.splice(0)) block.dispose();
    model.head.reset();
    const initialLabels = await memory.labels.data();
    const initialNmi = trueLabels ? nmi(initialLabels, trueLabels) : undefined;
    const stats = await memory.stats();
    progress.message(
      `initial clustering: ${n} images, K = ${config.odc.k}, inertia ${report.inertia[0].toFixed(1)} -> ${report.inertia[report.inertia.length - 1].toFixed(1)}, ` +
        `cluster sizes ${stats.min}..${stats.max}` +
        (initialNmi !== undefined ? `, NMI vs labels ${initialNmi.toFixed(4)}` : '') +
        ` (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    // sizes: the initial cluster-size histogram (the report's "initial" histogram)
    progress.event({
      event: 'init',
      inertia: report.inertia,
      nmi: initialNmi,
      memoryShards: memory.featureShards.parts.length,
      ...stats,
      sizes: Array.from(labelHistogram(initialLabels, config.odc.k)),
    });
    return { mode: new OdcMode(config, memory), initialNmi, initialLabels };
  } catch (err) {
    for (const block of raw) block.dispose();
    memory?.dispose();
    throw err;
  }
}

/** Online Deep Clustering: the memory's labels, updated every step. */
export class OdcMode implements TrainingMode {
  readonly tracksChange = true;
  readonly extractsAtEpochStart = false;
  private readonly sampler: UniformSampler;
  private readonly checks: LateSmallClusterChecks;

  constructor(
    private readonly config: TrainConfig,
    readonly memory: OdcMemory,
  ) {
    this.sampler = new UniformSampler(memory.n, config.seed + 3);
    this.checks = new LateSmallClusterChecks(memory, config.odc.reweightPow);
  }

  get weights(): Tensor<'f32'> {
    return this.memory.weights;
  }

  get changeCount(): Tensor<'u32'> {
    return this.memory.changeCount;
  }

  epochOrder(epoch: number): Promise<Uint32Array> {
    return Promise.resolve(this.sampler.epoch(epoch));
  }

  targets(_idx: Uint32Array, idxT: Tensor<'u32'>): Tensor<'u32'> {
    return this.memory.labelsOf(idxT);
  }

  observe(idxT: Tensor<'u32'>, features: Tensor<'f32'>): void {
    this.memory.update(idxT, features);
  }

  beginStep(): void {
    this.checks.begin();
  }

  /**
   * Every centroidInterval iterations a full centroid recompute; every iteration the small-cluster check, then
   * re-weighting. The check is decided late (settle): spec 2.5's moves and splits, when a cluster is small,
   * reach the GPU before anything recorded after the check.
   */
  afterStep(iteration: number): void {
    if ((iteration + 1) % this.config.odc.centroidInterval === 0) this.memory.recomputeCentroids();
    this.checks.end(iteration);
  }

  abandonStep(): void {
    this.checks.abandon();
  }

  settle(keep: number): Promise<number> {
    return this.checks.settle(keep);
  }

  logStats(): Promise<MemoryStats> {
    return this.memory.stats();
  }

  async epochLabels(): Promise<{ labels: Uint32Array; stats: MemoryStats }> {
    const labels = await this.memory.labels.data();
    return { labels, stats: await this.memory.stats() };
  }

  checkpointState(): Pick<TrainState, 'memory' | 'pseudoLabels'> {
    return { memory: this.memory, pseudoLabels: null };
  }

  dispose(): void {
    this.memory.dispose();
  }
}

/** The DeepCluster baseline: k-means labels of backbone features, fixed for an epoch. */
export class DeepClusterMode implements TrainingMode {
  readonly tracksChange = false;
  readonly extractsAtEpochStart = true;
  readonly weights = null;
  readonly changeCount = null;

  /** `labels`: the epoch's pseudo-labels a mid-epoch checkpoint restored (null: cluster at the next epoch start). */
  constructor(
    private readonly ctx: ModeContext,
    private readonly n: number,
    private labels: Uint32Array | null,
  ) {}

  /** Re-clusters and resets the head at an epoch start (a run resumed mid-epoch keeps the saved labels and head). */
  async epochOrder(epoch: number, batchInEpoch: number): Promise<Uint32Array> {
    const { config, model } = this.ctx;
    if (batchInEpoch === 0 || !this.labels) {
      this.labels = await this.cluster();
      model.head.reset();
    }
    return balancedEpoch(this.labels, config.odc.k, this.n, streamRng(config.seed + 4, epoch));
  }

  targets(idx: Uint32Array): Tensor<'u32'> {
    const labels = this.current();
    return Tensor.from(
      idx.map((i) => labels[i]),
      [idx.length],
      'u32',
    );
  }

  observe(): void {}

  beginStep(): void {}

  afterStep(): void {}

  abandonStep(): void {}

  settle(): Promise<number> {
    return Promise.resolve(0);
  }

  logStats(): Promise<null> {
    return Promise.resolve(null);
  }

  epochLabels(): Promise<{ labels: Uint32Array; stats: MemoryStats }> {
    const labels = this.current();
    return Promise.resolve({
      labels,
      stats: summarizeHistogram(labelHistogram(labels, this.ctx.config.odc.k), this.ctx.config.odc.minCluster),
    });
  }

  checkpointState(): Pick<TrainState, 'memory' | 'pseudoLabels'> {
    return { memory: null, pseudoLabels: this.labels };
  }

  dispose(): void {}

  private current(): Uint32Array {
    if (!this.labels)
      throw new Error('DeepCluster: no pseudo-labels yet (epochOrder clusters at the start of an epoch)');
    return this.labels;
  }

  /** DeepCluster's clustering step: backbone features (eval), L2-normalised, k-means with K clusters. */
  private async cluster(): Promise<Uint32Array> {
    const { config, model, augmenter, clusterRng } = this.ctx;
    const raw = extractFeatures(
      model,
      (x) => model.backbone.forward(x),
      augmenter,
      model.backbone.featureDim,
      config.optim.batchSize,
    );
    try {
      return await kmeansLabels(raw, config.odc.k, {
        iterations: config.odc.kmeansIterations,
        seed: clusterRng.nextU32(),
      });
    } finally {
      raw.dispose();
    }
  }
}

/** Throws a clear error if `t` holds a NaN or an infinity (one scalar read back: the sum). */
async function checkFinite(t: Tensor<'f32'>, what: string): Promise<void> {
  const total = sum(t);
  const [value] = await total.data();
  total.dispose();
  if (!Number.isFinite(value)) {
    throw new Error(
      `NaN or Inf in ${what} (their sum is ${value}): check the input images and normalisation (data.*, augment) and the model configuration.`,
    );
  }
}
