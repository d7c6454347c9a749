/**
 * The training data of a configuration: the configured source, the seeded subset data.limit keeps, the
 * train/test splits an evaluation uses, and the augmentation preset at the data set's resolution.
 * Training, evaluation and the benches all load through here, so they see the same images.
 */
import type { TrainConfig } from '../config/settings.ts';
import { cifarPreset, imagenetPreset, mnistPreset, type AugmentConfig } from './augment.ts';
import { imageId, type ImageDataset } from './dataset.ts';
import { openPack } from './pack.ts';
import { NoSplitError, loadDataset } from './registry.ts';
import { infoOf, memorySource, subsetSource, type ImageInfo, type ImageSource } from './source.ts';
import { Rng } from '../util/rng.ts';

/**
 * Loads the configured data set. With data.limit, a seeded random subset of that many images is kept
 * (in data-set order): some sources are sorted by class, so the first images would be one class.
 */
export async function loadTrainingData(config: TrainConfig, split: 'train' | 'test' = 'train'): Promise<ImageSource> {
  const ds = await loadSource(config, split);
  const picked = limitedRows(config, ds.n);
  if (!picked) return ds;
  const subset = subsetOf(ds, picked);
  return { ...subset, close: () => ds.close() }; // the subset owns the source it was cut from
}

/**
 * The whole configured source (no limit applied): a packed file (`pack:FILE`) is opened for reading by
 * offset; every other source is loaded into memory.
 */
export async function loadSource(config: TrainConfig, split: 'train' | 'test' = 'train'): Promise<ImageSource> {
  const { source, path, imageSize } = config.data;
  if (source === 'synthetic') throw new Error('data.source "synthetic" is only available to tests (pass a dataset)');
  if (source === 'pack') {
    if (!path) throw new Error('data source "pack" needs a file: --data pack:FILE.odcpack (made by `odc prepare`)');
    if (split !== 'train') throw new NoSplitError(`pack:${path}`, split);
    return openPack(path);
  }
  return memorySource(
    await loadDataset(path ? `${source}:${path}` : source, { split, size: imageSize > 0 ? imageSize : undefined }),
  );
}

/** The images at `rows` of a source: a copy for an in-memory one (as subsetDataset), a view for a streamed one. */
export function subsetOf(src: ImageSource, rows: readonly number[]): ImageSource {
  return src.resident
    ? memorySource(subsetDataset({ ...infoOf(src), images: src.resident }, rows))
    : subsetSource(src, rows);
}

/** The sorted rows of a source of n images that data.limit keeps, or null for all of them. */
export function limitedRows(config: TrainConfig, n: number): number[] | null {
  const limit = config.data.limit;
  if (!(limit > 0 && limit < n)) return null;
  return new Rng(config.seed + 5)
    .shuffle(Array.from({ length: n }, (_, i) => i))
    .slice(0, limit)
    .sort((a, b) => a - b);
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
    // a subset keeps each image's identifier in the source (its path, or its index there)
    ids: indices.map((i) => imageId(ds, i)),
  };
}

/** The images an evaluation fits on (train) and scores on (test), and where the test images came from. */
export interface EvaluationSplits {
  train: ImageSource;
  test: ImageSource;
  testSource: string;
}

/**
 * Train split = the training images. Test split = the source's own test split where it has one; else,
 * when training used a subset (data.limit), the source's images it did not use; else a seeded 20%
 * hold-out of the training images.
 */
export async function evaluationSplits(config: TrainConfig, training: ImageSource): Promise<EvaluationSplits> {
  try {
    const test = await loadSource(config, 'test');
    return { train: training, test, testSource: `${test.name} (test split)` };
  } catch (err) {
    if (!(err instanceof NoSplitError)) throw err;
  }
  const source = await loadSource(config);
  const used = limitedRows(config, source.n);
  if (used) {
    const inTraining = new Set(used);
    const unused = Array.from({ length: source.n }, (_, i) => i).filter((i) => !inTraining.has(i));
    return {
      train: training,
      test: subsetOf(source, unused),
      testSource: `the ${unused.length} images of ${source.name} not used in training`,
    };
  }
  const order = new Rng(config.seed + 11).shuffle(Array.from({ length: training.n }, (_, i) => i));
  const cut = Math.floor(training.n * 0.8);
  const trainRows = order.slice(0, cut).sort((a, b) => a - b);
  const testRows = order.slice(cut).sort((a, b) => a - b);
  return {
    train: subsetOf(training, trainRows),
    test: subsetOf(training, testRows),
    testSource: `20% hold-out of ${training.name}`,
  };
}

/** The augmentation of a preset at the data set's (or configured) resolution. */
export function augmentConfig(config: TrainConfig, ds: ImageInfo): AugmentConfig {
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
      return mnistPreset({
        ...out,
        evalResize: size,
        crop: { scale: [1, 1], ratio: [1, 1] },
        rotationDeg: 0,
        jitter: null,
        ...meanStd(ds),
      });
  }
}

function meanStd(ds: ImageInfo): Pick<AugmentConfig, 'mean' | 'std'> {
  return ds.channels === 1 ? { mean: [0.5], std: [0.5] } : { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };
}
