/**
 * The data a report is built from, gathered from a run folder (log.jsonl, config.json, eval.json) and,
 * for the galleries and the heat map, the run's cluster space and training images; and `odc report` /
 * `odc train --report`, which write it as one HTML file (html.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import { basename, join, resolve } from 'node:path';
import { encodePng } from '../data/png.ts';
import { imageId, type ImageDataset } from '../data/dataset.ts';
import { asSource, readImages, type ImageSource } from '../data/source.ts';
import type { TrainConfig } from '../config/settings.ts';
import type { EvalRow } from '../eval/report.ts';
import { labelHistogram } from '../metrics/metrics.ts';
import {
  clusterRanking,
  clusterClasses,
  clusterClassMatrix,
  galleryClusters,
  membersByRank,
  type ClusterRanking,
  type ClusterSpace,
} from './clusters.ts';
import { readRunLog, type RunLog } from '../odc/run-log.ts';

/** Gallery images are shown at most this many pixels wide and high (larger ones are scaled down: the report stays small). */
const GALLERY_PIXELS = 64;

export interface GalleryImage {
  id: string;
  /** A data: URI of the PNG. */
  src: string;
  similarity: number;
}

export interface Gallery {
  cluster: number;
  size: number;
  /** The cluster's most frequent true class and its share, when the data have labels. */
  majority?: number;
  purity?: number;
  images: GalleryImage[];
}

export interface RunReport {
  /** The run folder's name (the curves' legend). */
  name: string;
  mode: string;
  /** One line: mode, backbone, K, data, epochs. */
  summary: string;
  epochsPlanned: number;
  log: RunLog;
  k: number;
  /** Cluster sizes now (the cluster space's labels), or null without one. */
  sizes: number[] | null;
  galleries: Gallery[];
  heat: { matrix: Uint32Array; numClasses: number; order: number[] } | null;
  eval: { rows: EvalRow[]; test?: string } | null;
}

export interface ReportOptions {
  /** Images per gallery (nearest the centroid first). */
  perCluster?: number;
  /** Galleries of the largest and of the smallest clusters, each. */
  extremes?: number;
  /** Galleries of other clusters, spread over the size order. */
  others?: number;
}

/** The run's config.json, or null (a compared folder may hold only its log). */
function readConfig(runDir: string): TrainConfig | null {
  const path = join(runDir, 'config.json');
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as TrainConfig;
  } catch {
    return null;
  }
}

/** eval.json of `odc eval`, when the run has one. */
function readEval(runDir: string): RunReport['eval'] {
  const path = join(runDir, 'eval.json');
  if (!existsSync(path)) return null;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { rows?: EvalRow[]; test?: string };
    return Array.isArray(parsed.rows) ? { rows: parsed.rows, test: parsed.test } : null;
  } catch {
    return null;
  }
}

/**
 * HWC pixels shrunk by a whole factor: each output pixel the mean of a factor x factor box (a thumbnail
 * without the aliasing of point sampling); edge pixels beyond a whole box are dropped.
 */
export function shrinkBox(
  pixels: Uint8Array,
  height: number,
  width: number,
  channels: number,
  factor: number,
): { data: Uint8Array; height: number; width: number } {
  const oh = Math.max(1, Math.floor(height / factor));
  const ow = Math.max(1, Math.floor(width / factor));
  const fy = Math.min(factor, height);
  const fx = Math.min(factor, width);
  const out = new Uint8Array(oh * ow * channels);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let dy = 0; dy < fy; dy++)
          for (let dx = 0; dx < fx; dx++) sum += pixels[((y * fy + dy) * width + x * fx + dx) * channels + c];
        out[(y * ow + x) * channels + c] = Math.round(sum / (fy * fx));
      }
    }
  }
  return { data: out, height: oh, width: ow };
}

/** Image i of ds as a PNG data URI, shrunk by a whole factor to GALLERY_PIXELS or fewer per side. */
export function imageDataUri(ds: ImageDataset | ImageSource, i: number): string {
  const factor = Math.ceil(Math.max(ds.width, ds.height) / GALLERY_PIXELS);
  const img = shrinkBox(readImages(asSource(ds), [i]), ds.height, ds.width, ds.channels, factor);
  const png = encodePng(img.width, img.height, img.data, { colorType: ds.channels === 1 ? 0 : 2 });
  return `data:image/png;base64,${Buffer.from(png).toString('base64')}`;
}

/**
 * The galleries: for the clusters `galleryClusters` picks, the `perCluster` members nearest the centroid,
 * with size, and majority class and purity when `ds` has labels.
 */
export function buildGalleries(
  clusters: ClusterSpace | ClusterRanking,
  ds: ImageDataset | ImageSource,
  opts: ReportOptions = {},
): Gallery[] {
  const perCluster = opts.perCluster ?? 12;
  const space = 'similarity' in clusters ? clusters : clusterRanking(clusters);
  const sizes = labelHistogram(space.labels, space.k);
  const similarity = space.similarity;
  const ranked = membersByRank(space.labels, similarity, space.k);
  const classes =
    ds.labels && ds.numClasses
      ? clusterClasses(clusterClassMatrix(space.labels, ds.labels, space.k, ds.numClasses), space.k, ds.numClasses)
      : null;
  return galleryClusters(sizes, opts.extremes ?? 4, opts.others ?? 16).map((c) => ({
    cluster: c,
    size: sizes[c],
    ...(classes ? { majority: classes.majority[c], purity: classes.purity[c] } : {}),
    images: [...ranked[c].subarray(0, perCluster)].map((i) => ({
      id: imageId(ds, i),
      src: imageDataUri(ds, i),
      similarity: similarity[i],
    })),
  }));
}

/**
 * The report data of the run in `runDir`. `clusters` (the cluster space and the training images) adds the
 * galleries and, with labels, the heat map; without it (a compared run) the report has the log's curves only.
 */
export function buildRunReport(
  runDir: string,
  clusters: { space: ClusterSpace | ClusterRanking; dataset: ImageDataset | ImageSource } | null,
  opts: ReportOptions = {},
): RunReport {
  const log = readRunLog(runDir);
  const config = readConfig(runDir);
  const mode = config?.mode ?? 'odc';
  const k = clusters?.space.k ?? config?.odc.k ?? 0;
  const epochsPlanned = config?.optim.epochs ?? log.epochs.length;
  const data = clusters ? clusters.dataset.name : (config?.data.source ?? '?');
  const summary = config
    ? `${mode === 'odc' ? 'ODC' : 'DeepCluster'}, ${config.model.backbone}, K = ${k}, ${data}, ${log.epochs.length} of ${epochsPlanned} epochs, batch ${config.optim.batchSize}, seed ${config.seed}`
    : `${log.epochs.length} epochs`;
  let heat: RunReport['heat'] = null;
  if (clusters && clusters.dataset.labels && clusters.dataset.numClasses) {
    const { space, dataset } = clusters;
    const matrix = clusterClassMatrix(space.labels, dataset.labels!, space.k, dataset.numClasses!);
    heat = {
      matrix,
      numClasses: dataset.numClasses!,
      order: clusterClasses(matrix, space.k, dataset.numClasses!).order,
    };
  }
  return {
    name: basename(resolve(runDir)),
    mode,
    summary,
    epochsPlanned,
    log,
    k,
    sizes: clusters
      ? Array.from(labelHistogram(clusters.space.labels, clusters.space.k))
      : (log.epochs.at(-1)?.sizes ?? null),
    galleries: clusters ? buildGalleries(clusters.space, clusters.dataset, opts) : [],
    heat,
    eval: readEval(runDir),
  };
}
