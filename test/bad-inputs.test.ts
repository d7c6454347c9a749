/**
 * The bad-input corpus: files the test writes itself (truncations, wrong magic numbers, huge headers,
 * decompression bombs, mismatched pairs, empty data, named pipes, devices, symlink loops, folder/file
 * mix-ups, unwritable output folders, images too small for the backbone, labels out of range). Each case
 * runs under a timeout and must end in its expected class: a clear error (an Error whose message names
 * the file or key and reads like a sentence, not a raw Node error) or a valid, accepted data set. Cases
 * that could block a read forever run in a child process; a few go through the CLI to check its exit
 * code and that no stack trace reaches the user.
 */
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { deflateSync, gzipSync } from 'node:zlib';
import { encode as encodeJpeg } from 'jpeg-js';
import { assert, setupGpu } from './helpers.ts';
import { syntheticDataset, tinyConfig } from './train-fixtures.ts';
import { checkDataset, type ImageDataset } from '../src/data/dataset.ts';
import { loadDataset } from '../src/data/registry.ts';
import { loadIdx } from '../src/data/idx.ts';
import { loadCifarFiles } from '../src/data/cifar.ts';
import { loadImageFolder } from '../src/data/image-folder.ts';
import { concatBytes, decodePng, encodePng, maxImagePixels, pngChunk } from '../src/data/png.ts';
import { ensureWritableFolder } from '../src/data/files.ts';
import { checkTrainingData } from '../src/data/preflight.ts';
import { batches, trainingBatchCount, trainingBatches } from '../src/data/sampler.ts';
import {
  downsamplingLayers,
  featureMapSide,
  minInputSize,
  type BackboneName,
  type Stem,
} from '../src/models/backbones.ts';
import type { TrainConfig } from '../src/config/settings.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const g = globalThis as { Deno?: unknown; Bun?: unknown };
const runtimeArgs = g.Deno ? ['run', '-A'] : g.Bun ? [] : ['--import', 'tsx'];
const isRoot = (process as { getuid?: () => number }).getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'odc-bad-inputs-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------------
// Fixture writers

function write(rel: string, data: Uint8Array | string): string {
  const path = join(dir, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, data);
  return path;
}

function folder(rel: string): string {
  const path = join(dir, rel);
  mkdirSync(path, { recursive: true });
  return path;
}

/** A named pipe (nothing ever writes to it: reading it would block forever). */
function fifo(rel: string): string {
  const path = join(dir, rel);
  mkdirSync(dirname(path), { recursive: true });
  const made = spawnSync('mkfifo', [path]);
  assert.equal(made.status, 0, `mkfifo ${path}: ${made.stderr}`);
  return path;
}

function bytes(seed: number, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17) & 0xff);
}

function idxFile(dims: number[], data: Uint8Array, type = 0x08, ndim = dims.length): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const v = new DataView(out.buffer);
  out[2] = type;
  out[3] = ndim;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** A gray 8-bit PNG whose IHDR declares width x height, with `idat` as its compressed data. */
function rawPng(width: number, height: number, idat: Uint8Array, firstChunk?: Uint8Array): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr[8] = 8;
  const sig = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return concatBytes([
    sig,
    ...(firstChunk ? [firstChunk] : []),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat),
    pngChunk('IEND', new Uint8Array(0)),
  ]);
}

function grayPng(side: number, seed = 1): Uint8Array {
  return encodePng(side, side, bytes(seed, side * side), { colorType: 0 });
}

function jpeg(side: number): Uint8Array {
  const rgba = new Uint8Array(side * side * 4).map((_, i) => (i % 4 === 3 ? 255 : (i * 7) & 0xff));
  return new Uint8Array(encodeJpeg({ width: side, height: side, data: rgba }, 90).data);
}

/** A folder holding one file (a flat image folder). */
function folderWith(rel: string, name: string, data: Uint8Array): string {
  write(`${rel}/${name}`, data);
  return join(dir, rel);
}

function cifarRecords(n: number, labelBytes: 1 | 2, label: (i: number) => number[]): Uint8Array {
  const rec = labelBytes + 3072;
  const out = bytes(9, n * rec);
  for (let i = 0; i < n; i++) label(i).forEach((l, j) => (out[i * rec + j] = l));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Outcome classes

/** Texts of raw runtime errors that must never reach the user as the whole story. */
const RAW_ERROR =
  /^E[A-Z]{2,}[:,]|\bE(ISDIR|NOENT|ACCES|LOOP|NOTDIR|PERM|ROFS)\b|illegal operation|no such file or directory,|Invalid typed array length|Cannot create a Buffer|Array buffer allocation failed|Maximum call stack|is not a function|Cannot read propert/;

type Expect = 'error' | 'valid' | 'error-or-valid';

interface Case {
  kind: string;
  name: string;
  expect: Expect;
  /** What the error message must name: the file, folder or key (defaults to nothing beyond a clear text). */
  names?: string;
  run: () => unknown;
  skip?: string;
}

const TIMEOUT_MS = 30_000;

/** null when the case ended in its expected class, else what went wrong. */
async function judge(c: Case): Promise<string | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((done) => (timer = setTimeout(() => done('timeout'), TIMEOUT_MS)));
  let result: { ok: true; value: unknown } | { ok: false; error: unknown };
  try {
    const settled = await Promise.race([
      Promise.resolve()
        .then(c.run)
        .then(
          (value) => ({ ok: true as const, value }),
          (error: unknown) => ({ ok: false as const, error }),
        ),
      timeout,
    ]);
    if (settled === 'timeout') return `no outcome within ${TIMEOUT_MS / 1000} s (a hang)`;
    result = settled;
  } finally {
    clearTimeout(timer);
  }
  if (result.ok) {
    if (c.expect === 'error') return 'accepted, expected a clear error';
    const ds = result.value as ImageDataset | undefined;
    if (ds && typeof ds === 'object' && 'images' in ds) {
      try {
        checkDataset(ds);
      } catch (err) {
        return `accepted an inconsistent data set: ${(err as Error).message}`;
      }
      if (ds.n < 1) return 'accepted a data set with no images';
    }
    return null;
  }
  if (c.expect === 'valid')
    return `rejected a valid input: ${String((result.error as Error)?.message ?? result.error)}`;
  const err = result.error;
  if (!(err instanceof Error)) return `threw a non-Error: ${String(err)}`;
  if (RAW_ERROR.test(err.message)) return `raw runtime error text: ${err.message}`;
  if (c.names && !err.message.includes(c.names)) return `the message does not name ${c.names}: ${err.message}`;
  if (err.message.length < 20) return `too short to explain the problem: ${err.message}`;
  return null;
}

const corpus: Case[] = [];
const add = (
  kind: string,
  name: string,
  expect: Expect,
  names: string | undefined,
  run: () => unknown,
  skip?: string,
): void => {
  corpus.push({ kind, name, expect, names, run, skip });
};

// ---------------------------------------------------------------------------------------------------
// Valid inputs (the checks must not reject good data)

const goodPx = bytes(1, 12 * 8 * 8);
const goodImages = write('good/images', idxFile([12, 8, 8], goodPx));
const goodLabels = write(
  'good/labels',
  idxFile(
    [12],
    Uint8Array.from({ length: 12 }, (_, i) => i % 10),
  ),
);
add('valid', 'IDX pair', 'valid', undefined, () => loadDataset(`idx:${goodImages},${goodLabels}`));
add('valid', 'IDX pair with the class count stated', 'valid', undefined, () =>
  loadDataset(`idx:${goodImages},${goodLabels},10`),
);
add('valid', 'IDX labels with a few empty classes (small file)', 'valid', undefined, () =>
  loadIdx(
    write('good/img5', idxFile([5, 2, 2], bytes(2, 20))),
    write('good/lab5', idxFile([5], Uint8Array.from([3, 1, 4, 1, 5]))),
  ),
);
add('valid', 'image folder, two classes', 'valid', undefined, () => {
  write('good-folder/a/1.png', grayPng(8));
  write('good-folder/b/2.jpg', jpeg(8));
  return loadDataset(`folder:${join(dir, 'good-folder')}`);
});
add('valid', 'CIFAR-10 file', 'valid', undefined, () =>
  loadCifarFiles(
    [
      write(
        'good/cifar.bin',
        cifarRecords(3, 1, (i) => [i]),
      ),
    ],
    'cifar10',
  ),
);
add('valid', 'PNG exactly at the pixel limit', 'valid', undefined, () => decodePng(grayPng(10), 'limit.png', 100));
add('valid', 'writable output folder, nested and new', 'valid', undefined, () => {
  const out = join(dir, 'out/new/nested');
  ensureWritableFolder(out, 'output folder');
  assert.deepEqual(readdirSync(out), [], 'the write probe is removed');
});

// ---------------------------------------------------------------------------------------------------
// Files and folders: regular files only, folder/file mix-ups, links, permissions

const aFolder = folder('fs/a-folder');
const aFile = write('fs/a-file', 'not a folder');
add('filesystem', 'a folder as the IDX images file', 'error', aFolder, () => loadDataset(`idx:${aFolder}`));
add('filesystem', 'a folder as the IDX labels file', 'error', aFolder, () =>
  loadDataset(`idx:${goodImages},${aFolder}`),
);
add('filesystem', 'a file as the CIFAR-10 folder', 'error', aFile, () => loadDataset(`cifar10:${aFile}`));
add('filesystem', 'a file as the image folder', 'error', aFile, () => loadDataset(`folder:${aFile}`));
add('filesystem', 'a file as the MNIST IDX folder', 'error', aFile, () => loadDataset(`mnist-idx:${aFile}`));
add('filesystem', 'a file as the Fashion-MNIST folder', 'error', aFile, () => loadDataset(`fashion-mnist:${aFile}`));
add('filesystem', 'a missing IDX file', 'error', 'nothing-here', () =>
  loadDataset(`idx:${join(dir, 'fs/nothing-here')}`),
);
add('filesystem', 'a path through a file (file/x)', 'error', 'a-file/x', () => loadDataset(`idx:${join(aFile, 'x')}`));
const loopA = join(dir, 'fs/loop-a');
symlinkSync(join(dir, 'fs/loop-b'), loopA);
symlinkSync(loopA, join(dir, 'fs/loop-b'));
add('filesystem', 'a symlink loop as the IDX file', 'error', loopA, () => loadDataset(`idx:${loopA}`));
const dangling = join(dir, 'fs/dangling');
symlinkSync(join(dir, 'fs/no-target'), dangling);
add('filesystem', 'a dangling symlink as the IDX file', 'error', dangling, () => loadDataset(`idx:${dangling}`));
folder('fs/img-loop');
symlinkSync(join(dir, 'fs/img-loop/b.png'), join(dir, 'fs/img-loop/a.png'));
symlinkSync(join(dir, 'fs/img-loop/a.png'), join(dir, 'fs/img-loop/b.png'));
add('filesystem', 'a symlink loop named a.png in an image folder', 'error', 'a.png', () =>
  loadDataset(`folder:${join(dir, 'fs/img-loop')}`),
);
folder('fs/img-dangling');
symlinkSync(join(dir, 'fs/nowhere.png'), join(dir, 'fs/img-dangling/a.png'));
add('filesystem', 'a dangling symlink named a.png in an image folder', 'error', 'a.png', () =>
  loadDataset(`folder:${join(dir, 'fs/img-dangling')}`),
);
folder('fs/cifar-dir/data_batch_1.bin');
add('filesystem', 'a folder named data_batch_1.bin', 'error', 'data_batch_1.bin', () =>
  loadDataset(`cifar10:${join(dir, 'fs/cifar-dir')}`),
);
add('filesystem', 'a character device (/dev/null) as the IDX file', 'error', '/dev/null', () =>
  loadDataset('idx:/dev/null'),
);
const unreadable = write('fs/unreadable', idxFile([1, 8, 8], bytes(3, 64)));
chmodSync(unreadable, 0o000);
add(
  'filesystem',
  'an IDX file without read permission',
  'error',
  unreadable,
  () => loadDataset(`idx:${unreadable}`),
  isRoot ? 'running as root: permission bits do not stop root from reading' : undefined,
);
add('filesystem', 'an output folder under /proc', 'error', '/proc/odc-bad-inputs', () =>
  ensureWritableFolder('/proc/odc-bad-inputs/run', 'output folder'),
);
add('filesystem', 'an output folder inside /proc/self', 'error', '/proc/self/odc', () =>
  ensureWritableFolder('/proc/self/odc', 'output folder'),
);
add('filesystem', 'an output folder that is a file', 'error', aFile, () =>
  ensureWritableFolder(aFile, 'output folder'),
);
add('filesystem', 'an output folder below a file', 'error', aFile, () =>
  ensureWritableFolder(join(aFile, 'run'), 'output folder'),
);

// ---------------------------------------------------------------------------------------------------
// Empty data

const zeroImages = write('empty/zero-images', idxFile([0, 28, 28], new Uint8Array(0)));
add('empty', 'an IDX file declaring 0 images', 'error', zeroImages, () => loadDataset(`idx:${zeroImages}`));
add('empty', 'an IDX file declaring 0x0 images', 'error', 'zero-size', () =>
  loadDataset(`idx:${write('empty/zero-size', idxFile([3, 0, 0], new Uint8Array(0)))}`),
);
add('empty', 'a zero-byte IDX file', 'error', 'zero-bytes', () =>
  loadDataset(`idx:${write('empty/zero-bytes', new Uint8Array(0))}`),
);
add('empty', 'a zero-byte CIFAR file', 'error', 'empty.bin', () =>
  loadCifarFiles([write('empty/empty.bin', new Uint8Array(0))], 'cifar10'),
);
add('empty', 'an empty image folder', 'error', 'empty-folder', () =>
  loadDataset(`folder:${folder('empty/empty-folder')}`),
);
add('empty', 'an image folder with no image files', 'error', 'no-images', () => {
  write('empty/no-images/readme.txt', 'hello');
  return loadDataset(`folder:${join(dir, 'empty/no-images')}`);
});
add('empty', 'a class folder without images', 'error', 'dog', () => {
  write('empty/classes/cat/1.png', grayPng(8));
  folder('empty/classes/dog');
  return loadDataset(`folder:${join(dir, 'empty/classes')}`);
});
add('empty', 'a zero-byte .png in an image folder', 'error', 'zero.png', () =>
  loadDataset(`folder:${folderWith('empty/zero-png', 'zero.png', new Uint8Array(0))}`),
);

// ---------------------------------------------------------------------------------------------------
// The data set against the run (before any GPU work)

/** tinyConfig (K 8) with a minCluster small enough for 16 images, then `overrides`. */
function configWith(...overrides: string[]): TrainConfig {
  return tinyConfig('odc.minCluster=2', ...overrides);
}
function tinyImages(side: number, n = 16): ImageDataset {
  return {
    name: `${side}x${side}`,
    n,
    height: side,
    width: side,
    channels: 1,
    images: bytes(4, n * side * side),
    labels: null,
    numClasses: null,
  };
}
add('model', 'a data set with 0 images', 'error', 'holds no images', () =>
  checkTrainingData(tinyImages(8, 0), tinyConfig()),
);
add('model', 'a data set with 1 image', 'error', 'batch norm', () =>
  checkTrainingData(tinyImages(8, 1), configWith('odc.k=1')),
);
add('model', 'more clusters than images', 'error', 'odc.k', () => checkTrainingData(tinyImages(8, 4), tinyConfig()));
add('model', 'minCluster too large for the images and clusters', 'error', 'odc.minCluster', () =>
  checkTrainingData(tinyImages(8, 33), tinyConfig()),
);
add('model', 'a batch size of 1', 'error', 'optim.batchSize', () =>
  checkTrainingData(tinyImages(8), configWith('optim.batchSize=1')),
);
add('model', '1x1 images for convnet-s', 'error', 'convnet-s', () => checkTrainingData(tinyImages(1), configWith()));
add('model', '2x2 images for convnet-s', 'error', '8x8', () => checkTrainingData(tinyImages(2), configWith()));
add('model', '7x7 images for convnet-s', 'error', 'data.imageSize', () =>
  checkTrainingData(tinyImages(7), configWith()),
);
add('model', '8x8 images for convnet-s', 'valid', undefined, () => checkTrainingData(tinyImages(8), configWith()));
add('model', '2x2 images upscaled to 8 by data.imageSize', 'valid', undefined, () =>
  checkTrainingData(tinyImages(2), configWith('data.imageSize=8')),
);
add('model', '1x1 images for resnet18 (padded stride-2 layers)', 'valid', undefined, () =>
  checkTrainingData(tinyImages(1), configWith('model.backbone="resnet18"')),
);
add('model', '2x2 PNG folder, then the model check', 'error', '8x8', async () => {
  for (const i of [1, 2, 3, 4]) write(`model/tiny/${i}.png`, grayPng(2, i));
  return checkTrainingData(
    await loadDataset(`folder:${join(dir, 'model/tiny')}`),
    configWith('odc.k=2', 'odc.minCluster=1'),
  );
});

// ---------------------------------------------------------------------------------------------------
// Pixel limits and decompression bombs

const zeroRows = (w: number, h: number): Uint8Array => deflateSync(new Uint8Array(h * (w + 1)));
add('bomb', 'a PNG declaring 100000x100000 pixels', 'error', 'huge.png', () =>
  loadDataset(`folder:${folderWith('bomb/a', 'huge.png', rawPng(100_000, 100_000, zeroRows(1, 1)))}`),
);
add('bomb', 'a PNG declaring 2^31-1 x 2^31-1 pixels', 'error', 'max.png', () =>
  loadDataset(`folder:${folderWith('bomb/b', 'max.png', rawPng(0x7fffffff, 0x7fffffff, zeroRows(1, 1)))}`),
);
add('bomb', 'a 10x10 PNG whose data inflates to 50 MB', 'error', 'bomb.png', () =>
  loadDataset(`folder:${folderWith('bomb/c', 'bomb.png', rawPng(10, 10, deflateSync(new Uint8Array(50 << 20))))}`),
);
add('bomb', 'a 20x20 PNG over a pixel limit of 100 (option)', 'error', 'ODC_MAX_IMAGE_PIXELS', () =>
  loadImageFolder(folderWith('bomb/d', 'x.png', grayPng(20)), { maxImagePixels: 100 }),
);
add('bomb', 'a 20x20 PNG over ODC_MAX_IMAGE_PIXELS=399', 'error', 'y.png', () => {
  const previous = process.env.ODC_MAX_IMAGE_PIXELS;
  process.env.ODC_MAX_IMAGE_PIXELS = '399';
  try {
    return loadImageFolder(folderWith('bomb/e', 'y.png', grayPng(20)));
  } finally {
    if (previous === undefined) delete process.env.ODC_MAX_IMAGE_PIXELS;
    else process.env.ODC_MAX_IMAGE_PIXELS = previous;
  }
});
add('bomb', 'ODC_MAX_IMAGE_PIXELS that is not a number', 'error', 'ODC_MAX_IMAGE_PIXELS', () => {
  const previous = process.env.ODC_MAX_IMAGE_PIXELS;
  process.env.ODC_MAX_IMAGE_PIXELS = 'lots';
  try {
    return maxImagePixels();
  } finally {
    if (previous === undefined) delete process.env.ODC_MAX_IMAGE_PIXELS;
    else process.env.ODC_MAX_IMAGE_PIXELS = previous;
  }
});
/** A JPEG whose frame header claims side x side (the rest of the file is a small real JPEG). */
function jpegClaiming(side: number): Uint8Array {
  const real = jpeg(8);
  for (let p = 2; p < real.length - 9;) {
    const marker = real[p + 1];
    const length = (real[p + 2] << 8) | real[p + 3];
    if (marker === 0xc0 || marker === 0xc2) {
      real[p + 5] = side >> 8;
      real[p + 6] = side & 0xff;
      real[p + 7] = side >> 8;
      real[p + 8] = side & 0xff;
      return real;
    }
    p += 2 + length;
  }
  throw new Error('no frame header in the test JPEG');
}
add('bomb', 'a JPEG whose frame header claims 65535x65535', 'error', 'huge.jpg', () =>
  loadDataset(`folder:${folderWith('bomb/f', 'huge.jpg', jpegClaiming(65535))}`),
);
add('bomb', 'a JPEG whose frame header claims 10000x10000', 'error', 'big.jpg', () =>
  loadDataset(`folder:${folderWith('bomb/g', 'big.jpg', jpegClaiming(10000))}`),
);

// ---------------------------------------------------------------------------------------------------
// Labels: one check for every source

const tenLabels = (bad: number, n = 12): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (i === 7 ? bad : i % 10));
const manyImages = write('labels/images-300', idxFile([300, 2, 2], bytes(3, 1200)));
const stray = write('labels/stray', idxFile([300], tenLabels(200, 300)));
add('labels', 'idx: a stray label 200 among 300 digits', 'error', stray, () =>
  loadDataset(`idx:${manyImages},${stray}`),
);
const eleven = write('labels/ten', idxFile([12], tenLabels(10)));
add('labels', 'idx: label 10 with the class count stated as 10', 'error', eleven, () =>
  loadDataset(`idx:${goodImages},${eleven},10`),
);
add('labels', 'idx: a class count that is not a number', 'error', 'ten', () =>
  loadDataset(`idx:${goodImages},${goodLabels},ten`),
);
add('labels', 'mnist-idx: label 10 in the labels file', 'error', 't10k-labels-idx1-ubyte', () => {
  write('labels/mnist/t10k-images-idx3-ubyte', idxFile([12, 8, 8], goodPx));
  write('labels/mnist/t10k-labels-idx1-ubyte', idxFile([12], tenLabels(10)));
  return loadDataset(`mnist-idx:${join(dir, 'labels/mnist')}`, { split: 'test' });
});
add('labels', 'CIFAR-10: label 10', 'error', 'c10.bin', () =>
  loadCifarFiles(
    [
      write(
        'labels/c10.bin',
        cifarRecords(3, 1, (i) => [i === 2 ? 10 : i]),
      ),
    ],
    'cifar10',
  ),
);
add('labels', 'CIFAR-100: fine label 100', 'error', 'c100.bin', () =>
  loadCifarFiles(
    [
      write(
        'labels/c100.bin',
        cifarRecords(2, 2, (i) => [0, i === 1 ? 100 : 5]),
      ),
    ],
    'cifar100-fine',
  ),
);
add('labels', 'CIFAR-100: coarse label 25', 'error', 'coarse.bin', () =>
  loadCifarFiles(
    [
      write(
        'labels/coarse.bin',
        cifarRecords(2, 2, (i) => [i === 1 ? 25 : 3, 5]),
      ),
    ],
    'cifar100-fine',
  ),
);
add('labels', 'a data set with label -1', 'error', 'label -1', () =>
  checkDataset({ ...tinyImages(8, 2), labels: Int32Array.from([0, -1]), numClasses: 2 }),
);

// ---------------------------------------------------------------------------------------------------
// Mismatched pairs, wrong magic numbers, huge or overflowing headers, bad CRCs

const fiveLabels = write('pairs/five-labels', idxFile([5], Uint8Array.from([0, 1, 2, 3, 4])));
add('format', 'IDX pair: 5 labels for 12 images', 'error', fiveLabels, () =>
  loadDataset(`idx:${goodImages},${fiveLabels}`),
);
add('format', 'IDX pair: images and labels swapped', 'error', 'good/labels', () =>
  loadDataset(`idx:${goodLabels},${goodImages}`),
);
add('format', 'IDX: magic of a 3-byte type (0x0903)', 'error', 'magic-09', () =>
  loadDataset(`idx:${write('format/magic-09', idxFile([1, 2, 2], bytes(5, 4), 0x09))}`),
);
add('format', 'IDX: float data (type 0x0D)', 'error', 'magic-0d', () =>
  loadDataset(`idx:${write('format/magic-0d', idxFile([1, 2, 2], bytes(5, 16), 0x0d))}`),
);
add('format', 'IDX: 5 dimensions', 'error', 'five-dims', () =>
  loadDataset(`idx:${write('format/five-dims', idxFile([1, 2, 2, 1, 1], bytes(5, 4)))}`),
);
add('format', 'IDX: 2 channels per pixel', 'error', 'two-channels', () =>
  loadDataset(`idx:${write('format/two-channels', idxFile([1, 2, 2, 2], bytes(5, 8)))}`),
);
add('format', 'IDX: dimensions 65535^3 with 10 data bytes', 'error', 'huge-dims', () =>
  loadDataset(`idx:${write('format/huge-dims', idxFile([65535, 65535, 65535], bytes(5, 10)))}`),
);
add('format', 'IDX: dimensions whose product overflows 2^53', 'error', 'overflow', () =>
  loadDataset(`idx:${write('format/overflow', idxFile([0xffffffff, 0xffffffff, 0xffffffff, 1], bytes(5, 10)))}`),
);
add('format', 'IDX: header says 3 dims but has the bytes of 1', 'error', 'short-header', () =>
  loadDataset(`idx:${write('format/short-header', idxFile([7], new Uint8Array(0), 0x08, 3))}`),
);
add('format', 'IDX: trailing bytes after the data', 'error', 'trailing', () =>
  loadDataset(`idx:${write('format/trailing', concatBytes([idxFile([1, 2, 2], bytes(5, 4)), new Uint8Array(3)]))}`),
);
add('format', 'gzip: corrupt deflate data inside a valid gzip header', 'error', 'corrupt.gz', () => {
  const gz = gzipSync(idxFile([4, 8, 8], bytes(6, 256)));
  gz.fill(0xff, 12, 30);
  return loadDataset(`idx:${write('format/corrupt.gz', gz)}`);
});
const goodPng = grayPng(8);
const badCrc = goodPng.slice();
badCrc[goodPng.length - 14] ^= 0xff; // a byte inside the last IDAT chunk
add('format', 'PNG with a bad CRC', 'error', 'crc.png', () =>
  loadDataset(`folder:${folderWith('format/crc', 'crc.png', badCrc)}`),
);
const badSig = goodPng.slice();
badSig[1] = 0x51;
add('format', 'PNG with a wrong signature', 'error', 'sig.png', () =>
  loadDataset(`folder:${folderWith('format/sig', 'sig.png', badSig)}`),
);
add('format', 'PNG whose first chunk is not IHDR', 'error', 'order.png', () =>
  loadDataset(
    `folder:${folderWith('format/order', 'order.png', rawPng(2, 2, zeroRows(2, 2), pngChunk('tEXt', new Uint8Array(4))))}`,
  ),
);
add('format', 'PNG declaring 0x5 pixels', 'error', 'zero-width.png', () =>
  loadDataset(`folder:${folderWith('format/zw', 'zero-width.png', rawPng(0, 5, zeroRows(1, 1)))}`),
);
add('format', 'PNG with a chunk length of 2^31', 'error', 'len.png', () => {
  const png = goodPng.slice();
  new DataView(png.buffer).setUint32(8, 0x80000000); // IHDR's length field
  return loadDataset(`folder:${folderWith('format/len', 'len.png', png)}`);
});
add('format', 'a text file named .png', 'error', 'text.png', () =>
  loadDataset(
    `folder:${folderWith('format/text', 'text.png', new TextEncoder().encode('just some text, not an image'))}`,
  ),
);
add('format', 'a PNG named .jpg (decoded by content)', 'valid', undefined, () =>
  loadDataset(`folder:${folderWith('format/png-as-jpg', 'a.jpg', goodPng)}`),
);
add('format', 'JPEG: SOI marker then garbage', 'error', 'garbage.jpg', () =>
  loadDataset(
    `folder:${folderWith('format/garbage', 'garbage.jpg', concatBytes([Uint8Array.from([0xff, 0xd8, 0xff]), bytes(7, 300)]))}`,
  ),
);
add('format', 'CIFAR-10: a CIFAR-100 file (record size 3074)', 'error', 'c100-as-c10.bin', () =>
  loadCifarFiles(
    [
      write(
        'format/c100-as-c10.bin',
        cifarRecords(3, 2, () => [1, 1]),
      ),
    ],
    'cifar10',
  ),
);
for (const size of [1, 3072, 3074, 2 * 3073 - 1, 2 * 3073 + 1]) {
  add('format', `CIFAR-10 file of ${size} bytes`, 'error', `len-${size}.bin`, () =>
    loadCifarFiles([write(`format/len-${size}.bin`, bytes(8, size))], 'cifar10'),
  );
}

// ---------------------------------------------------------------------------------------------------
// Truncations at many offsets (each: a clear error, never a raw one)

const fullIdx = idxFile([3, 4, 4], bytes(10, 48));
for (const cut of [1, 2, 3, 4, 5, 8, 11, 15, 16, 17, 30, fullIdx.length - 1]) {
  add('truncation', `IDX cut at byte ${cut}`, 'error', `idx-${cut}`, () =>
    loadDataset(`idx:${write(`trunc/idx-${cut}`, fullIdx.subarray(0, cut))}`),
  );
}
const fullGz = gzipSync(fullIdx);
for (const cut of [2, 10, 18, fullGz.length - 8, fullGz.length - 1]) {
  add('truncation', `gzipped IDX cut at byte ${cut}`, 'error', `gz-${cut}`, () =>
    loadDataset(`idx:${write(`trunc/gz-${cut}`, fullGz.subarray(0, cut))}`),
  );
}
for (const cut of [4, 8, 12, 20, 33, 41, 50, goodPng.length - 12, goodPng.length - 1]) {
  add('truncation', `PNG cut at byte ${cut}`, 'error', `cut-${cut}.png`, () =>
    loadDataset(`folder:${folderWith(`trunc/png-${cut}`, `cut-${cut}.png`, goodPng.subarray(0, cut))}`),
  );
}
const goodJpeg = jpeg(16);
for (const cut of [2, 3, 20, 100, goodJpeg.length >> 1]) {
  add('truncation', `JPEG cut at byte ${cut}`, 'error', `cut-${cut}.jpg`, () =>
    loadDataset(`folder:${folderWith(`trunc/jpg-${cut}`, `cut-${cut}.jpg`, goodJpeg.subarray(0, cut))}`),
  );
}
// Near its end a cut JPEG may still decode (jpeg-js fills what is missing): either class is fine, a raw error is not.
for (const cut of [goodJpeg.length - 2, goodJpeg.length - 1]) {
  add('truncation', `JPEG cut at byte ${cut} (of ${goodJpeg.length})`, 'error-or-valid', `cut-${cut}.jpg`, () =>
    loadDataset(`folder:${folderWith(`trunc/jpg-${cut}`, `cut-${cut}.jpg`, goodJpeg.subarray(0, cut))}`),
  );
}

// ---------------------------------------------------------------------------------------------------

test(`the bad-input corpus: ${corpus.length} cases, each a clear error or a valid input, none hanging`, async () => {
  assert.ok(corpus.length >= 50, `only ${corpus.length} cases`);
  const failures: string[] = [];
  const skipped: string[] = [];
  for (const c of corpus) {
    if (c.skip) {
      skipped.push(`${c.name}: ${c.skip}`);
      continue;
    }
    const problem = await judge(c);
    if (problem) failures.push(`[${c.kind}] ${c.name}: ${problem}`);
  }
  if (skipped.length) console.log(`skipped ${skipped.length}: ${skipped.join('; ')}`);
  assert.deepEqual(failures, []);
});

/** A CIFAR-10 folder whose first batch file is a symbolic link to /dev/zero. */
function zeroLinkFolder(): string {
  const path = folder('pipes/cifar-zero');
  symlinkSync('/dev/zero', join(path, 'data_batch_1.bin'));
  return path;
}

test('named pipes and endless devices are refused before any read (in a child process, so a hang cannot stall the suite)', () => {
  const pipes = [
    { name: 'a FIFO as the IDX images file', spec: `idx:${fifo('pipes/images')}`, names: 'pipes/images' },
    { name: 'a FIFO as the IDX labels file', spec: `idx:${goodImages},${fifo('pipes/labels')}`, names: 'pipes/labels' },
    {
      name: 'a FIFO as a CIFAR-10 batch file',
      spec: `cifar10:${dirname(fifo('pipes/cifar/data_batch_1.bin'))}`,
      names: 'data_batch_1.bin',
    },
    {
      name: 'a FIFO named a.png in an image folder',
      spec: `folder:${dirname(fifo('pipes/folder/a.png'))}`,
      names: 'a.png',
    },
    { name: 'a FIFO as the image folder', spec: `folder:${fifo('pipes/as-folder')}`, names: 'as-folder' },
    {
      name: 'a FIFO as the MNIST train images',
      spec: `mnist-idx:${dirname(fifo('pipes/mnist/train-images-idx3-ubyte.gz'))}`,
      names: 'train-images',
    },
    { name: '/dev/zero (endless) as the IDX file', spec: 'idx:/dev/zero', names: '/dev/zero' },
    {
      name: 'a link to /dev/zero as a CIFAR-10 batch file',
      spec: `cifar10:${zeroLinkFolder()}`,
      names: 'data_batch_1.bin',
    },
  ];
  const child = spawnSync(
    process.execPath,
    [...runtimeArgs, 'test/bad-inputs-child.ts', JSON.stringify(pipes.map(({ name, spec }) => ({ name, spec })))],
    {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    },
  );
  const outcomes = new Map<string, { ok: boolean; message?: string }>();
  for (const line of (child.stdout ?? '').split('\n')) {
    if (line.startsWith('{')) {
      const o = JSON.parse(line) as { name: string; ok: boolean; message?: string };
      outcomes.set(o.name, o);
    }
  }
  const failures: string[] = [];
  for (const p of pipes) {
    const o = outcomes.get(p.name);
    if (!o)
      failures.push(
        `${p.name}: no outcome (the child hung or died: status ${child.status}, signal ${child.signal}; ${child.stderr.slice(-300)})`,
      );
    else if (o.ok) failures.push(`${p.name}: accepted`);
    else if (RAW_ERROR.test(o.message!) || !o.message!.includes(p.names))
      failures.push(`${p.name}: unclear error: ${o.message}`);
    else if (/pipe|FIFO|device|not found/.test(o.message!) === false)
      failures.push(`${p.name}: does not say what the path is: ${o.message}`);
  }
  assert.deepEqual(failures, []);
});

// ---------------------------------------------------------------------------------------------------
// The CLI: exit code 1, one `odc: ` line naming the problem, no stack trace, no hang

function cli(args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(process.execPath, [...runtimeArgs, 'src/cli/main.ts', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, ODC_DEBUG: '' },
  });
  return { status: r.status, stderr: r.stderr ?? '', stdout: r.stdout ?? '' };
}

function assertCliError(args: string[], names: string): void {
  const r = cli(args);
  assert.equal(r.status, 1, `odc ${args.join(' ')}: exit status ${r.status}\n${r.stderr}`);
  const message = r.stderr.split('\n').find((l) => l.startsWith('odc: '));
  assert.ok(message, `no "odc: " line in stderr:\n${r.stderr}`);
  assert.ok(message.includes(names), `the message does not name ${names}: ${message}`);
  assert.ok(!RAW_ERROR.test(message), `raw runtime error text: ${message}`);
  assert.ok(!/^\s+at .*[:(]/m.test(r.stderr), `a stack trace reached the user:\n${r.stderr}`);
}

test('CLI: a named pipe as the data', () => {
  const pipe = fifo('cli/pipe');
  assertCliError(['train', '--data', `idx:${pipe}`, '--out', join(dir, 'cli/run-pipe'), '--quiet'], pipe);
});

test('CLI: an output folder under /proc fails at once instead of hanging', () => {
  assertCliError(['train', '--out', '/proc/odc-bad-inputs-cli', '--quiet'], '/proc/odc-bad-inputs-cli');
});

test('CLI: an IDX file with zero images, and images too small for the backbone', () => {
  assertCliError(['train', '--data', `idx:${zeroImages}`, '--out', join(dir, 'cli/run-zero'), '--quiet'], zeroImages);
  for (const i of [1, 2, 3, 4]) write(`cli/tiny/${i}.png`, grayPng(2, i));
  assertCliError(
    [
      'train',
      '--data',
      `folder:${join(dir, 'cli/tiny')}`,
      '--k',
      '2',
      '--min-cluster',
      '1',
      '--out',
      join(dir, 'cli/run-tiny'),
      '--quiet',
    ],
    'convnet-s',
  );
});

// ---------------------------------------------------------------------------------------------------
// Backbone minimum sizes and the last training batch

test('backbone minimum input sizes follow from their downsampling layers', () => {
  const cases: Array<[BackboneName, Stem, number]> = [
    ['convnet-s', 'cifar', 8],
    ['resnet18', 'cifar', 1],
    ['resnet18', 'imagenet', 1],
    ['resnet50', 'imagenet', 1],
  ];
  for (const [name, stem, expected] of cases) {
    const layers = downsamplingLayers(name, stem);
    assert.equal(minInputSize(name, stem), expected, `${name} (${stem} stem)`);
    assert.ok(featureMapSide(expected, layers) >= 1);
    if (expected > 1)
      assert.equal(featureMapSide(expected - 1, layers), 0, `${name}: ${expected - 1} pixels leave no feature map`);
  }
  // convnet-s: 8 -> 4 -> 2 -> 1 through three 2x2 pools; ResNet ImageNet stem: 224 -> 112 -> 56 -> 28 -> 14 -> 7
  assert.equal(featureMapSide(224, downsamplingLayers('resnet50', 'imagenet')), 7);
  assert.equal(featureMapSide(32, downsamplingLayers('resnet18', 'cifar')), 4);
});

test('training batches drop only a last batch of one image; every other split is unchanged', () => {
  for (let n = 1; n <= 70; n++) {
    for (const b of [2, 3, 16, 32]) {
      const order = Uint32Array.from({ length: n }, (_, i) => i);
      const plain = batches(order, b);
      const train = trainingBatches(order, b);
      assert.equal(train.length, trainingBatchCount(n, b), `n ${n}, batch ${b}`);
      if (n % b === 1 && n > 1) {
        assert.deepEqual(
          train.map((x) => [...x]),
          plain.slice(0, -1).map((x) => [...x]),
        );
      } else {
        assert.deepEqual(
          train.map((x) => [...x]),
          plain.map((x) => [...x]),
          `n ${n}, batch ${b}: unchanged`,
        );
      }
      if (n > 1)
        assert.ok(
          train.every((x) => x.length >= 2),
          `n ${n}, batch ${b}: a batch of one image`,
        );
    }
  }
});

test('33 images in batches of 16 train (the last batch of one image is dropped, not fed to batch norm)', async () => {
  await setupGpu();
  const { train } = await import('../src/odc/trainer.ts');
  const out = join(dir, 'train-33');
  const result = await train({
    config: configWith('optim.epochs=1', 'odc.minCluster=4'),
    outDir: out,
    dataset: syntheticDataset(33),
    quiet: true,
  });
  assert.equal(result.iterations, 2);
  assert.equal(result.epochs.length, 1);
  assert.ok(Number.isFinite(result.epochs[0].loss), `loss ${result.epochs[0].loss}`);
  assert.ok(existsSync(join(out, 'checkpoint.odc')));
});
