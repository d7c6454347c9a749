/**
 * The check of a data set against the run that will train on it, before any GPU work: enough images
 * for the clusters and for batch norm, and images large enough for the backbone. Each failure is one
 * error naming the data set, the problem and the setting that fixes it.
 */
import { minInputSize, downsamplingLayers } from '../models/backbones.ts';
import type { TrainConfig } from '../config/settings.ts';
import type { ImageInfo } from './source.ts';

/** The side of the square images the network sees: data.imageSize when set, else the data set's height. */
export function networkInputSize(config: TrainConfig, ds: Pick<ImageInfo, 'height'>): number {
  return config.data.imageSize > 0 ? config.data.imageSize : ds.height;
}

/** Throws one clear error when `ds` cannot be trained on with `config`; returns ds. */
export function checkTrainingData<T extends ImageInfo>(ds: T, config: TrainConfig): T {
  const what = `data set "${ds.name}"`;
  if (ds.n === 0) throw new Error(`${what} holds no images: point data.source/data.path (--data) at data with images`);
  if (config.optim.batchSize < 2) {
    throw new Error(
      `optim.batchSize = ${config.optim.batchSize}: batch norm in training needs at least 2 images per batch (as PyTorch's); use --batch-size 2 or more`,
    );
  }
  if (ds.n < 2)
    throw new Error(
      `${what} has ${ds.n} image: batch norm in training needs at least 2 images per batch; use a data set with more images`,
    );
  if (config.odc.k > ds.n) {
    throw new Error(
      `odc.k = ${config.odc.k} clusters need at least as many images, but ${what} has ${ds.n}: lower --k, or use more images (--limit, --data)`,
    );
  }
  const { k, minCluster } = config.odc;
  if (config.mode === 'odc' && k > 1 && minCluster * (k - 1) > ds.n) {
    // the memory's small-cluster handling must be able to fill every cluster but one to minCluster
    throw new Error(
      `odc.minCluster = ${minCluster} is too large for ${ds.n} images in odc.k = ${k} clusters (minCluster * (k - 1) = ${minCluster * (k - 1)} > ${ds.n}): ` +
        `lower --min-cluster to ${Math.max(1, Math.floor(ds.n / (k - 1)))} or less, lower --k, or use more images`,
    );
  }
  const { backbone, stem } = config.model;
  const size = networkInputSize(config, ds);
  const min = minInputSize(backbone, stem);
  if (size < min) {
    const pools = downsamplingLayers(backbone, stem).length;
    throw new Error(
      `${what}: the network would see ${size}x${size} images, below the ${min}x${min} minimum of backbone ${backbone} ` +
        `(its ${pools} downsampling layers need it): upscale them with --set data.imageSize=${min} (or more), or pick another backbone`,
    );
  }
  return ds;
}
