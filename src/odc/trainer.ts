/**
 * The ODC trainer (ODC-SPEC section 2.8), and the DeepCluster baseline on the same engine.
 *
 * ODC iteration, in the spec's order:
 *   1. sample indices, augment the batch on the GPU
 *   2. forward: backbone -> neck -> f -> head -> logits
 *   3. y := memory labels of the batch BEFORE this step's update
 *   4. loss := weighted CE(logits, y) with the current weights
 *   5. memory update with f (momentum update + relabel)
 *   6. backward, SGD step
 *   7. every centroidInterval iterations: full centroid recompute; every iteration: small-cluster
 *      handling, then re-weighting
 * Initial clustering runs once on the random-init network in eval mode; the head is re-initialised
 * right after it. Losses, accuracies and change counts stay on the GPU and are read once per logging
 * interval.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gpu } from '../gpu/device.ts';
import { Tensor } from '../tensor/tensor.ts';
import { tidy } from '../tensor/scope.ts';
import { backward, noGrad } from '../tensor/autograd.ts';
import { weightedCrossEntropy } from '../ops/loss.ts';
import { argmaxRows, countEqual } from '../ops/rows.ts';
import { sum } from '../ops/reduce.ts';
import { SGD } from '../optim/sgd.ts';
import { stepLr } from '../optim/schedule.ts';
import { OdcModel } from '../models/odc-model.ts';
import { GpuAugmenter, cifarPreset, imagenetPreset, mnistPreset, type AugmentConfig } from '../data/augment.ts';
import { loadDataset, type ImageDataset } from '../data/dataset.ts';
import { UniformSampler, balancedEpoch, streamRng, trainingBatchCount, trainingBatches } from '../data/sampler.ts';
import { ensureWritableFolder } from '../data/files.ts';
import { checkTrainingData } from '../data/preflight.ts';
import { Rng } from '../util/rng.ts';
import { nmi } from '../eval/nmi.ts';
import { OdcMemory, summarizeHistogram, type MemoryStats } from './memory.ts';
import { kmeansLabels } from './kmeans.ts';
import { extractFeatures } from './extract.ts';
import { CHECKPOINT_FILE, checkDataSize, loadCheckpoint, saveCheckpoint, type EpochProgress, type TrainPosition } from './checkpoint.ts';
import { Progress } from './progress.ts';
import { checkResumeConfig, validateConfig, type TrainConfig } from './config.ts';

export interface TrainOptions {
  config: TrainConfig;
  /** Output folder: checkpoint.odc, log.jsonl, config.json. */
  outDir: string;
  /** Continue from outDir/checkpoint.odc. */
  resume?: boolean;
  /** Data set to use instead of loading config.data (tests). */
  dataset?: ImageDataset;
  /** Stop after this many iterations in total (tests, benchmarks); a checkpoint is written there. */
  stopAfterIterations?: number;
  /**
   * A stop request (the CLI aborts it on SIGINT/SIGTERM): training finishes the current iteration, writes a
   * checkpoint to resume from, and returns with `interrupted` set.
   */
  signal?: AbortSignal;
  quiet?: boolean;
  /** Called after every iteration with the iteration count so far (soak bench, fault-injection tests). */
  afterIteration?: (iteration: number) => void | Promise<void>;
}

export interface EpochSummary {
  epoch: number;
  loss: number;
  headAccuracy: number;
  changeRatio: number;
  imagesPerSecond: number;
  seconds: number;
  /** NMI of the memory labels against the true labels, when the data set has labels. */
  nmi?: number;
  smallClusters: number;
  minCluster: number;
  maxCluster: number;
}

export interface TrainResult {
  epochs: EpochSummary[];
  /** NMI of the initial clustering (random-init network) against the true labels, when available. */
  initialNmi?: number;
  iterations: number;
  /** Clusters dissolved and refilled by splitting during training (this process only). */
  splits: number;
  seconds: number;
  checkpoint: string;
  /** Training stopped before the end of the schedule (options.signal or stopAfterIterations); resume from `checkpoint`. */
  interrupted: boolean;
  /** Where it stopped (the end of the schedule when not interrupted). */
  position: TrainPosition;
}

/**
 * Loads the configured data set. With data.limit, a seeded random subset of that many images is kept
 * (in data-set order): some sources are sorted by class, so the first images would be one class.
 */
export async function loadTrainingData(config: TrainConfig, split: 'train' | 'test' = 'train'): Promise<ImageDataset> {
  const ds = await loadSource(config, split);
  const picked = limitedRows(config, ds.n);
  return picked ? subsetDataset(ds, picked) : ds;
}

/** The whole configured source (no limit applied). */
export function loadSource(config: TrainConfig, split: 'train' | 'test' = 'train'): Promise<ImageDataset> {
  const { source, path, imageSize } = config.data;
  if (source === 'synthetic') throw new Error('data.source "synthetic" is only available to tests (pass a dataset)');
  return loadDataset(path ? `${source}:${path}` : source, { split, size: imageSize > 0 ? imageSize : undefined });
}

/** The sorted rows of a source of n images that data.limit keeps, or null for all of them. */
export function limitedRows(config: TrainConfig, n: number): number[] | null {
  const limit = config.data.limit;
  if (!(limit > 0 && limit < n)) return null;
  return new Rng(config.seed + 5).shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, limit).sort((a, b) => a - b);
}

/** A copy of the images (and labels) at `indices`, in that order. */
export function subsetDataset(ds: ImageDataset, indices: readonly number[]): ImageDataset {
  const per = ds.height * ds.width * ds.channels;
  const images = new Uint8Array(indices.length * per);
  indices.forEach((src, i) => images.set(ds.images.subarray(src * per, (src + 1) * per), i * per));
  return {
    ...ds,
    name: `${ds.name}[${indices.length} of ${ds.n}]`,
    n: indices.length,
    images,
    labels: ds.labels ? Int32Array.from(indices, (i) => ds.labels![i]) : null,
  };
}

/** The augmentation of a preset at the data set's (or configured) resolution. */
export function augmentConfig(config: TrainConfig, ds: ImageDataset): AugmentConfig {
  const size = config.data.imageSize > 0 ? config.data.imageSize : ds.height;
  const out = { outHeight: size, outWidth: size };
  switch (config.augment) {
    case 'mnist':
      return mnistPreset({ ...out, evalResize: size });
    case 'cifar':
      return cifarPreset({ ...out, evalResize: size });
    case 'imagenet':
      return imagenetPreset(size === 224 ? {} : { ...out, evalResize: Math.round((size * 256) / 224) });
    case 'none':
      return mnistPreset({ ...out, evalResize: size, crop: { scale: [1, 1], ratio: [1, 1] }, rotationDeg: 0, jitter: null, ...meanStd(ds) });
  }
}

function meanStd(ds: ImageDataset): Pick<AugmentConfig, 'mean' | 'std'> {
  return ds.channels === 1 ? { mean: [0.5], std: [0.5] } : { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
}

export function buildModel(config: TrainConfig, inChannels: number, rng: Rng): OdcModel {
  return new OdcModel(
    {
      backbone: config.model.backbone,
      stem: config.model.stem,
      inChannels,
      neckHidden: config.model.neckHidden,
      featureDim: config.model.featureDim,
      numClusters: config.odc.k,
      dropout: config.model.dropout,
      withNeck: config.mode === 'odc',
    },
    rng,
  );
}

/** SGD with the head in its own group (ODC: head momentum 0). Parameter order = model.parameters(). */
export function buildOptimizer(model: OdcModel, config: TrainConfig): SGD {
  const head = new Set(model.head.parameters());
  const body = model.parameters().filter((p) => !head.has(p));
  const o = config.optim;
  return new SGD([{ params: body }, { params: model.head.parameters(), momentum: o.headMomentum }], {
    lr: o.lr,
    momentum: o.momentum,
    weightDecay: o.weightDecay,
    nesterov: o.nesterov,
  });
}

/** Per-iteration metrics accumulated on the GPU between log points (one read per interval). */
class MetricSlots {
  readonly loss: Tensor<'f32'>;
  readonly correct: Tensor<'u32'>;
  readonly changed: Tensor<'u32'>;
  readonly rows: number[] = [];

  /** `interval` iterations per log record; `carried`: iterations restored from a checkpoint (may exceed a new interval). */
  constructor(readonly interval: number, carried = 0) {
    const capacity = Math.max(interval, carried + 1);
    this.loss = Tensor.empty([capacity], 'f32');
    this.correct = Tensor.empty([capacity], 'u32');
    this.changed = Tensor.empty([capacity], 'u32');
  }

  record(loss: Tensor<'f32'>, correct: Tensor<'u32'>, changed: Tensor<'u32'> | null, rows: number): void {
    const i = this.rows.length;
    gpu().copy(loss.buffer, 0, this.loss.buffer, i * 4, 4);
    gpu().copy(correct.buffer, 0, this.correct.buffer, i * 4, 4);
    if (changed) gpu().copy(changed.buffer, 0, this.changed.buffer, i * 4, 4);
    this.rows.push(rows);
  }

  get full(): boolean {
    return this.rows.length >= this.interval;
  }

  /** The iterations recorded and not yet drained, for a mid-epoch checkpoint; throws on a non-finite loss. */
  async pending(tracksChange: boolean): Promise<Omit<EpochProgress['pending'], 'splits'>> {
    const count = this.rows.length;
    const [loss, correct, changed] = count > 0 ? await Promise.all([this.loss.data(), this.correct.data(), this.changed.data()]) : [[], [], []];
    const out = {
      loss: Array.from(loss).slice(0, count),
      correct: Array.from(correct).slice(0, count),
      changed: tracksChange ? Array.from(changed).slice(0, count) : new Array<number>(count).fill(0),
      rows: [...this.rows],
    };
    for (const l of out.loss) if (!Number.isFinite(l)) throw new NonFiniteLossError(l);
    return out;
  }

  /** Puts back the iterations `pending()` returned (a resumed run then logs as the uninterrupted one would). */
  restore(p: Omit<EpochProgress['pending'], 'splits'>): void {
    if (p.rows.length === 0) return;
    gpu().write(this.loss.buffer, Float32Array.from(p.loss));
    gpu().write(this.correct.buffer, Uint32Array.from(p.correct));
    gpu().write(this.changed.buffer, Uint32Array.from(p.changed));
    this.rows.push(...p.rows);
  }

  /** Reads and clears the slots: mean loss, accuracy, change ratio; throws on a non-finite loss. */
  async drain(tracksChange: boolean): Promise<{ loss: number; accuracy: number; changeRatio: number; count: number }> {
    const count = this.rows.length;
    if (count === 0) return { loss: Number.NaN, accuracy: Number.NaN, changeRatio: Number.NaN, count };
    const [loss, correct, changed] = await Promise.all([this.loss.data(), this.correct.data(), this.changed.data()]);
    let l = 0;
    let c = 0;
    let ch = 0;
    let total = 0;
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(loss[i])) throw new NonFiniteLossError(loss[i]);
      l += loss[i];
      c += correct[i];
      ch += changed[i];
      total += this.rows[i];
    }
    this.rows.length = 0;
    return { loss: l / count, accuracy: c / total, changeRatio: tracksChange ? ch / total : 0, count };
  }

  dispose(): void {
    this.loss.dispose();
    this.correct.dispose();
    this.changed.dispose();
  }
}

export class NonFiniteLossError extends Error {
  constructor(value: number) {
    super(
      `The loss became ${value}: training stopped. The last good checkpoint is kept; lower optim.lr ` +
        '(e.g. --set optim.lr=0.01) and resume with --resume, or restart.',
    );
    this.name = 'NonFiniteLossError';
  }
}

/** Runs ODC (or the DeepCluster baseline) training as configured. */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const config = validateConfig(options.config);
  const outDir = options.outDir;
  ensureWritableFolder(outDir, 'output folder (--out)');
  const progress = new Progress(join(outDir, 'log.jsonl'), options.quiet);
  // A resume checks its checkpoint (checksums, meaning) and what it may change before any slow step.
  const ckpt = options.resume ? await loadCheckpoint(outDir) : null;
  const resumeChanges = ckpt ? checkResumeConfig(ckpt.meta.config, config, outDir) : [];
  if (ckpt) checkEpochsLeft(ckpt.meta.position, config, outDir);
  const dataset = options.dataset ?? (await loadTrainingData(config));
  const n = dataset.n;
  checkTrainingData(dataset, config);
  if (ckpt) checkDataSize(ckpt, n, outDir);
  const augmenter = new GpuAugmenter(dataset, augmentConfig(config, dataset));
  const modelRng = new Rng(config.seed);
  const model = buildModel(config, dataset.channels, modelRng);
  const sgd = buildOptimizer(model, config);
  const augmentRng = new Rng(config.seed + 1);
  const clusterRng = new Rng(config.seed + 2);
  const sampler = new UniformSampler(n, config.seed + 3);
  const batchSize = config.optim.batchSize;
  const iterationsPerEpoch = trainingBatchCount(n, batchSize);
  const featureDim = config.mode === 'odc' ? config.model.featureDim : model.backbone.featureDim;
  let memory: OdcMemory | null = null;
  let dcLabels: Uint32Array | null = null; // DeepCluster: this epoch's pseudo-labels (fixed for the epoch)
  let position: TrainPosition = { epoch: 0, batchInEpoch: 0, iteration: 0 };
  let history: Array<Record<string, number>> = [];
  const trueLabels = dataset.labels;
  let initialNmi: number | undefined;
  const started = performance.now();

  const saveState = async (epochProgress: EpochProgress | null): Promise<string> =>
    saveCheckpoint(outDir, { model, sgd, memory, pseudoLabels: dcLabels }, {
      config,
      inChannels: dataset.channels,
      position,
      rngs: { model: modelRng.state(), augment: augmentRng.state(), cluster: clusterRng.state() },
      history,
      dataSize: n,
      batchesPerEpoch: iterationsPerEpoch,
      epochProgress,
    });

  try {
    const t0 = performance.now();
    const compiled = await warmUp(model, augmenter, config, modelRng, sgd);
    progress.message(`compiled ${compiled} GPU kernels in parallel (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    if (ckpt) {
      memory = ckpt.restore(model, sgd);
      dcLabels = ckpt.pseudoLabels;
      position = ckpt.meta.position;
      history = ckpt.meta.history;
      modelRng.setState(ckpt.meta.rngs.model);
      augmentRng.setState(ckpt.meta.rngs.augment);
      clusterRng.setState(ckpt.meta.rngs.cluster);
      writeFileSync(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
      const changed = resumeChanges.map((c) => `${c.key} (${JSON.stringify(c.before)} -> ${JSON.stringify(c.after)})`).join(', ');
      progress.message(
        `resumed from ${join(outDir, CHECKPOINT_FILE)} at epoch ${position.epoch + 1}, batch ${position.batchInEpoch}, iteration ${position.iteration}` +
          (changed ? `; changed ${changed}` : ''),
      );
      progress.event({ event: 'resume', ...position, changed: Object.fromEntries(resumeChanges.map((c) => [c.key, { from: c.before, to: c.after }])) });
    } else {
      writeFileSync(join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
      if (config.mode === 'odc') {
        // Initial clustering on the random-init network (eval mode), then a fresh head (spec 2.2).
        const t0 = performance.now();
        const raw = extractFeatures(model, (x) => model.features(x), augmenter, featureDim, batchSize);
        await checkFinite(raw, 'the random-init network\'s features');
        memory = OdcMemory.create({
          n,
          dim: featureDim,
          k: config.odc.k,
          momentum: config.odc.memoryMomentum,
          minCluster: config.odc.minCluster,
          seed: clusterRng.nextU32(),
          kmeansIterations: config.odc.kmeansIterations,
          kmeansInit: config.odc.kmeansInit, splitRestarts: config.odc.splitRestarts, splitMaxIter: config.odc.splitMaxIter,
        });
        const report = await memory.init(raw);
        raw.dispose();
        model.head.reset();
        if (trueLabels) initialNmi = nmi(await memory.labels.data(), trueLabels);
        const stats = await memory.stats();
        progress.message(
          `initial clustering: ${n} images, K = ${config.odc.k}, inertia ${report.inertia[0].toFixed(1)} -> ${report.inertia[report.inertia.length - 1].toFixed(1)}, ` +
            `cluster sizes ${stats.min}..${stats.max}` + (initialNmi !== undefined ? `, NMI vs labels ${initialNmi.toFixed(4)}` : '') +
            ` (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
        );
        progress.event({ event: 'init', inertia: report.inertia, nmi: initialNmi, ...stats });
      }
    }

    const totalIterations = iterationsPerEpoch * config.optim.epochs;
    const carried = ckpt?.meta.epochProgress ?? null; // a mid-epoch checkpoint's metrics of its epoch
    const slots = new MetricSlots(config.log.interval, carried?.pending.rows.length ?? 0);
    if (carried) slots.restore(carried.pending);
    const summaries: EpochSummary[] = [];
    let imagesSinceStart = 0;
    let splits = 0;
    let splitsSinceLog = carried?.pending.splits ?? 0;
    const runStart = performance.now();
    // Checkpoints beyond the per-epoch ones: on a stop request, and every log.checkpointMinutes, at an iteration boundary.
    const positionKey = (p: TrainPosition): string => `${p.epoch}/${p.batchInEpoch}/${p.iteration}`;
    let savedAt = ckpt ? positionKey(position) : '';
    let lastSaveTime = performance.now();
    const checkpoint = async (epochProgress: EpochProgress | null): Promise<void> => {
      if (savedAt === positionKey(position)) return;
      const path = await saveState(epochProgress);
      savedAt = positionKey(position);
      lastSaveTime = performance.now();
      progress.event({ event: 'checkpoint', ...position, path });
    };
    const stopRequested = (): boolean =>
      options.signal?.aborted === true || (options.stopAfterIterations !== undefined && position.iteration >= options.stopAfterIterations);
    const checkpointDue = (): boolean => config.log.checkpointMinutes > 0 && performance.now() - lastSaveTime >= config.log.checkpointMinutes * 60_000;
    let stopped = stopRequested();
    if (stopped) await checkpoint(null); // stopped during the initial clustering: keep its result
    try {
      for (let epoch = position.epoch; epoch < config.optim.epochs && !stopped; epoch++) {
        const epochStart = performance.now();
        sgd.setLr(stepLr(config.optim.lr, epoch, { steps: config.optim.lrSteps, gamma: config.optim.lrGamma }));
        let order: Uint32Array;
        if (config.mode === 'odc') {
          order = sampler.epoch(epoch);
        } else {
          // DeepCluster: re-cluster backbone features every epoch, balanced sampling, fresh head; a run
          // resumed mid-epoch goes on with the epoch's saved labels and head.
          if (position.batchInEpoch === 0 || !dcLabels) {
            dcLabels = await deepClusterLabels(model, augmenter, config, clusterRng, batchSize);
            model.head.reset();
          }
          order = balancedEpoch(dcLabels, config.odc.k, n, streamRng(config.seed + 4, epoch));
        }
        const epochBatches = trainingBatches(order, batchSize);
        const resumedEpoch = position.batchInEpoch > 0 ? carried : null;
        let epochLoss = resumedEpoch?.loss ?? 0;
        let epochAcc = resumedEpoch?.accuracy ?? 0;
        let epochChange = resumedEpoch?.changeRatio ?? 0;
        let epochLogs = resumedEpoch?.logs ?? 0;
        const epochProgress = async (): Promise<EpochProgress> => ({
          loss: epochLoss,
          accuracy: epochAcc,
          changeRatio: epochChange,
          logs: epochLogs,
          pending: { ...(await slots.pending(memory !== null)), splits: splitsSinceLog },
        });
        for (let b = position.batchInEpoch; b < epochBatches.length; b++) {
          const idx = epochBatches[b];
          tidy(() => {
            const idxT = Tensor.from(idx, [idx.length], 'u32');
            const x = augmenter.augment(idx, augmentRng);
            const y = memory ? memory.labelsOf(idxT) : Tensor.from(idx.map((i) => dcLabels![i]), [idx.length], 'u32');
            const f = model.features(x);
            const logits = model.head.forward(f);
            const loss = weightedCrossEntropy(logits, y, memory ? memory.weights : null, { chunks: config.odc.lossChunks });
            const correct = countEqual(argmaxRows(logits), y);
            memory?.update(idxT, f);
            backward(loss);
            sgd.step();
            slots.record(loss, correct, memory?.changeCount ?? null, idx.length);
          });
          sgd.zeroGrad();
          if (memory) {
            if ((position.iteration + 1) % config.odc.centroidInterval === 0) memory.recomputeCentroids();
            const handled = await memory.handleSmallClusters();
            splits += handled.splits.length;
            splitsSinceLog += handled.splits.length;
            memory.updateWeights(config.odc.reweightPow);
          }
          position = { epoch, batchInEpoch: b + 1, iteration: position.iteration + 1 };
          imagesSinceStart += idx.length;
          const last = b === epochBatches.length - 1;
          if (slots.full || last) {
            const m = await slots.drain(memory !== null);
            const stats = memory ? await memory.stats() : null;
            const elapsed = (performance.now() - runStart) / 1000;
            const rate = imagesSinceStart / elapsed;
            epochLoss += m.loss * m.count;
            epochAcc += m.accuracy * m.count;
            epochChange += m.changeRatio * m.count;
            epochLogs += m.count;
            progress.report({
              epoch,
              iteration: position.iteration,
              iterationsPerEpoch,
              totalIterations,
              imagesPerSecond: rate,
              etaSeconds: ((totalIterations - position.iteration) * batchSize) / rate,
              loss: m.loss,
              headAccuracy: m.accuracy,
              changeRatio: m.changeRatio,
              lr: sgd.lr,
              ...(stats ? { smallClusters: stats.small, minCluster: stats.min, maxCluster: stats.max } : {}),
            }, { splits: splitsSinceLog });
            splitsSinceLog = 0;
          }
          await options.afterIteration?.(position.iteration);
          if (!last && (stopRequested() || checkpointDue())) {
            await checkpoint(await epochProgress());
            stopped = stopRequested();
            if (stopped) break;
          }
        }
        if (stopped) break;
        // End of epoch: summary, NMI of the current labels against the truth, checkpoint.
        const labelsNow = memory ? await memory.labels.data() : dcLabels!;
        const stats = memory ? await memory.stats() : histogramStats(dcLabels!, config.odc.k, config.odc.minCluster);
        const seconds = (performance.now() - epochStart) / 1000;
        const summary: EpochSummary = {
          epoch,
          loss: epochLoss / epochLogs,
          headAccuracy: epochAcc / epochLogs,
          changeRatio: epochChange / epochLogs,
          imagesPerSecond: order.length / seconds,
          seconds,
          ...(trueLabels ? { nmi: nmi(labelsNow, trueLabels) } : {}),
          smallClusters: stats.small,
          minCluster: stats.min,
          maxCluster: stats.max,
        };
        summaries.push(summary);
        history.push({ ...summary });
        position = { epoch: epoch + 1, batchInEpoch: 0, iteration: position.iteration };
        progress.message(
          `epoch ${epoch + 1}/${config.optim.epochs}: loss ${summary.loss.toFixed(4)}, head acc ${(100 * summary.headAccuracy).toFixed(1)}%, ` +
            `change ${(100 * summary.changeRatio).toFixed(2)}%` + (summary.nmi !== undefined ? `, NMI ${summary.nmi.toFixed(4)}` : '') +
            `, ${summary.imagesPerSecond.toFixed(1)} img/s`,
        );
        progress.event({ event: 'epoch', ...summary });
        stopped = stopRequested();
        if ((epoch + 1) % config.log.checkpointEvery === 0 || epoch + 1 === config.optim.epochs || stopped || checkpointDue()) await checkpoint(null);
      }
    } finally {
      slots.dispose();
    }
    const interrupted = position.epoch < config.optim.epochs;
    if (interrupted) {
      const reason = options.signal?.aborted ? String(options.signal.reason ?? 'stop request') : 'stopAfterIterations';
      progress.event({ event: 'interrupted', reason, ...position });
    }
    return {
      epochs: summaries,
      initialNmi,
      iterations: position.iteration,
      splits,
      seconds: (performance.now() - started) / 1000,
      checkpoint: join(outDir, CHECKPOINT_FILE),
      interrupted,
      position,
    };
  } finally {
    memory?.dispose();
    augmenter.dispose();
    sgd.dispose();
    model.dispose();
  }
}

/** A resume must leave at least the epoch in progress to train: optim.epochs may grow, not drop below it. */
function checkEpochsLeft(position: TrainPosition, config: TrainConfig, outDir: string): void {
  const needed = position.epoch + (position.batchInEpoch > 0 ? 1 : 0);
  if (config.optim.epochs < needed) {
    throw new RangeError(
      `optim.epochs = ${config.optim.epochs} is fewer than the ${needed} epoch${needed === 1 ? '' : 's'} the checkpoint in ${outDir} has reached: ` +
        `resume with --epochs ${needed} or more.`,
    );
  }
}

function histogramStats(labels: Uint32Array, k: number, minCluster: number): MemoryStats {
  const h = new Uint32Array(k);
  for (const l of labels) h[l]++;
  return summarizeHistogram(h, minCluster);
}

/** Throws a clear error if `t` holds a NaN or an infinity (one scalar read back: the sum). */
async function checkFinite(t: Tensor<'f32'>, what: string): Promise<void> {
  const total = sum(t);
  const [value] = await total.data();
  total.dispose();
  if (!Number.isFinite(value)) {
    throw new Error(`NaN or Inf in ${what} (their sum is ${value}): check the input images and normalisation (data.*, augment) and the model configuration.`);
  }
}

/**
 * Compiles every kernel of an evaluation batch and a training step in parallel before the first real
 * step (nothing executes). RNG states are restored, so a warm-up never changes the run's results.
 */
async function warmUp(model: OdcModel, augmenter: GpuAugmenter, config: TrainConfig, modelRng: Rng, sgd: SGD): Promise<number> {
  const rngState = modelRng.state();
  const batch = Math.min(config.optim.batchSize, augmenter.n);
  const idx = Uint32Array.from({ length: batch }, (_, i) => i);
  try {
    return await gpu().compileAll(() =>
      tidy(() => {
        model.eval();
        noGrad(() => model.features(augmenter.extract(idx)));
        model.train();
        const logits = model.forward(augmenter.augment(idx, new Rng(0)));
        const labels = Tensor.from(new Uint32Array(batch), [batch], 'u32');
        backward(weightedCrossEntropy(logits, labels, null, { chunks: config.odc.lossChunks }));
      }),
    );
  } finally {
    sgd.zeroGrad();
    modelRng.setState(rngState);
    model.train();
  }
}

/** DeepCluster's clustering step: backbone features (eval), L2-normalised, k-means with K clusters. */
async function deepClusterLabels(model: OdcModel, augmenter: GpuAugmenter, config: TrainConfig, rng: Rng, batchSize: number): Promise<Uint32Array> {
  const dim = model.backbone.featureDim;
  const raw = extractFeatures(model, (x) => model.backbone.forward(x), augmenter, dim, batchSize);
  try {
    return await kmeansLabels(raw, config.odc.k, { iterations: config.odc.kmeansIterations, seed: rng.nextU32() });
  } finally {
    raw.dispose();
  }
}
