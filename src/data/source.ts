/**
 * Random-access image sources: what the trainer, evaluation and feature extraction read images through.
 * A source answers `read(indices)` with those images' bytes (HWC per image, 0..255, one fixed size) in
 * the order asked. Two implementations: an in-memory data set (`memorySource`, every loader's
 * ImageDataset; its `resident` bytes let the GPU augmenter upload them once, as before sources existed)
 * and a packed file read by offset (src/data/pack.ts, for sets that do not fit in memory).
 */
import { imageBytes, imageId, type ImageDataset } from './dataset.ts';

/** Everything about a data set but its pixels. */
export type ImageInfo = Omit<ImageDataset, 'images'>;

export interface ImageSource extends ImageInfo {
  /** Copies the images at `indices` (each in 0..n-1), in that order, into `out` (indices.length * imageBytes bytes). */
  read(indices: ArrayLike<number>, out: Uint8Array): void;
  /** `read` without blocking the thread (file sources read in the background; memory sources copy at once). */
  readAsync(indices: ArrayLike<number>, out: Uint8Array): Promise<void>;
  /** All n images in one array when the source holds them in memory, else null (the images stream). */
  readonly resident: Uint8Array | null;
  /** Releases what the source holds open (a file); reads after it fail. */
  close(): void;
}

/** True for a source, false for a plain in-memory data set. */
export function isImageSource(x: ImageDataset | ImageSource): x is ImageSource {
  return typeof (x as Partial<ImageSource>).read === 'function';
}

/** Throws a RangeError naming the source unless every index is a whole number in 0..n-1 and `out` fits them. */
export function checkRead(src: ImageInfo, indices: ArrayLike<number>, out: Uint8Array): void {
  const need = indices.length * imageBytes(src);
  if (out.length < need)
    throw new RangeError(
      `data set "${src.name}": a buffer of ${out.length} bytes for ${indices.length} images of ${imageBytes(src)} bytes`,
    );
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    if (!(Number.isInteger(k) && k >= 0 && k < src.n))
      throw new RangeError(`data set "${src.name}": index ${k} at position ${i} is outside its ${src.n} images`);
  }
}

/** The in-memory data set as a source (reads copy from its one array). */
export function memorySource(ds: ImageDataset): ImageSource {
  const per = imageBytes(ds);
  const read = (indices: ArrayLike<number>, out: Uint8Array): void => {
    checkRead(ds, indices, out);
    for (let i = 0; i < indices.length; i++)
      out.set(ds.images.subarray(indices[i] * per, (indices[i] + 1) * per), i * per);
  };
  const { images, ...info } = ds;
  return {
    ...info,
    resident: images,
    read,
    readAsync: async (indices, out) => read(indices, out),
    close: () => {},
  };
}

/** `x` as a source: a source as it is, a data set through memorySource. */
export function asSource(x: ImageDataset | ImageSource): ImageSource {
  return isImageSource(x) ? x : memorySource(x);
}

/** A new array with the images at `indices` (tests, small reads). */
export function readImages(src: ImageSource, indices: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(indices.length * imageBytes(src));
  src.read(indices, out);
  return out;
}

/**
 * The images at `rows` of a source as a source of rows.length images (labels follow). Reads map through
 * `rows`; nothing is copied but the labels. Closing the view closes nothing (the parent owns its file).
 */
export function subsetSource(
  src: ImageSource,
  rows: readonly number[],
  name = `${src.name}[${rows.length} of ${src.n}]`,
): ImageSource {
  const map = Uint32Array.from(rows);
  for (let i = 0; i < map.length; i++)
    if (!(rows[i] >= 0 && rows[i] < src.n))
      throw new RangeError(`subsetSource: row ${rows[i]} is outside data set "${src.name}" of ${src.n} images`);
  const info: ImageInfo = {
    ...infoOf(src),
    name,
    n: map.length,
    labels: src.labels ? Int32Array.from(map, (i) => src.labels![i]) : null,
    ids: rows.map((i) => imageId(src, i)),
  };
  const mapped = (indices: ArrayLike<number>, out: Uint8Array): Uint32Array => {
    checkRead(info, indices, out);
    return Uint32Array.from({ length: indices.length }, (_, i) => map[indices[i]]);
  };
  return {
    ...info,
    resident: null,
    read: (indices, out) => src.read(mapped(indices, out), out),
    readAsync: (indices, out) => src.readAsync(mapped(indices, out), out),
    close: () => {},
  };
}

/** The metadata of a source or data set (a copy without pixels or methods). */
export function infoOf(x: ImageInfo): ImageInfo {
  const info: ImageInfo = {
    name: x.name,
    n: x.n,
    height: x.height,
    width: x.width,
    channels: x.channels,
    labels: x.labels,
    numClasses: x.numClasses,
  };
  return x.ids ? { ...info, ids: x.ids } : info;
}
