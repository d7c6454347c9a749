/**
 * A training session: everything a run holds from its checks to its last checkpoint. `open` validates
 * the configuration, checks a resume's checkpoint and the data before any slow step, and builds the
 * augmenter, model, optimiser and RNG streams; `begin` compiles the kernels, then restores the
 * checkpoint or makes the mode's fresh start (ODC's initial clustering); `save` writes a checkpoint of
 * the current state; `dispose` releases it all.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gpu } from '../gpu/device.ts';
import { Tensor } from '../tensor/tensor.ts';
import { tidy } from '../tensor/scope.ts';
import { backward, noGrad } from '../tensor/autograd.ts';
import { weightedCrossEntropy } from '../ops/loss.ts';
import type { SGD } from '../optim/sgd.ts';
import type { LossScaler } from '../optim/loss-scale.ts';
import type { OdcModel } from '../models/odc-model.ts';
import { GpuAugmenter } from '../data/augment.ts';
import type { ImageDataset } from '../data/dataset.ts';
import { asSource, type ImageSource } from '../data/source.ts';
import { trainingBatchCount } from '../data/sampler.ts';
import { ensureWritableFolder } from '../data/files.ts';
import { checkTrainingData } from '../data/preflight.ts';
import { augmentConfig, loadTrainingData } from '../data/training-data.ts';
import { Rng } from '../util/rng.ts';
import {
  CHECKPOINT_FILE,
  checkDataSize,
  loadCheckpoint,
  saveCheckpoint,
  type EpochProgress,
  type EpochSummary,
  type LoadedCheckpoint,
  type TrainPosition,
} from './checkpoint.ts';
import { checkResumeConfig, validateConfig, type ConfigChange, type TrainConfig } from '../config/settings.ts';
import { buildLossScaler, buildModel, buildOptimizer } from './build.ts';
import { loadWeights } from '../io/weights.ts';
import { prepareRunVariants, recordRunVariants } from './tuning.ts';
import { freshMode, resumedMode, type TrainingMode } from './modes.ts';
import { Progress } from './progress.ts';
import { StepReplay, type StepParts } from './step.ts';

export interface TrainOptions {
  config: TrainConfig;
  /** Output folder: checkpoint.odc, log.jsonl, config.json. */
  outDir: string;
  /** Continue from outDir/checkpoint.odc. */
  resume?: boolean;
  /**
   * A safetensors file of backbone weights (PyTorch names and layouts: an `odc export`, a torchvision state
   * dict) to start a new run from, instead of the random init; checked before any GPU work of the run.
   */
  initFrom?: string;
  /** Images to use instead of loading config.data (tests, benches): an in-memory data set or a source. */
  dataset?: ImageDataset | ImageSource;
  /** Stop after this many iterations in total (tests, benchmarks); a checkpoint is written there. */
  stopAfterIterations?: number;
  /**
   * A stop request (the CLI aborts it on SIGINT/SIGTERM): training finishes the current iteration, writes a
   * checkpoint to resume from, and returns with `interrupted` set.
   */
  signal?: AbortSignal;
  quiet?: boolean;
  /**
   * Called at every epoch end, after its log record and checkpoint, with the epoch's summary (NMI of the memory
   * labels when the data has labels) and the session (the run's state: `odc train --report` rewrites the report
   * from it); awaited. A stop requested here ends the run at this epoch end.
   */
  onEpoch?: (summary: EpochSummary, session: TrainingSession) => void | Promise<void>;
  /** Called after every iteration with the iteration count so far (soak bench, fault-injection tests). */
  afterIteration?: (iteration: number) => void | Promise<void>;
  /**
   * Largest ODC memory feature shard in bytes (default: the device's binding limit). Tests lower it to train with
   * the memory in several shards; results do not depend on it.
   */
  maxMemoryShardBytes?: number;
}

export class TrainingSession implements StepParts {
  /** Where the run stands: the next epoch and batch to train, and the iterations done. */
  position: TrainPosition = { epoch: 0, batchInEpoch: 0, iteration: 0 };
  /** The summaries of the finished epochs (saved in every checkpoint). */
  history: Array<Record<string, number>> = [];
  /** NMI of the initial clustering against the true labels (fresh ODC runs on labelled data). */
  initialNmi?: number;
  /** The labels of the initial clustering (fresh ODC runs): the first epoch's label churn is measured against them. */
  initialLabels?: Uint32Array;
  readonly n: number;
  readonly batchSize: number;
  readonly iterationsPerEpoch: number;
  private currentMode: TrainingMode | null = null;
  /** The step's tape (optim.replay), or null. */
  readonly replay: StepReplay | null;

  private constructor(
    readonly options: TrainOptions,
    readonly config: TrainConfig,
    readonly progress: Progress,
    private readonly ckpt: LoadedCheckpoint | null,
    private readonly resumeChanges: ConfigChange[],
    readonly dataset: ImageSource,
    readonly augmenter: GpuAugmenter,
    readonly modelRng: Rng,
    readonly model: OdcModel,
    readonly sgd: SGD,
    readonly scaler: LossScaler | null,
    readonly augmentRng: Rng,
    readonly clusterRng: Rng,
  ) {
    this.n = dataset.n;
    this.batchSize = config.optim.batchSize;
    this.iterationsPerEpoch = trainingBatchCount(this.n, this.batchSize);
    this.replay = config.optim.replay ? new StepReplay() : null;
  }

  /** Checks everything that can be checked cheaply (config, output folder, checkpoint, data), then builds the run. */
  static async open(options: TrainOptions): Promise<TrainingSession> {
    const config = validateConfig(options.config);
    const outDir = options.outDir;
    ensureWritableFolder(outDir, 'output folder (--out)');
    const progress = new Progress(join(outDir, 'log.jsonl'), options.quiet);
    // A resume checks its checkpoint (checksums, meaning) and what it may change before any slow step.
    const ckpt = options.resume ? await loadCheckpoint(outDir) : null;
    const resumeChanges = ckpt ? checkResumeConfig(ckpt.meta.config, config, outDir) : [];
    if (ckpt) checkEpochsLeft(ckpt.meta.position, config, outDir);
    const dataset = options.dataset ? asSource(options.dataset) : await loadTrainingData(config);
    checkTrainingData(dataset, config);
    if (ckpt) checkDataSize(ckpt, dataset.n, outDir);
    const augmenter = new GpuAugmenter(dataset, augmentConfig(config, dataset));
    const modelRng = new Rng(config.seed);
    const model = buildModel(config, dataset.channels, modelRng);
    if (options.initFrom !== undefined && !ckpt) {
      try {
        await loadWeights(model, options.initFrom);
      } catch (err) {
        model.dispose();
        throw err;
      }
    }
    const sgd = buildOptimizer(model, config);
    const scaler = buildLossScaler(config);
    const augmentRng = new Rng(config.seed + 1);
    const clusterRng = new Rng(config.seed + 2);
    return new TrainingSession(
      options,
      config,
      progress,
      ckpt,
      resumeChanges,
      dataset,
      augmenter,
      modelRng,
      model,
      sgd,
      scaler,
      augmentRng,
      clusterRng,
    );
  }

  get outDir(): string {
    return this.options.outDir;
  }

  /** ModeContext.maxMemoryShardBytes: the option's value. */
  get maxMemoryShardBytes(): number | undefined {
    return this.options.maxMemoryShardBytes;
  }

  /** The mode's labels, memory and rules (set by `begin`). */
  get mode(): TrainingMode {
    if (!this.currentMode) throw new Error('TrainingSession: begin() has not run');
    return this.currentMode;
  }

  /** A resumed run: its checkpoint's metrics of the epoch in progress (null at an epoch boundary or on a fresh run). */
  get carried(): EpochProgress | null {
    return this.ckpt?.meta.epochProgress ?? null;
  }

  get resumed(): boolean {
    return this.ckpt !== null;
  }

  /** Compiles the kernels, then restores the checkpoint (resume) or makes the mode's fresh start. */
  async begin(): Promise<void> {
    this.progress.message(await prepareRunVariants(gpu(), this.outDir, this.resumed));
    const t0 = performance.now();
    const compiled = await warmUp(this.model, this.augmenter, this.config, this.modelRng, this.sgd);
    this.progress.message(
      `compiled ${compiled} GPU kernels in parallel (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    const ckpt = this.ckpt;
    if (ckpt) {
      const memory = ckpt.restore(this.model, this.sgd, { maxShardBytes: this.options.maxMemoryShardBytes });
      if (this.scaler && ckpt.meta.lossScale) this.scaler.load(ckpt.meta.lossScale);
      this.currentMode = resumedMode(this, { memory, pseudoLabels: ckpt.pseudoLabels }, this.n);
      this.position = ckpt.meta.position;
      this.history = ckpt.meta.history;
      this.modelRng.setState(ckpt.meta.rngs.model);
      this.augmentRng.setState(ckpt.meta.rngs.augment);
      this.clusterRng.setState(ckpt.meta.rngs.cluster);
      this.writeConfig();
      const position = this.position;
      const changes = this.resumeChanges;
      const changed = changes
        .map((c) => `${c.key} (${JSON.stringify(c.before)} -> ${JSON.stringify(c.after)})`)
        .join(', ');
      this.progress.message(
        `resumed from ${join(this.outDir, CHECKPOINT_FILE)} at epoch ${position.epoch + 1}, batch ${position.batchInEpoch}, iteration ${position.iteration}` +
          (changed ? `; changed ${changed}` : ''),
      );
      this.progress.event({
        event: 'resume',
        ...position,
        changed: Object.fromEntries(changes.map((c) => [c.key, { from: c.before, to: c.after }])),
      });
    } else {
      this.writeConfig();
      const fresh = await freshMode(this, this.progress, this.dataset.labels, this.n);
      this.currentMode = fresh.mode;
      this.initialNmi = fresh.initialNmi;
      this.initialLabels = fresh.initialLabels;
    }
  }

  /** Writes the checkpoint of the current state (`epochProgress`: the epoch's metrics so far, mid-epoch only). */
  async save(epochProgress: EpochProgress | null): Promise<string> {
    recordRunVariants(gpu(), this.outDir);
    return saveCheckpoint(
      this.outDir,
      { model: this.model, sgd: this.sgd, ...this.mode.checkpointState() },
      {
        config: this.config,
        inChannels: this.dataset.channels,
        position: this.position,
        rngs: { model: this.modelRng.state(), augment: this.augmentRng.state(), cluster: this.clusterRng.state() },
        history: this.history,
        dataSize: this.n,
        batchesPerEpoch: this.iterationsPerEpoch,
        epochProgress,
        lossScale: this.scaler ? await this.scaler.read() : null,
      },
    );
  }

  dispose(): void {
    this.replay?.dispose();
    this.currentMode?.dispose();
    this.augmenter.dispose();
    if (!this.options.dataset) this.dataset.close(); // a source the session opened (a pack file)
    this.sgd.dispose();
    this.scaler?.dispose();
    this.model.dispose();
  }

  private writeConfig(): void {
    writeFileSync(join(this.outDir, 'config.json'), JSON.stringify(this.config, null, 2) + '\n');
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

/**
 * Compiles every kernel of an evaluation batch and a training step in parallel before the first real
 * step (nothing executes). RNG states are restored, so a warm-up never changes the run's results.
 */
async function warmUp(
  model: OdcModel,
  augmenter: GpuAugmenter,
  config: TrainConfig,
  modelRng: Rng,
  sgd: SGD,
): Promise<number> {
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
