/**
 * ODC training-step throughput: one full iteration (GPU augmentation, forward, weighted loss, memory
 * update + relabel, backward, SGD, centroid recompute, small-cluster handling, re-weighting) on random
 * images, as img/s. The iteration is the trainer's own (src/odc/step.ts) with the preset's settings.
 *   npx tsx bench/train-step.ts [--quick | --full]
 * Quick (lavapipe): convnet-s on 28x28 at batch 64 and 256 (the TensorFlow.js comparison point).
 * Full (a real GPU): also resnet18 (CIFAR stem, 32x32, batch 512) and resnet50 (224x224, batch 256).
 */
import { Tensor } from '../src/tensor/tensor.ts';
import { GpuAugmenter } from '../src/data/augment.ts';
import { augmentConfig } from '../src/data/training-data.ts';
import { buildLossScaler, buildModel, buildOptimizer } from '../src/odc/build.ts';
import { workingPrecision } from '../src/ops/precision.ts';
import { OdcMode } from '../src/odc/modes.ts';
import { StepReplay, trainingStep, type StepParts } from '../src/odc/step.ts';
import { applyOverride, presetConfig, type TrainConfig } from '../src/config/settings.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { Rng } from '../src/util/rng.ts';
import type { ImageDataset } from '../src/data/dataset.ts';
import { runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

export interface Case {
  name: string;
  preset: string;
  size: number;
  channels: 1 | 3;
  batch: number;
  k: number;
  n: number;
}

function randomDataset(n: number, size: number, channels: 1 | 3): ImageDataset {
  const rng = new Rng(1);
  const images = new Uint8Array(n * size * size * channels);
  for (let i = 0; i < images.length; i++) images[i] = rng.nextU32() & 255;
  return { name: 'random', n, height: size, width: size, channels, images, labels: null, numClasses: null };
}

/**
 * The model, memory and data of one case, and `step`, one full ODC iteration on them. `step(1)` leaves the
 * iteration's small-cluster decision open while the next is recorded (the training loop's run-ahead); `settle`
 * makes the open decisions. With `replay` (default: the preset's optim.replay), the step's model part is captured
 * and replayed (`replay` in the result counts its captured, replayed and eager runs).
 */
export async function prepareStep(
  c: Case,
  options: { replay?: boolean } = {},
): Promise<{
  step: (keepOpen?: number) => Promise<void>;
  settle: () => Promise<number>;
  dispose: () => void;
  memory: OdcMemory;
  replay: StepReplay | null;
  /** The step's parts: a bench may set `parts.replay` to null and back between steps (the tape survives). */
  parts: StepParts;
}> {
  let config: TrainConfig = presetConfig(c.preset);
  config = applyOverride(config, `odc.k=${c.k}`);
  config = applyOverride(config, `odc.minCluster=2`);
  config = applyOverride(config, `data.imageSize=${c.size}`);
  config = applyOverride(config, `optim.precision=${workingPrecision()}`); // f16 steps scale the loss as training does
  const ds = randomDataset(c.n, c.size, c.channels);
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  const model = buildModel(config, c.channels, new Rng(0));
  const sgd = buildOptimizer(model, config);
  const scaler = buildLossScaler(config);
  const memory = OdcMemory.create({
    n: c.n,
    dim: config.model.featureDim,
    k: c.k,
    minCluster: 2,
    seed: 0,
    kmeansIterations: 3,
  });
  const feats = Tensor.from(
    new Float32Array(c.n * config.model.featureDim).map((_, i) => ((i * 7919) % 101) / 101),
    [c.n, config.model.featureDim],
  );
  await memory.init(feats);
  feats.dispose();
  const mode = new OdcMode(config, memory);
  const rng = new Rng(2);
  const replay = (options.replay ?? config.optim.replay) ? new StepReplay() : null;
  const parts: StepParts = { config, model, sgd, scaler, augmentRng: rng, augmenter, mode, replay };
  let iteration = 0;
  const step = async (keepOpen = 0) => {
    const idx = new Uint32Array(c.batch).map(() => rng.int(c.n));
    await trainingStep(parts, idx, iteration++, undefined, keepOpen);
  };
  const dispose = () => {
    replay?.dispose();
    mode.dispose();
    sgd.dispose();
    scaler?.dispose();
    model.dispose();
    augmenter.dispose();
  };
  return { step, settle: () => mode.settle(0), dispose, memory, replay, parts };
}

async function benchCase(c: Case): Promise<BenchRow> {
  const { step, dispose } = await prepareStep(c);
  try {
    const ms = await timeGpu(c.name, step, { iterations: 3 });
    return { name: c.name, ms, value: (c.batch * 1000) / ms, unit: 'img/s' };
  } finally {
    dispose();
  }
}

/** The demo's shape: convnet-s on 28x28 digits. */
export const convnetCase = (batch: number): Case => ({
  name: `ODC step convnet-s 28x28 b${batch}`,
  preset: 'demo',
  size: 28,
  channels: 1,
  batch,
  k: 40,
  n: 2048,
});

/** The two GPU-scale steps the issues compare with PyTorch (resnet18 CIFAR b512, resnet50 224² b256). */
export const RESNET18_CIFAR_CASE: Case = {
  name: 'ODC step resnet18 cifar 32x32 b512',
  preset: 'cifar',
  size: 32,
  channels: 3,
  batch: 512,
  k: 1000,
  n: 50000,
};
export const RESNET50_IMAGENET_CASE: Case = {
  name: 'ODC step resnet50 224x224 b256',
  preset: 'imagenet',
  size: 224,
  channels: 3,
  batch: 256,
  k: 10000,
  n: 20000,
};

export async function run(options: BenchOptions): Promise<BenchRow[]> {
  const cases: Case[] = [convnetCase(64), convnetCase(256)];
  if (!options.quick) {
    cases.push(RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE);
  }
  const rows: BenchRow[] = [];
  for (const c of cases) rows.push(await benchCase(c));
  return rows;
}

await runIfMain(import.meta.url, run);
