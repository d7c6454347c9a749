/**
 * `odc eval`, `odc extract` and `odc export`: evaluation of a training run's frozen backbone, feature
 * files, and the backbone in safetensors with PyTorch names and layouts.
 *
 * Evaluation (on backbone features, eval mode): weighted kNN (k 20, cosine, T 0.07), a linear probe
 * trained on the GPU, NMI / ARI / clustering accuracy of k-means with the true number of classes, and of
 * the ODC memory labels; the same for the random-init backbone of the same seed, so the gain is visible.
 * Test split: the data set's own when it has one, else a seeded 20% hold-out of the training images.
 * Every command reads the checkpoint through loadCheckpoint (checksums, then meaning) and refuses training
 * data whose size no longer matches it.
 */
import { writeFileSync } from 'node:fs';
import type { Tensor } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';
import { GpuAugmenter } from '../data/augment.ts';
import type { ImageDataset } from '../data/dataset.ts';
import { augmentConfig, evaluationSplits, loadSource, loadTrainingData, type EvaluationSplits } from '../data/training-data.ts';
import { buildModel } from '../odc/build.ts';
import { checkDataSize, loadCheckpoint } from '../odc/checkpoint.ts';
import { extractFeatures } from '../odc/extract.ts';
import { kmeansLabels } from '../odc/kmeans.ts';
import type { OdcModel } from '../models/odc-model.ts';
import type { TrainConfig } from '../odc/config.ts';
import { knnAccuracy } from './knn.ts';
import { linearProbe } from './linear-probe.ts';
import { ari, clusteringAccuracy } from '../metrics/metrics.ts';
import { nmi } from '../metrics/nmi.ts';
import { formatEvalTable, type EvalRow } from './report.ts';
import { toOIHW, writeSafetensors, type SafeTensor } from '../io/safetensors.ts';

function backboneFeatures(model: OdcModel, ds: ImageDataset, config: TrainConfig): Tensor<'f32'> {
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  try {
    return extractFeatures(model, (x) => model.backbone.forward(x), augmenter, model.backbone.featureDim, config.optim.batchSize);
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

async function evaluateModel(model: OdcModel, splits: EvaluationSplits, config: TrainConfig, probeEpochs: number, numClasses: number): Promise<Record<string, number>> {
  const train = backboneFeatures(model, splits.train, config);
  const test = backboneFeatures(model, splits.test, config);
  try {
    const trainLabels = splits.train.labels!;
    const testLabels = splits.test.labels!;
    const knn = await knnAccuracy(train, trainLabels, test, testLabels, { numClasses, k: 20, temperature: 0.07 });
    const probe = await linearProbe(train, trainLabels, test, testLabels, {
      numClasses,
      epochs: probeEpochs,
      lr: 0.1,
      batchSize: 256,
      weightDecay: 5e-4,
      seed: config.seed,
    });
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
  const ckpt = await loadCheckpoint(opts.runDir);
  const config = ckpt.meta.config;
  const training = await loadTrainingData(config);
  checkDataSize(ckpt, training.n, opts.runDir);
  if (!training.labels || training.numClasses === null) throw new Error(`odc eval needs labels for evaluation; data set ${training.name} has none`);
  const numClasses = training.numClasses;
  const splits = await evaluationSplits(config, training);
  console.log(`evaluating ${opts.runDir}: ${splits.train.n} train / ${splits.test.n} test images (${splits.testSource}), ${numClasses} classes`);
  const rows: EvalRow[] = [];
  const trained = buildModel(config, training.channels, new Rng(config.seed));
  try {
    const memory = ckpt.restore(trained, null);
    const values = await evaluateModel(trained, splits, config, opts.probeEpochs, numClasses);
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
      rows.push({ name: 'random init', values: await evaluateModel(random, splits, config, opts.probeEpochs, numClasses) });
    } finally {
      random.dispose();
    }
  }
  console.log(formatEvalTable(rows));
  if (opts.out) writeFileSync(opts.out, JSON.stringify({ run: opts.runDir, config, test: splits.testSource, rows }, null, 2) + '\n');
  return rows;
}

/** Writes backbone (or backbone + neck) features of a split to a safetensors file. */
export async function extractToFile(opts: { runDir: string; out: string; split: 'train' | 'test'; layer: 'backbone' | 'neck' }): Promise<void> {
  const ckpt = await loadCheckpoint(opts.runDir);
  const config = ckpt.meta.config;
  const ds = opts.split === 'train' ? await loadTrainingData(config) : await loadSource(config, 'test');
  if (opts.split === 'train') checkDataSize(ckpt, ds.n, opts.runDir);
  const model = buildModel(config, ds.channels, new Rng(config.seed));
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  try {
    ckpt.restore(model, null)?.dispose();
    const dim = opts.layer === 'neck' && model.neck ? config.model.featureDim : model.backbone.featureDim;
    const f = extractFeatures(model, opts.layer === 'neck' ? (x) => model.features(x) : (x) => model.backbone.forward(x), augmenter, dim, config.optim.batchSize);
    const tensors: Record<string, SafeTensor> = { features: { dtype: 'F32', shape: [ds.n, dim], data: await f.data() } };
    f.dispose();
    if (ds.labels) tensors.labels = { dtype: 'I32', shape: [ds.n], data: ds.labels };
    await writeSafetensors(opts.out, tensors, { run: opts.runDir, split: opts.split, layer: opts.layer, dataset: ds.name });
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
    const tensors: Record<string, SafeTensor> = {};
    for (const [name, p] of model.backbone.namedParameters()) {
      const data = await p.data();
      const converted = p.rank === 4 ? toOIHW(data, p.shape) : { data, shape: [...p.shape] };
      tensors[name] = { dtype: 'F32', shape: converted.shape, data: converted.data };
    }
    for (const [name, b] of model.backbone.namedBuffers()) {
      tensors[name] = { dtype: 'F32', shape: [...b.shape], data: await b.data() };
      if (name.endsWith('running_var')) {
        const tracked = name.replace(/running_var$/, 'num_batches_tracked');
        tensors[tracked] = { dtype: 'I64', shape: [], data: BigInt64Array.of(BigInt(ckpt.meta.position.iteration)) };
      }
    }
    await writeSafetensors(opts.out, tensors, { format: 'pt', backbone: config.model.backbone, stem: config.model.stem, source: 'odc-webgpu' });
    console.log(`wrote ${opts.out}: ${Object.keys(tensors).length} tensors of the ${config.model.backbone} backbone (PyTorch names, OIHW conv weights)`);
  } finally {
    model.dispose();
  }
}
