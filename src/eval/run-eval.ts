/**
 * `odc eval`, `odc extract` and `odc export`: evaluation of a training run's frozen backbone, feature
 * files, and the backbone in safetensors with PyTorch names and layouts.
 *
 * Evaluation (on backbone features, eval mode): weighted kNN (k 20, cosine, T 0.07), a linear probe
 * trained on the GPU, NMI / ARI / clustering accuracy of k-means with the true number of classes, and of
 * the ODC memory labels; the same for the random-init backbone of the same seed, so the gain is visible.
 * Test split: the data set's own when it has one, else a seeded 20% hold-out of the training images.
 * On unlabelled data the evaluation reports what needs no labels: cluster sizes and balance, the last label
 * churn of the log, and how well the backbone features' kNN agrees with the memory labels (on a seeded 20%
 * hold-out). The table is printed and always written to RUN/eval.json (the report reads it).
 * Every command reads the checkpoint through loadCheckpoint (checksums, then meaning) and refuses training
 * data whose size no longer matches it.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Tensor } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';
import { GpuAugmenter } from '../data/augment.ts';
import type { ImageSource } from '../data/source.ts';
import {
  augmentConfig,
  evaluationSplits,
  loadSource,
  loadTrainingData,
  type EvaluationSplits,
} from '../data/training-data.ts';
import { buildModel } from '../odc/build.ts';
import { checkDataSize, loadCheckpoint } from '../odc/checkpoint.ts';
import { extractFeatures } from '../odc/extract.ts';
import { kmeansLabels } from '../odc/kmeans.ts';
import type { OdcModel } from '../models/odc-model.ts';
import type { TrainConfig } from '../config/settings.ts';
import { knnAccuracy } from './knn.ts';
import { gpu } from '../gpu/device.ts';
import { linearProbe } from './linear-probe.ts';
import { ari, clusteringAccuracy, labelHistogram } from '../metrics/metrics.ts';
import { nmi } from '../metrics/nmi.ts';
import { formatEvalTable, type EvalRow } from './report.ts';
import { exportMetadata, saveWeights } from '../io/weights.ts';
import { writeSafetensors, type SafeTensor } from '../io/safetensors.ts';
import { readRunLog } from '../odc/run-log.ts';
import { gatherRows } from '../ops/rows.ts';

/** A progress line of the evaluation, with the seconds since it started (eval runs for minutes). */
function progressLine(start: number): (text: string) => void {
  return (text) => console.log(`  [${((performance.now() - start) / 1000).toFixed(0).padStart(4)} s] ${text}`);
}

/** The kNN search's progress as lines (a few per search: it is one long GPU stage on large sets). */
function knnProgress(say: (text: string) => void): (rowsDone: number, rows: number) => void {
  return (rowsDone, rows) => say(`kNN: ${rowsDone}/${rows} test images searched`);
}

function backboneFeatures(model: OdcModel, ds: ImageSource, config: TrainConfig): Tensor<'f32'> {
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  try {
    return extractFeatures(
      model,
      (x) => model.backbone.forward(x),
      augmenter,
      model.backbone.featureDim,
      config.optim.batchSize,
    );
  } finally {
    augmenter.dispose();
  }
}

export interface EvaluateOptions {
  runDir: string;
  baseline: boolean;
  probeEpochs: number;
  out?: string;
}

async function evaluateModel(
  model: OdcModel,
  splits: EvaluationSplits,
  config: TrainConfig,
  probeEpochs: number,
  numClasses: number,
  say: (text: string) => void,
): Promise<Record<string, number>> {
  say(`features of the ${splits.train.n} train and ${splits.test.n} test images`);
  const train = backboneFeatures(model, splits.train, config);
  const test = backboneFeatures(model, splits.test, config);
  try {
    const trainLabels = splits.train.labels!;
    const testLabels = splits.test.labels!;
    await gpu().sync(); // the features are done here, so the lines' times tell the two stages apart
    say(`kNN (k 20, cosine) of the ${splits.test.n} test images against the ${splits.train.n} train images`);
    const knn = await knnAccuracy(train, trainLabels, test, testLabels, {
      numClasses,
      k: 20,
      temperature: 0.07,
      onProgress: knnProgress(say),
    });
    say(`kNN top-1 ${(100 * knn.top1).toFixed(2)}%; linear probe, ${probeEpochs} epochs`);
    const every = Math.max(1, Math.round(probeEpochs / 5));
    const probe = await linearProbe(train, trainLabels, test, testLabels, {
      onEpoch: (epoch, loss) => {
        if ((epoch + 1) % every === 0 || epoch + 1 === probeEpochs)
          say(`linear probe epoch ${epoch + 1}/${probeEpochs}: loss ${loss.toFixed(4)}`);
      },
      numClasses,
      epochs: probeEpochs,
      lr: 0.1,
      batchSize: 256,
      weightDecay: 5e-4,
      seed: config.seed,
    });
    say(`linear probe ${(100 * probe.testAccuracy).toFixed(2)}%; k-means with ${numClasses} clusters`);
    const clusters = await kmeansLabels(train, numClasses, { iterations: 20, seed: config.seed });
    return {
      'kNN top-1': knn.top1,
      'linear probe': probe.testAccuracy,
      'k-means NMI': nmi(clusters, trainLabels),
      'k-means ARI': ari(clusters, trainLabels),
      'k-means ACC': clusteringAccuracy(clusters, trainLabels),
    };
  } finally {
    train.dispose();
    test.dispose();
  }
}

/** Evaluates the run in `runDir` (and the random-init backbone) and prints a table. */
export async function evaluateRun(opts: EvaluateOptions): Promise<EvalRow[]> {
  const say = progressLine(performance.now());
  const ckpt = await loadCheckpoint(opts.runDir);
  const config = ckpt.meta.config;
  const training = await loadTrainingData(config);
  checkDataSize(ckpt, training.n, opts.runDir);
  if (!training.labels || training.numClasses === null) return evaluateUnlabelled(opts, ckpt, config, training, say);
  const numClasses = training.numClasses;
  const splits = await evaluationSplits(config, training);
  console.log(
    `evaluating ${opts.runDir}: ${splits.train.n} train / ${splits.test.n} test images (${splits.testSource}), ${numClasses} classes`,
  );
  const rows: EvalRow[] = [];
  const trained = buildModel(config, training.channels, new Rng(config.seed));
  try {
    const memory = ckpt.restore(trained, null);
    say(`trained network (epoch ${ckpt.meta.position.epoch})`);
    const values = await evaluateModel(trained, splits, config, opts.probeEpochs, numClasses, say);
    if (memory) {
      const labels = await memory.labels.data();
      memory.dispose();
      values['memory NMI'] = nmi(labels, training.labels);
      values['memory ARI'] = ari(labels, training.labels);
      values['memory ACC'] = clusteringAccuracy(labels, training.labels);
    }
    rows.push({ name: `${config.mode} (epoch ${ckpt.meta.position.epoch})`, values });
  } finally {
    trained.dispose();
  }
  if (opts.baseline) {
    const random = buildModel(config, training.channels, new Rng(config.seed));
    try {
      say('random-init network (the baseline)');
      rows.push({
        name: 'random init',
        values: await evaluateModel(random, splits, config, opts.probeEpochs, numClasses, say),
      });
    } finally {
      random.dispose();
    }
  }
  finishEvaluation(opts, { run: opts.runDir, config, test: splits.testSource, rows });
  return rows;
}

/** Prints the table and writes eval.json into the run folder (and to --out when given). */
function finishEvaluation(
  opts: EvaluateOptions,
  result: { run: string; config: TrainConfig; test: string; rows: EvalRow[] },
): void {
  console.log(formatEvalTable(result.rows));
  const text = JSON.stringify(result, null, 2) + '\n';
  const inRun = join(opts.runDir, 'eval.json');
  writeFileSync(inRun, text);
  if (opts.out && resolve(opts.out) !== resolve(inRun)) writeFileSync(opts.out, text);
  console.log(`wrote ${inRun}${opts.out && resolve(opts.out) !== resolve(inRun) ? ` and ${opts.out}` : ''}`);
}

/** Normalised entropy of the cluster sizes: 1 when all clusters are equal, towards 0 as one cluster takes all. */
export function sizeBalance(sizes: ArrayLike<number>): number {
  let total = 0;
  for (let c = 0; c < sizes.length; c++) total += sizes[c];
  if (total === 0 || sizes.length < 2) return 1;
  let h = 0;
  for (let c = 0; c < sizes.length; c++) if (sizes[c] > 0) h -= (sizes[c] / total) * Math.log(sizes[c] / total);
  return h / Math.log(sizes.length);
}

/**
 * Weighted kNN (k 20, T 0.07) of the backbone features of a seeded 20% hold-out against the other 80%,
 * voting with the cluster labels: how well the features' neighbourhoods agree with the clusters.
 */
async function knnAgreement(
  model: OdcModel,
  ds: ImageSource,
  config: TrainConfig,
  labels: Uint32Array,
  k: number,
  say: (text: string) => void,
): Promise<number> {
  const order = new Rng(config.seed + 11).shuffle(Array.from({ length: ds.n }, (_, i) => i));
  const cut = Math.floor(ds.n * 0.8);
  const trainRows = Uint32Array.from(order.slice(0, cut));
  const testRows = Uint32Array.from(order.slice(cut));
  const all = backboneFeatures(model, ds, config);
  try {
    const trainIndex = Tensor.from(trainRows, [trainRows.length], 'u32');
    const testIndex = Tensor.from(testRows, [testRows.length], 'u32');
    const train = gatherRows(all, trainIndex);
    const test = gatherRows(all, testIndex);
    try {
      const of = (idx: Uint32Array) => Int32Array.from(idx, (i) => labels[i]);
      const options = { numClasses: k, k: 20, temperature: 0.07, onProgress: knnProgress(say) };
      return (await knnAccuracy(train, of(trainRows), test, of(testRows), options)).top1;
    } finally {
      for (const t of [train, test, trainIndex, testIndex]) t.dispose();
    }
  } finally {
    all.dispose();
  }
}

/** `odc eval` on data without labels: cluster sizes and balance, label churn, kNN agreement with the clusters. */
async function evaluateUnlabelled(
  opts: EvaluateOptions,
  ckpt: Awaited<ReturnType<typeof loadCheckpoint>>,
  config: TrainConfig,
  training: ImageSource,
  say: (text: string) => void,
): Promise<EvalRow[]> {
  console.log(
    `evaluating ${opts.runDir}: ${training.n} images without labels: cluster sizes, label churn, kNN agreement of the features with the clusters (20% hold-out)`,
  );
  const k = config.odc.k;
  const rows: EvalRow[] = [];
  const trained = buildModel(config, training.channels, new Rng(config.seed));
  let labels: Uint32Array | null;
  try {
    const memory = ckpt.restore(trained, null);
    labels = memory ? await memory.labels.data() : ckpt.pseudoLabels;
    memory?.dispose();
    if (!labels)
      throw new Error(
        `${opts.runDir}: the checkpoint holds no cluster labels yet (a DeepCluster run before its first epoch): train at least one epoch`,
      );
    const sizes = labelHistogram(labels, k);
    const churn = readRunLog(opts.runDir).epochs.at(-1)?.labelChurnNmi;
    say('kNN agreement of the trained features with the clusters');
    rows.push({
      name: `${config.mode} (epoch ${ckpt.meta.position.epoch})`,
      values: {
        'non-empty clusters': sizes.filter((s) => s > 0).length,
        'smallest cluster': Math.min(...sizes),
        'largest cluster': Math.max(...sizes),
        'size balance': sizeBalance(sizes),
        'label churn NMI': churn ?? null,
        'kNN agreement': await knnAgreement(trained, training, config, labels, k, say),
      },
    });
  } finally {
    trained.dispose();
  }
  if (opts.baseline) {
    const random = buildModel(config, training.channels, new Rng(config.seed));
    try {
      say('kNN agreement of the random-init features with the same clusters (the baseline)');
      rows.push({
        name: 'random init',
        values: { 'kNN agreement': await knnAgreement(random, training, config, labels, k, say) },
      });
    } finally {
      random.dispose();
    }
  }
  finishEvaluation(opts, {
    run: opts.runDir,
    config,
    test: `20% hold-out of ${training.name} (labels: the clusters)`,
    rows,
  });
  return rows;
}

/** Writes backbone (or backbone + neck) features of a split to a safetensors file. */
export async function extractToFile(opts: {
  runDir: string;
  out: string;
  split: 'train' | 'test';
  layer: 'backbone' | 'neck';
}): Promise<void> {
  const ckpt = await loadCheckpoint(opts.runDir);
  const config = ckpt.meta.config;
  const ds = opts.split === 'train' ? await loadTrainingData(config) : await loadSource(config, 'test');
  if (opts.split === 'train') checkDataSize(ckpt, ds.n, opts.runDir);
  const model = buildModel(config, ds.channels, new Rng(config.seed));
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  try {
    ckpt.restore(model, null)?.dispose();
    const dim = opts.layer === 'neck' && model.neck ? config.model.featureDim : model.backbone.featureDim;
    const f = extractFeatures(
      model,
      opts.layer === 'neck' ? (x) => model.features(x) : (x) => model.backbone.forward(x),
      augmenter,
      dim,
      config.optim.batchSize,
    );
    const tensors: Record<string, SafeTensor> = {
      features: { dtype: 'F32', shape: [ds.n, dim], data: await f.data() },
    };
    f.dispose();
    if (ds.labels) tensors.labels = { dtype: 'I32', shape: [ds.n], data: ds.labels };
    await writeSafetensors(opts.out, tensors, {
      run: opts.runDir,
      split: opts.split,
      layer: opts.layer,
      dataset: ds.name,
    });
    console.log(`wrote ${opts.out}: features [${ds.n}, ${dim}]${ds.labels ? ' and labels' : ''}`);
  } finally {
    augmenter.dispose();
    model.dispose();
  }
}

/**
 * Writes the trained backbone as safetensors with PyTorch names (torchvision's for the ResNets) and
 * layouts: conv weights OIHW, BN weight/bias/running_mean/running_var, num_batches_tracked (int64).
 */
export async function exportBackbone(opts: { runDir: string; out: string }): Promise<void> {
  const ckpt = await loadCheckpoint(opts.runDir);
  const config = ckpt.meta.config;
  const model = buildModel(config, ckpt.meta.inChannels, new Rng(config.seed));
  try {
    ckpt.restore(model, null)?.dispose();
    const { backbone, stem } = config.model;
    const count = await saveWeights(
      model,
      opts.out,
      exportMetadata(backbone, stem, ckpt.meta.inChannels),
      ckpt.meta.position.iteration,
    );
    console.log(`wrote ${opts.out}: ${count} tensors of the ${backbone} backbone (PyTorch names, OIHW conv weights)`);
  } finally {
    model.dispose();
  }
}
