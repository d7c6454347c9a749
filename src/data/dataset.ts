/**
 * Image data sets in memory: the type every loader returns and the checks every loader applies. The
 * registry that maps a spec string to a loader is src/data/registry.ts (it imports the loaders, which
 * import this file: keeping the two apart keeps the import graph free of circles).
 *
 * Every data set holds all its images as one Uint8Array: n images of one size, HWC per image (row-major,
 * channels interleaved), values 0..255. Labels are kept only for evaluation (ODC never trains on them).
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
  /**
   * An identifier per image (the file path for image folders); absent where the index into the source
   * is the identifier. Read it through `imageId`.
   */
  ids?: readonly string[];
}

/** The identifier of image i: its file path for folders, else its index in the source. */
export function imageId(ds: Pick<ImageDataset, 'ids'>, i: number): string {
  return ds.ids ? ds.ids[i] : String(i);
}

/** Bytes of one image. */
export function imageBytes(ds: Pick<ImageDataset, 'height' | 'width' | 'channels'>): number {
  return ds.height * ds.width * ds.channels;
}

/** Throws a clear error unless the fields of `ds` agree with each other. Returns ds. */
export function checkDataset(ds: ImageDataset): ImageDataset {
  const what = `data set "${ds.name}"`;
  for (const [k, v] of [
    ['n', ds.n],
    ['height', ds.height],
    ['width', ds.width],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new RangeError(`${what}: ${k} = ${v} is not a non-negative integer`);
  }
  if (ds.channels !== 1 && ds.channels !== 3)
    throw new RangeError(`${what}: channels must be 1 or 3, got ${String(ds.channels)}`);
  const want = ds.n * imageBytes(ds);
  if (ds.images.length !== want) {
    throw new RangeError(
      `${what}: ${ds.images.length} image bytes, expected n*h*w*c = ${ds.n}*${ds.height}*${ds.width}*${ds.channels} = ${want}`,
    );
  }
  if (ds.labels) {
    if (ds.labels.length !== ds.n) throw new RangeError(`${what}: ${ds.labels.length} labels for ${ds.n} images`);
    const k = ds.numClasses;
    if (k === null) throw new RangeError(`${what}: has labels but numClasses is null`);
    checkLabels(ds.labels, k, what, 'image');
  }
  if (ds.ids && ds.ids.length !== ds.n)
    throw new RangeError(`${what}: ${ds.ids.length} image identifiers for ${ds.n} images`);
  return ds;
}

/**
 * The one label check of every source: each label must be a whole number in 0..numClasses-1. `source`
 * names the file (or data set) in the error, `unit` what a label belongs to ("image", "record").
 */
export function checkLabels(labels: ArrayLike<number>, numClasses: number, source: string, unit: string): void {
  if (!Number.isInteger(numClasses) || numClasses < 1)
    throw new RangeError(`${source}: the number of classes must be a positive integer, got ${numClasses}`);
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
    ...(ds.ids ? { ids: ds.ids.slice(0, n) } : {}),
  };
}
