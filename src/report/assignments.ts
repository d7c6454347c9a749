/**
 * A trained run's clusters, and `odc clusters` / `odc assign`: which image went to which cluster.
 *
 * The cluster space of a run: ODC's memory features (unit rows of the neck's output) and memory labels;
 * for DeepCluster, which keeps no memory, the L2-normalised backbone features of the trained network (eval
 * mode) with the epoch's pseudo-labels. Centroids are the normalised means of each cluster's members.
 * Both commands stream their rows to the file (CSV or, for a .jsonl name, JSON lines) in chunks.
 */
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { Rng } from '../util/rng.ts';
import { GpuAugmenter } from '../data/augment.ts';
import { imageId, type ImageDataset } from '../data/dataset.ts';
import type { ImageSource } from '../data/source.ts';
import { loadDataset } from '../data/registry.ts';
import { augmentConfig, loadTrainingData } from '../data/training-data.ts';
import { buildModel } from '../odc/build.ts';
import { checkDataSize, loadCheckpoint, type LoadedCheckpoint } from '../odc/checkpoint.ts';
import type { TrainConfig } from '../config/settings.ts';
import { extractFeatures } from '../odc/extract.ts';
import type { OdcMemory } from '../odc/memory.ts';
import { forEachRowChunk } from '../odc/memory-shards.ts';
import type { OdcModel } from '../models/odc-model.ts';
import { labelHistogram } from '../metrics/metrics.ts';
import {
  addClusterSums,
  centroidsFromSums,
  similaritiesInto,
  type ClusterRanking,
  centroidSimilarities,
  clusterCentroids,
  nearestCentroids,
  ranksInClusters,
  unitRows,
  type ClusterSpace,
} from './clusters.ts';

/** Which network output a run's clusters live in: the neck (ODC's memory) or the backbone (DeepCluster). */
export type ClusterLayer = 'neck' | 'backbone';

/** Unit-row features of every image of `ds` from the trained network's `layer`, in eval mode. */
export async function layerFeatures(
  model: OdcModel,
  ds: ImageDataset | ImageSource,
  config: TrainConfig,
  layer: ClusterLayer,
): Promise<Float32Array> {
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  try {
    const neck = layer === 'neck';
    const dim = neck ? config.model.featureDim : model.backbone.featureDim;
    const f = extractFeatures(
      model,
      neck ? (x) => model.features(x) : (x) => model.backbone.forward(x),
      augmenter,
      dim,
      config.optim.batchSize,
    );
    try {
      return unitRows(await f.data(), dim);
    } finally {
      f.dispose();
    }
  } finally {
    augmenter.dispose();
  }
}

/**
 * The cluster space of a run's state: the ODC memory when there is one, else the DeepCluster pseudo-labels
 * on backbone features of `dataset`; null when neither exists yet (DeepCluster before its first epoch).
 */
export async function clusterSpaceOf(state: {
  memory: OdcMemory | null;
  pseudoLabels: Uint32Array | null;
  model: OdcModel;
  config: TrainConfig;
  dataset: ImageDataset | ImageSource;
}): Promise<{ space: ClusterSpace; layer: ClusterLayer } | null> {
  const { memory, pseudoLabels, model, config, dataset } = state;
  if (memory) {
    const space = {
      n: memory.n,
      dim: memory.dim,
      k: memory.k,
      features: await memory.featuresData(),
      labels: await memory.labels.data(),
    };
    return { space, layer: 'neck' };
  }
  if (!pseudoLabels) return null;
  const features = await layerFeatures(model, dataset, config, 'backbone');
  return {
    space: { n: dataset.n, dim: model.backbone.featureDim, k: config.odc.k, features, labels: pseudoLabels },
    layer: 'backbone',
  };
}

/**
 * The ranking (labels, each image's similarity to its centroid) of an ODC memory's clusters, as `clusterRanking`
 * of its host copy gives it, with the features read to the host in chunks of at most `chunkBytes` (twice: the
 * cluster sums, then the similarities), so the host never holds the N x D memory: what `train --report` reads at
 * every epoch end.
 */
export async function memoryRanking(memory: OdcMemory, chunkBytes = 16 * 2 ** 20): Promise<ClusterRanking> {
  const { n, k, dim } = memory;
  const labels = await memory.labels.data();
  const chunkRows = Math.max(1, Math.floor(chunkBytes / (4 * dim)));
  const sums = new Float64Array(k * dim);
  await forEachRowChunk(memory.featureShards, chunkRows, (rows, row0) => addClusterSums(sums, rows, labels, row0, dim));
  const centroids = centroidsFromSums(sums, dim);
  const similarity = new Float32Array(n);
  await forEachRowChunk(memory.featureShards, chunkRows, (rows, row0) =>
    similaritiesInto(similarity, rows, labels, row0, centroids, dim),
  );
  return { n, k, labels, similarity };
}

/** A run's trained network, its training data and its cluster space; `dispose` frees the GPU side. */
export interface OpenedRun {
  ckpt: LoadedCheckpoint;
  config: TrainConfig;
  dataset: ImageSource;
  model: OdcModel;
  clusters: { space: ClusterSpace; layer: ClusterLayer } | null;
  dispose(): void;
}

/** Loads the run in `runDir`: checkpoint, training data (checked against it), network and clusters. */
export async function openRun(runDir: string): Promise<OpenedRun> {
  const ckpt = await loadCheckpoint(runDir);
  const config = ckpt.meta.config;
  const dataset = await loadTrainingData(config);
  checkDataSize(ckpt, dataset.n, runDir);
  const model = buildModel(config, dataset.channels, new Rng(config.seed));
  try {
    const memory = ckpt.restore(model, null);
    try {
      const clusters = await clusterSpaceOf({ memory, pseudoLabels: ckpt.pseudoLabels, model, config, dataset });
      return { ckpt, config, dataset, model, clusters, dispose: () => model.dispose() };
    } finally {
      memory?.dispose();
    }
  } catch (err) {
    model.dispose();
    throw err;
  }
}

/** One row of `odc clusters` / `odc assign`. */
export interface AssignmentRow {
  id: string;
  label: number;
  similarity: number;
  rank: number;
}

const CSV_HEADER = 'id,label,similarity,rank\n';

/** A CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Writes rows to `path` as they come, 64 KiB at a time: CSV (id,label,similarity,rank) or JSON lines for a
 * name ending in .jsonl. The file appears complete or not at all (written beside it, then renamed).
 */
export function writeAssignments(path: string, count: number, rowAt: (i: number) => AssignmentRow): void {
  const jsonl = /\.jsonl$/i.test(path);
  const partial = `${path}.partial`;
  const fd = openSync(partial, 'w');
  try {
    let chunk = jsonl ? '' : CSV_HEADER;
    for (let i = 0; i < count; i++) {
      const r = rowAt(i);
      const similarity = Number(r.similarity.toFixed(6));
      chunk += jsonl
        ? `${JSON.stringify({ id: r.id, label: r.label, similarity, rank: r.rank })}\n`
        : `${csvField(r.id)},${r.label},${similarity},${r.rank}\n`;
      if (chunk.length >= 65536) {
        writeSync(fd, chunk);
        chunk = '';
      }
    }
    writeSync(fd, chunk);
    closeSync(fd);
    renameSync(partial, path);
  } catch (err) {
    closeSync(fd);
    rmSync(partial, { force: true });
    throw err;
  }
}

function requireClusters(run: OpenedRun, runDir: string): { space: ClusterSpace; layer: ClusterLayer } {
  if (!run.clusters)
    throw new Error(
      `${runDir}: the checkpoint holds no clusters yet (a DeepCluster run before its first epoch): train at least one epoch`,
    );
  return run.clusters;
}

/**
 * `odc clusters`: for every training image, its identifier, memory label, cosine similarity to its
 * cluster's centroid and rank in the cluster (1 = nearest the centroid). Returns the number of rows.
 */
export async function writeClusters(opts: { runDir: string; out: string }): Promise<number> {
  const run = await openRun(opts.runDir);
  try {
    const { space } = requireClusters(run, opts.runDir);
    const similarity = centroidSimilarities(space, clusterCentroids(space));
    const ranks = ranksInClusters(space.labels, similarity, space.k);
    writeAssignments(opts.out, space.n, (i) => ({
      id: imageId(run.dataset, i),
      label: space.labels[i],
      similarity: similarity[i],
      rank: ranks[i],
    }));
    return space.n;
  } finally {
    run.dispose();
  }
}

/**
 * `odc assign`: each image of the data spec `data` goes to the trained cluster whose centroid is nearest
 * its features (the trained network in eval mode, the layer the clusters live in). The images are brought
 * to the training images' size and channels. Same columns as `odc clusters`; the rank is among the new
 * images of that cluster. Returns the number of rows.
 */
export async function writeAssignment(opts: { runDir: string; data: string; out: string }): Promise<number> {
  const run = await openRun(opts.runDir);
  try {
    const { space, layer } = requireClusters(run, opts.runDir);
    const train = run.dataset;
    const ds = await loadDataset(opts.data, {
      size: train.height === train.width ? train.height : undefined,
      channels: train.channels,
    });
    if (ds.height !== train.height || ds.width !== train.width || ds.channels !== train.channels) {
      throw new Error(
        `${opts.data}: images are ${ds.width}x${ds.height}x${ds.channels}, the run trained on ${train.width}x${train.height}x${train.channels}: give images of that size`,
      );
    }
    const features = await layerFeatures(run.model, ds, run.config, layer);
    const { labels, similarity } = nearestCentroids(
      features,
      space.dim,
      clusterCentroids(space),
      labelHistogram(space.labels, space.k),
    );
    const ranks = ranksInClusters(labels, similarity, space.k);
    writeAssignments(opts.out, ds.n, (i) => ({
      id: imageId(ds, i),
      label: labels[i],
      similarity: similarity[i],
      rank: ranks[i],
    }));
    return ds.n;
  } finally {
    run.dispose();
  }
}
