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
import { loadCheckpoint, saveCheckpoint, type TrainPosition } from './checkpoint.ts';
import { Progress } from './progress.ts';
import { validateConfig, type TrainConfig } from './config.ts';

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

  constructor(readonly capacity: number) {
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
    return this.rows.length === this.capacity;
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
  await ensureWritableFolder(outDir, 'output folder (--out)');
  const progress = new Progress(join(outDir, 'log.jsonl'), options.quiet);
  const dataset = options.dataset ?? (await loadTrainingData(config));
  const n = dataset.n;
  checkTrainingData(dataset, config);
  const augmenter = new GpuAugmenter(dataset, augmentConfig(config, dataset));
  const modelRng = new Rng(config.seed);
  const model = buildModel(config, dataset.channels, modelRng);
  const sgd = buildOptimizer(model, config);
  const augmentRng = new Rng(config.seed + 1);
  const clusterRng = new Rng(config.seed + 2);
  const sampler = new UniformSampler(n, config.seed + 3);
  const batchSize = config.optim.batchSize;
  const featureDim = config.mode === 'odc' ? config.model.featureDim : model.backbone.featureDim;
  let memory: OdcMemory | null = null;
  let dcLabels: Uint32Array | null = null; // DeepCluster: this epoch's pseudo-labels (fixed for the epoch)
  let position: TrainPosition = { epoch: 0, batchInEpoch: 0, iteration: 0 };
  let history: Array<Record<string, number>> = [];
  const trueLabels = dataset.labels;
  let initialNmi: number | undefined;
  const started = performance.now();

  const saveState = async (): Promise<string> =>
    saveCheckpoint(outDir, { model, sgd, memory, pseudoLabels: dcLabels }, {
      config,
      inChannels: dataset.channels,
      position,
      rngs: { model: modelRng.state(), augment: augmentRng.state(), cluster: clusterRng.state() },
      history,
    });

  try {
    const t0 = performance.now();
    const compiled = await warmUp(model, augmenter, config, modelRng, sgd);
    progress.message(`compiled ${compiled} GPU kernels in parallel (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    if (options.resume) {
      const ckpt = await loadCheckpoint(outDir);
      memory = ckpt.restore(model, sgd);
      dcLabels = ckpt.pseudoLabels;
      position = ckpt.meta.position;
      history = ckpt.meta.history;
      modelRng.setState(ckpt.meta.rngs.model);
      augmentRng.setState(ckpt.meta.rngs.augment);
      clusterRng.setState(ckpt.meta.rngs.cluster);
      progress.message(`resumed from ${join(outDir, 'checkpoint.odc')} at epoch ${position.epoch + 1}, batch ${position.batchInEpoch}, iteration ${position.iteration}`);
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

    const iterationsPerEpoch = trainingBatchCount(n, batchSize);
    const totalIterations = iterationsPerEpoch * config.optim.epochs;
    const slots = new MetricSlots(config.log.interval);
    const summaries: EpochSummary[] = [];
    let imagesSinceStart = 0;
    let splits = 0;
    let splitsSinceLog = 0;
    const runStart = performance.now();
    try {
      for (let epoch = position.epoch; epoch < config.optim.epochs; epoch++) {
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
        let epochLoss = 0;
        let epochAcc = 0;
        let epochChange = 0;
        let epochLogs = 0;
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
          if (options.stopAfterIterations !== undefined && position.iteration >= options.stopAfterIterations) break;
        }
        const stopped = options.stopAfterIterations !== undefined && position.iteration >= options.stopAfterIterations && position.batchInEpoch < epochBatches.length;
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
        if ((epoch + 1) % config.log.checkpointEvery === 0 || epoch + 1 === config.optim.epochs) await saveState();
      }
    } finally {
      slots.dispose();
    }
    const checkpoint = await saveState();
    return { epochs: summaries, initialNmi, iterations: position.iteration, splits, seconds: (performance.now() - started) / 1000, checkpoint };
  } finally {
    memory?.dispose();
    augmenter.dispose();
    sgd.dispose();
    model.dispose();
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
