/**
 * CIFAR-10 / CIFAR-100 in their binary versions. A file is a sequence of records:
 *   CIFAR-10:  1 label byte (0..9), then 3072 bytes = 1024 red, 1024 green, 1024 blue (32x32, row-major);
 *   CIFAR-100: 1 coarse label byte (0..19), 1 fine label byte (0..99), then the same 3072 bytes.
 * Train: cifar-10-batches-bin/data_batch_{1..5}.bin (10,000 records each) and test_batch.bin;
 * cifar-100-binary/train.bin (50,000) and test.bin (10,000). Images are converted to HWC.
 */
import { join } from 'node:path';
import { checkDataset, checkLabels, type ImageDataset } from './dataset.ts';
import { checkFolder, readRegularFile } from './files.ts';

const SIDE = 32;
const PIXELS = SIDE * SIDE;
const IMAGE = PIXELS * 3;

export type CifarKind = 'cifar10' | 'cifar100-fine' | 'cifar100-coarse';

const HOW =
  'Get the binary version of CIFAR-10 (cifar-10-binary.tar.gz) or CIFAR-100 (cifar-100-binary.tar.gz) from ' +
  "the CIFAR page of the University of Toronto (Krizhevsky's datasets) and unpack it; pass the unpacked folder.";

/** Reads CIFAR binary files of one kind into one data set (files in the given order). */
export function loadCifarFiles(files: readonly string[], kind: CifarKind, name: string = kind): ImageDataset {
  const labelBytes = kind === 'cifar10' ? 1 : 2;
  const record = labelBytes + IMAGE;
  const numClasses = kind === 'cifar10' ? 10 : kind === 'cifar100-fine' ? 100 : 20;
  const labelAt = kind === 'cifar100-fine' ? 1 : 0;
  const contents: Uint8Array[] = [];
  let n = 0;
  for (const file of files) {
    const bytes = readRegularFile(file, `${kind === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} batch file`, HOW);
    if (bytes.length === 0)
      throw new Error(
        `${file}: the file is empty (0 bytes): no images; replace it with the file from the CIFAR archive`,
      );
    if (bytes.length % record !== 0) {
      throw new Error(
        `${file}: size ${bytes.length} bytes is not a multiple of the ${kind === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} record size ` +
          `${record} (${labelBytes} label byte${labelBytes > 1 ? 's' : ''} + 3072 pixels): truncated, or not a ${kind === 'cifar10' ? 'CIFAR-10' : 'CIFAR-100'} binary file`,
      );
    }
    contents.push(bytes);
    n += bytes.length / record;
  }
  const images = new Uint8Array(n * IMAGE);
  const labels = new Int32Array(n);
  let i = 0;
  files.forEach((file, f) => {
    const bytes = contents[f];
    const records = bytes.length / record;
    // labels of this file, checked before its pixels are copied: the error names the file and the record
    const fileLabels = Int32Array.from({ length: records }, (_, r) => bytes[r * record + labelAt]);
    checkLabels(fileLabels, numClasses, file, 'record');
    if (labelBytes === 2)
      checkLabels(
        Int32Array.from({ length: records }, (_, r) => bytes[r * record]),
        20,
        `${file} (coarse labels)`,
        'record',
      );
    labels.set(fileLabels, i);
    for (let r = 0; r < records; r++, i++) {
      const base = r * record;
      const src = base + labelBytes;
      const dst = i * IMAGE;
      for (let p = 0; p < PIXELS; p++) {
        images[dst + 3 * p] = bytes[src + p];
        images[dst + 3 * p + 1] = bytes[src + PIXELS + p];
        images[dst + 3 * p + 2] = bytes[src + 2 * PIXELS + p];
      }
    }
  });
  return checkDataset({ name, n, height: SIDE, width: SIDE, channels: 3, images, labels, numClasses });
}

/** CIFAR-10 from the cifar-10-batches-bin folder: train = data_batch_1..5 (50,000), test = test_batch (10,000). */
export function loadCifar10(dir: string, split: 'train' | 'test' = 'train'): ImageDataset {
  checkFolder(dir, 'CIFAR-10 folder', { allowMissing: true }); // a missing folder is reported by its missing files
  const files =
    split === 'train' ? [1, 2, 3, 4, 5].map((k) => join(dir, `data_batch_${k}.bin`)) : [join(dir, 'test_batch.bin')];
  return loadCifarFiles(files, 'cifar10', `cifar10-${split}`);
}

/** CIFAR-100 from the cifar-100-binary folder (train.bin / test.bin); fine (100) or coarse (20) labels. */
export function loadCifar100(
  dir: string,
  split: 'train' | 'test' = 'train',
  labels: 'fine' | 'coarse' = 'fine',
): ImageDataset {
  checkFolder(dir, 'CIFAR-100 folder', { allowMissing: true });
  return loadCifarFiles(
    [join(dir, `${split}.bin`)],
    labels === 'fine' ? 'cifar100-fine' : 'cifar100-coarse',
    `cifar100-${split}`,
  );
}
