import { test, before, after } from 'node:test';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { encode as encodeJpeg } from 'jpeg-js';
import { assert, RUNS } from './helpers.ts';
import { checkDataset, headDataset, type ImageDataset } from '../src/data/dataset.ts';
import { loadDataset } from '../src/data/registry.ts';
import { loadMnistPackage } from '../src/data/mnist-package.ts';
import { DEFAULT_FASHION_DIR, loadFashionMnist, loadIdx, loadMnist } from '../src/data/idx.ts';
import { loadCifar10, loadCifar100, loadCifarFiles } from '../src/data/cifar.ts';
import { assemblePng, decodePng, encodePng } from '../src/data/png.ts';
import { decodeJpeg } from '../src/data/jpeg.ts';
import { fitImage, loadImageFolder } from '../src/data/image-folder.ts';
import { balancedEpoch, batches, UniformSampler } from '../src/data/sampler.ts';
import { Rng } from '../src/util/rng.ts';

let dir = '';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'odc-data-test-'));
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function bytes(seed: number, n: number): Uint8Array {
  const rng = new Rng(seed);
  return Uint8Array.from({ length: n }, () => rng.int(256));
}

function idxFile(dims: number[], data: Uint8Array, magicType = 0x08): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  const v = new DataView(header.buffer);
  header[2] = magicType;
  header[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d));
  const out = new Uint8Array(header.length + data.length);
  out.set(header);
  out.set(data, header.length);
  return out;
}

function write(name: string, data: Uint8Array): string {
  const path = join(dir, name);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, data);
  return path;
}

// ---------------------------------------------------------------------------------------------------

test('the mnist package loads 10,000 28x28 digits with labels 0..9', () => {
  const ds = loadMnistPackage();
  assert.equal(ds.n, 10000);
  assert.equal(ds.height, 28);
  assert.equal(ds.width, 28);
  assert.equal(ds.channels, 1);
  assert.equal(ds.images.length, 10000 * 784);
  assert.equal(ds.numClasses, 10);
  const counts = new Array<number>(10).fill(0);
  for (const l of ds.labels!) counts[l]++;
  assert.ok(
    counts.every((c) => c > 800 && c < 1200),
    `class counts ${counts}`,
  );
  // digits: mostly black background, some bright ink
  let ink = 0;
  for (let i = 0; i < 784; i++) if (ds.images[i] > 128) ink++;
  assert.ok(ink > 30 && ink < 400, `ink pixels of the first digit: ${ink}`);
  assert.equal(Math.max(...ds.images.subarray(0, 784 * 10)), 255);
  const head = headDataset(ds, 5);
  assert.equal(head.n, 5);
  assert.equal(head.images.length, 5 * 784);
});

test('IDX images and labels load plain and gzipped', () => {
  const n = 5;
  const px = bytes(1, n * 4 * 3);
  const lab = Uint8Array.from([3, 1, 4, 1, 5]);
  const imgPlain = write('idx/plain-images', idxFile([n, 4, 3], px));
  const labPlain = write('idx/plain-labels', idxFile([n], lab));
  const imgGz = write('idx/gz-images.gz', gzipSync(idxFile([n, 4, 3], px)));
  const labGz = write('idx/gz-labels.gz', gzipSync(idxFile([n], lab)));
  for (const [i, l] of [
    [imgPlain, labPlain],
    [imgGz, labGz],
    [imgGz, labPlain],
  ]) {
    const ds = loadIdx(i, l);
    assert.equal(ds.n, n);
    assert.equal(ds.height, 4);
    assert.equal(ds.width, 3);
    assert.equal(ds.channels, 1);
    assert.deepEqual([...ds.images], [...px]);
    assert.deepEqual([...ds.labels!], [...lab]);
    assert.equal(ds.numClasses, 6);
  }
  const unlabelled = loadIdx(imgPlain);
  assert.equal(unlabelled.labels, null);
  // 4-D colour IDX
  const rgb = loadIdx(write('idx/rgb', idxFile([2, 2, 2, 3], bytes(2, 24))));
  assert.equal(rgb.channels, 3);
});

test('IDX folder loaders (MNIST layout) and the registry', async () => {
  const px = bytes(3, 6 * 28 * 28);
  const lab = Uint8Array.from([0, 1, 2, 3, 4, 9]);
  write('mnistdir/t10k-images-idx3-ubyte.gz', gzipSync(idxFile([6, 28, 28], px)));
  write('mnistdir/t10k-labels-idx1-ubyte', idxFile([6], lab));
  const ds = loadMnist(join(dir, 'mnistdir'), 'test');
  assert.equal(ds.n, 6);
  assert.equal(ds.numClasses, 10);
  const viaRegistry = await loadDataset(`mnist-idx:${join(dir, 'mnistdir')}`, { split: 'test' });
  assert.deepEqual([...viaRegistry.labels!], [...lab]);
  assert.throws(() => loadMnist(join(dir, 'mnistdir'), 'train'), /train-images-idx3-ubyte\.gz: file not found.*MNIST/);
  await assert.rejects(loadDataset('nope:x'), /Unknown data set "nope".*mnist/s);
  const pkg = await loadDataset('mnist');
  assert.equal(pkg.n, 10000);
});

test('corrupt IDX files are rejected with one clear error naming the file', () => {
  const px = bytes(4, 3 * 2 * 2);
  const good = idxFile([3, 2, 2], px);
  const badMagic = write('bad/magic', idxFile([3, 2, 2], px, 0x09));
  assert.throws(
    () => loadIdx(badMagic),
    (e: Error) => e.message.includes(badMagic) && /bad magic number 0x00000903/.test(e.message),
  );
  const labelsAsImages = write('bad/labels-as-images', idxFile([3], Uint8Array.from([1, 2, 3])));
  assert.throws(() => loadIdx(labelsAsImages), /bad magic number 0x00000801 \(expected 0x00000803 or 0x00000804/);
  const truncated = write('bad/truncated', good.subarray(0, good.length - 3));
  assert.throws(
    () => loadIdx(truncated),
    (e: Error) => e.message.startsWith(truncated) && /need 12 data bytes, the file has 9 \(truncated\)/.test(e.message),
  );
  const headerOnly = write('bad/header', good.subarray(0, 7));
  assert.throws(() => loadIdx(headerOnly), /truncated IDX header/);
  const gzTruncated = write('bad/trunc.gz', gzipSync(good).subarray(0, 20));
  assert.throws(
    () => loadIdx(gzTruncated),
    (e: Error) => e.message.startsWith(gzTruncated) && /corrupt or truncated gzip/.test(e.message),
  );
  const images = write('bad/images', good);
  const labels = write('bad/labels4', idxFile([4], Uint8Array.from([0, 1, 2, 3])));
  assert.throws(() => loadIdx(images, labels), /labels4: images\/labels count mismatch: 4 labels for the 3 images/);
  assert.throws(() => loadIdx(join(dir, 'bad/missing')), /bad\/missing: file not found/);
});

test(
  'Fashion-MNIST loads from the Debian package when installed',
  {
    skip: !existsSync(join(DEFAULT_FASHION_DIR, 't10k-images-idx3-ubyte.gz')) && 'no /usr/share/datasets/fashion-mnist',
  },
  () => {
    const ds = loadFashionMnist(DEFAULT_FASHION_DIR, 'test');
    assert.equal(ds.n, 10000);
    assert.equal(ds.height, 28);
    assert.equal(ds.width, 28);
    assert.equal(ds.numClasses, 10);
    const counts = new Array<number>(10).fill(0);
    for (const l of ds.labels!) counts[l]++;
    assert.deepEqual(counts, new Array<number>(10).fill(1000));
    assert.throws(() => loadFashionMnist(join(dir, 'nowhere'), 'test'), /file not found.*dataset-fashion-mnist/s);
  },
);

// ---------------------------------------------------------------------------------------------------

function cifarRecords(n: number, labelBytes: 1 | 2, seed: number, labels: (i: number) => number[]): Uint8Array {
  const rec = labelBytes + 3072;
  const out = new Uint8Array(n * rec);
  const px = bytes(seed, n * 3072);
  for (let i = 0; i < n; i++) {
    out.set(labels(i), i * rec);
    out.set(px.subarray(i * 3072, (i + 1) * 3072), i * rec + labelBytes);
  }
  return out;
}

test('CIFAR-10 and CIFAR-100 binary files load (CHW records to HWC)', async () => {
  const files: Uint8Array[] = [];
  for (let k = 1; k <= 5; k++) {
    files.push(cifarRecords(2, 1, 10 + k, (i) => [(k + i) % 10]));
    write(`cifar10/data_batch_${k}.bin`, files[k - 1]);
  }
  write(
    'cifar10/test_batch.bin',
    cifarRecords(3, 1, 20, (i) => [i]),
  );
  const ds = loadCifar10(join(dir, 'cifar10'), 'train');
  assert.equal(ds.n, 10);
  assert.equal(ds.channels, 3);
  assert.equal(ds.numClasses, 10);
  assert.deepEqual([...ds.labels!], [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
  // image 3 = batch 2 record 1; pixel (y=5, x=7), channel g = byte 1 + 1024 + 5*32 + 7 of the record
  const rec = files[1].subarray(3073, 2 * 3073);
  for (let c = 0; c < 3; c++) assert.equal(ds.images[3 * 3072 + (5 * 32 + 7) * 3 + c], rec[1 + c * 1024 + 5 * 32 + 7]);
  const test10 = await loadDataset(`cifar10:${join(dir, 'cifar10')}`, { split: 'test' });
  assert.equal(test10.n, 3);

  write(
    'cifar100/train.bin',
    cifarRecords(4, 2, 30, (i) => [i * 5, i * 25]),
  );
  const fine = loadCifar100(join(dir, 'cifar100'), 'train');
  assert.deepEqual([...fine.labels!], [0, 25, 50, 75]);
  assert.equal(fine.numClasses, 100);
  const coarse = loadCifar100(join(dir, 'cifar100'), 'train', 'coarse');
  assert.deepEqual([...coarse.labels!], [0, 5, 10, 15]);
  assert.equal(coarse.numClasses, 20);
});

test('corrupt CIFAR files are rejected with one clear error', () => {
  const trunc = write('cifarbad/trunc.bin', cifarRecords(2, 1, 40, () => [1]).subarray(0, 3073 + 100));
  assert.throws(
    () => loadCifarFiles([trunc], 'cifar10'),
    (e: Error) =>
      e.message.startsWith(trunc) &&
      /size 3173 bytes is not a multiple of the CIFAR-10 record size 3073/.test(e.message),
  );
  const c100 = write(
    'cifarbad/c100.bin',
    cifarRecords(3, 2, 41, () => [1, 2]),
  );
  assert.throws(() => loadCifarFiles([c100], 'cifar10'), /not a multiple of the CIFAR-10 record size 3073/);
  const badLabel = write(
    'cifarbad/label.bin',
    cifarRecords(2, 1, 42, (i) => [i * 200]),
  );
  assert.throws(() => loadCifarFiles([badLabel], 'cifar10'), /label\.bin: record 1 has label 200, outside 0\.\.9/);
  assert.throws(
    () => loadCifar10(join(dir, 'cifar-missing')),
    /data_batch_1\.bin: file not found\. Get the binary version of CIFAR-10/,
  );
});

// ---------------------------------------------------------------------------------------------------

test('PNG decoder: every colour type and filter type round-trips (8-bit)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 7 }),
      fc.constantFrom(0, 2, 3, 4, 6),
      fc.integer(),
      (w, h, colorType, seed) => {
        const spp = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType]!;
        const raw = bytes(seed, w * h * spp);
        const palette = bytes(seed + 1, 768);
        const png = encodePng(w, h, raw, { colorType: colorType as 0 | 2 | 3 | 4 | 6, filter: 'cycle', palette });
        const img = decodePng(png, 'x.png');
        assert.equal(img.width, w);
        assert.equal(img.height, h);
        for (let p = 0; p < w * h; p++) {
          if (colorType === 0) assert.equal(img.data[p], raw[p]);
          else if (colorType === 4)
            assert.equal(img.data[p], raw[2 * p]); // alpha dropped
          else if (colorType === 3)
            for (let c = 0; c < 3; c++) assert.equal(img.data[3 * p + c], palette[3 * raw[p] + c]);
          else for (let c = 0; c < 3; c++) assert.equal(img.data[3 * p + c], raw[p * spp + c]);
        }
        assert.equal(img.channels, colorType === 0 || colorType === 4 ? 1 : 3);
      },
    ),
    { numRuns: RUNS * 4 },
  );
});

test('PNG decoder: 16-bit, 1/2/4-bit gray and Adam7-interlaced files', () => {
  // 16-bit RGB, 2x2, filter 0
  const s16 = [0, 65535, 32768, 257, 1000, 60000, 12345, 54321, 0, 65535, 65535, 0];
  const raw16 = new Uint8Array(2 * (1 + 2 * 6));
  for (let y = 0; y < 2; y++)
    for (let i = 0; i < 6; i++) {
      const v = s16[y * 6 + i];
      raw16[y * 13 + 1 + 2 * i] = v >> 8;
      raw16[y * 13 + 2 + 2 * i] = v & 255;
    }
  const img16 = decodePng(assemblePng({ width: 2, height: 2, depth: 16, colorType: 2, interlace: 0 }, raw16));
  assert.deepEqual(
    [...img16.data],
    s16.map((v) => Math.round((v * 255) / 65535)),
  );
  // 2-bit gray, 5 pixels wide: samples 0 1 2 3 1 -> 0 85 170 255 85
  const raw2 = Uint8Array.from([0, 0b00011011, 0b01000000]);
  assert.deepEqual(
    [...decodePng(assemblePng({ width: 5, height: 1, depth: 2, colorType: 0, interlace: 0 }, raw2)).data],
    [0, 85, 170, 255, 85],
  );
  // 1-bit palette
  const raw1 = Uint8Array.from([0, 0b10100000]);
  const pal = Uint8Array.from([1, 2, 3, 4, 5, 6]);
  assert.deepEqual(
    [...decodePng(assemblePng({ width: 3, height: 1, depth: 1, colorType: 3, interlace: 0 }, raw1, pal)).data],
    [4, 5, 6, 1, 2, 3, 4, 5, 6],
  );
  // Adam7, 8-bit gray 5x6: pass rows written with filter 0 in pass order
  const w = 5;
  const h = 6;
  const px = bytes(50, w * h);
  const passes = [
    [0, 0, 8, 8],
    [4, 0, 8, 8],
    [0, 4, 4, 8],
    [2, 0, 4, 4],
    [0, 2, 2, 4],
    [1, 0, 2, 2],
    [0, 1, 1, 2],
  ];
  const stream: number[] = [];
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((w - x0) / dx);
    const ph = Math.ceil((h - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    for (let y = y0; y < h; y += dy) {
      stream.push(0);
      for (let x = x0; x < w; x += dx) stream.push(px[y * w + x]);
    }
  }
  const inter = decodePng(
    assemblePng({ width: w, height: h, depth: 8, colorType: 0, interlace: 1 }, Uint8Array.from(stream)),
  );
  assert.deepEqual([...inter.data], [...px]);
});

test('corrupt PNG files are rejected with one clear error', () => {
  const png = encodePng(4, 3, bytes(60, 36), { colorType: 2, filter: 'cycle' });
  const badCrc = png.slice();
  badCrc[png.length - 20] ^= 0xff; // inside the last IDAT's data
  assert.throws(() => decodePng(badCrc, 'a.png'), /^Error: a\.png: bad CRC in chunk IDAT/);
  assert.throws(() => decodePng(png.subarray(0, png.length - 15), 'b.png'), /b\.png: truncated: chunk/);
  assert.throws(() => decodePng(png.subarray(0, 40), 'c.png'), /c\.png: truncated/);
  assert.throws(
    () => decodePng(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), 'd.png'),
    /d\.png: not a PNG file \(bad signature\)/,
  );
  assert.throws(
    () =>
      decodePng(assemblePng({ width: 2, height: 2, depth: 8, colorType: 0, interlace: 0 }, new Uint8Array(5)), 'e.png'),
    /e\.png: image data too short/,
  );
  assert.throws(
    () =>
      decodePng(
        assemblePng({ width: 2, height: 1, depth: 8, colorType: 0, interlace: 0 }, Uint8Array.from([7, 1, 2])),
        'f.png',
      ),
    /f\.png: unknown filter type 7/,
  );
  assert.throws(
    () =>
      decodePng(
        assemblePng({ width: 2, height: 1, depth: 16, colorType: 3, interlace: 0 }, new Uint8Array(5)),
        'g.png',
      ),
    /bit depth 16 is not allowed for colour type 3/,
  );
});

test('JPEG decoding through jpeg-js (baseline)', () => {
  const w = 16;
  const h = 8;
  const rgba = new Uint8Array(w * h * 4);
  for (let p = 0; p < w * h; p++) rgba.set([(p * 13) % 256, 128, 255 - ((p * 7) % 256), 255], 4 * p);
  const jpg = new Uint8Array(encodeJpeg({ width: w, height: h, data: rgba }, 95).data);
  const img = decodeJpeg(jpg, 'x.jpg');
  assert.equal(img.width, w);
  assert.equal(img.height, h);
  assert.equal(img.channels, 3);
  let err = 0;
  for (let p = 0; p < w * h; p++) for (let c = 0; c < 3; c++) err += Math.abs(img.data[3 * p + c] - rgba[4 * p + c]);
  assert.ok(err / (w * h * 3) < 12, `mean abs error ${err / (w * h * 3)}`);
  assert.throws(() => decodeJpeg(jpg.subarray(0, 200), 'cut.jpg'), /cut\.jpg: corrupt or unsupported JPEG/);
  assert.throws(() => decodeJpeg(Uint8Array.from([1, 2, 3]), 'y.jpg'), /y\.jpg: not a JPEG file/);
});

test('image folders: classes from sub-folders, flat folders, resizing to one size', () => {
  const rgb = (seed: number, w: number, h: number): Uint8Array =>
    encodePng(w, h, bytes(seed, w * h * 3), { colorType: 2 });
  write('folder/dog/b.png', rgb(70, 6, 5));
  write('folder/dog/a.png', rgb(71, 6, 5));
  write('folder/cat/z.PNG', rgb(72, 6, 5));
  const gray = new Uint8Array(6 * 5 * 4).fill(200);
  write('folder/cat/y.jpg', new Uint8Array(encodeJpeg({ width: 6, height: 5, data: gray }, 90).data));
  writeFileSync(join(dir, 'folder/cat/notes.txt'), 'ignored');
  const ds = loadImageFolder(join(dir, 'folder'));
  assert.equal(ds.n, 4);
  assert.equal(ds.numClasses, 2);
  assert.deepEqual([...ds.labels!], [0, 0, 1, 1]); // cat: y.jpg, z.PNG; dog: a.png, b.png
  assert.equal(ds.channels, 3);
  assert.equal(ds.height, 5);
  assert.equal(ds.width, 6);
  const a = decodePng(readFileSync(join(dir, 'folder/dog/a.png')));
  assert.deepEqual([...ds.images.subarray(2 * 90, 3 * 90)], [...a.data]);
  // the gray JPEG became RGB by replication
  const jpg = ds.images.subarray(0, 90);
  assert.ok(jpg.every((v, i) => Math.abs(v - 200) <= 2 && v === jpg[i - (i % 3)]));

  write('flat/1.png', encodePng(4, 4, bytes(73, 16), { colorType: 0 }));
  write('flat/2.png', encodePng(8, 6, bytes(74, 48), { colorType: 0 }));
  assert.throws(() => loadImageFolder(join(dir, 'flat')), /2\.png: is 8x6, but .*1\.png is 4x4; pass a size/);
  const flat = loadImageFolder(join(dir, 'flat'), { size: 4 });
  assert.equal(flat.labels, null);
  assert.equal(flat.channels, 1);
  assert.equal(flat.n, 2);
  assert.equal(flat.images.length, 2 * 16);
  const stretched = loadImageFolder(join(dir, 'flat'), { height: 3, width: 5, fit: 'stretch', channels: 3 });
  assert.equal(stretched.images.length, 2 * 15 * 3);
  assert.throws(() => loadImageFolder(join(dir, 'no-such')), /no-such: image folder not found/);
  write('mixed/a/1.png', encodePng(2, 2, bytes(75, 4), { colorType: 0 }));
  write('mixed/2.png', encodePng(2, 2, bytes(76, 4), { colorType: 0 }));
  assert.throws(() => loadImageFolder(join(dir, 'mixed')), /both class sub-folders/);
  write('broken/x.png', encodePng(2, 2, bytes(77, 4), { colorType: 0 }).subarray(0, 30));
  assert.throws(() => loadImageFolder(join(dir, 'broken')), /broken\/x\.png: truncated/);
});

test('resize-crop fit: a uniform image stays uniform, a constant gradient stays monotone', () => {
  const img = {
    width: 9,
    height: 6,
    channels: 1 as const,
    data: Uint8Array.from({ length: 54 }, (_, i) => (i % 9) * 20),
  };
  const out = fitImage(img, 4, 4, 'resize-crop');
  assert.equal(out.data.length, 16);
  for (let y = 0; y < 4; y++) for (let x = 1; x < 4; x++) assert.ok(out.data[y * 4 + x] > out.data[y * 4 + x - 1]);
  const flat = fitImage({ ...img, data: new Uint8Array(54).fill(77) }, 5, 3, 'stretch');
  assert.ok(flat.data.every((v) => v === 77));
});

test('checkDataset rejects inconsistent data sets', () => {
  const base: ImageDataset = {
    name: 't',
    n: 2,
    height: 2,
    width: 2,
    channels: 1,
    images: new Uint8Array(8),
    labels: Int32Array.from([0, 1]),
    numClasses: 2,
  };
  checkDataset(base);
  assert.throws(() => checkDataset({ ...base, images: new Uint8Array(7) }), /7 image bytes, expected/);
  assert.throws(
    () => checkDataset({ ...base, labels: Int32Array.from([0, 2]) }),
    /image 1 has label 2, outside 0\.\.1/,
  );
  assert.throws(() => checkDataset({ ...base, labels: Int32Array.from([0]) }), /1 labels for 2 images/);
});

// ---------------------------------------------------------------------------------------------------

test('uniform sampler: reproducible per (seed, epoch), uniform with replacement', () => {
  const s = new UniformSampler(10000, 7);
  const e3 = s.epoch(3);
  assert.deepEqual(e3, new UniformSampler(10000, 7).epoch(3)); // resumable: no state between epochs
  assert.notDeepEqual(e3, s.epoch(4));
  assert.notDeepEqual(e3, new UniformSampler(10000, 8).epoch(3));
  assert.ok(e3.every((i) => i < 10000));
  const seen = new Set(e3).size / 10000; // 1 - 1/e of the images appear in an epoch
  assert.ok(Math.abs(seen - (1 - Math.exp(-1))) < 0.02, `fraction seen ${seen}`);
  const bs = batches(e3, 512);
  assert.equal(bs.length, 20);
  assert.equal(bs[19].length, 10000 - 19 * 512);
  assert.deepEqual(
    bs.map((b) => b.length).reduce((a, b) => a + b),
    10000,
  );
  assert.equal(bs[1][0], e3[512]);
  assert.throws(() => batches(e3, 0), /batchSize must be a positive integer/);
});

test('balanced sampler: equal draws per non-empty cluster, without replacement when large enough', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 300 }), fc.integer(), (k, n, seed) => {
      const rng = new Rng(seed);
      // skewed clusters, some empty
      const labels = Uint32Array.from({ length: n }, () => Math.min(k - 1, Math.floor(k * rng.uniform() ** 2)));
      const out = balancedEpoch(labels, k, n, new Rng(seed + 1));
      assert.equal(out.length, n);
      assert.deepEqual(out, balancedEpoch(labels, k, n, new Rng(seed + 1)));
      const sizes = new Array<number>(k).fill(0);
      for (const l of labels) sizes[l]++;
      const nonEmpty = sizes.filter((s) => s > 0).length;
      const per = Math.floor(n / nonEmpty) + 1;
      const full = balancedEpoch(labels, k, nonEmpty * per - 1, new Rng(seed + 2)); // nearly untruncated
      const drawn = new Array<number>(k).fill(0);
      const perCluster = new Map<number, number[]>();
      for (const i of full) {
        drawn[labels[i]]++;
        perCluster.set(labels[i], [...(perCluster.get(labels[i]) ?? []), i]);
      }
      for (let c = 0; c < k; c++) {
        if (sizes[c] === 0) assert.equal(drawn[c], 0);
        else assert.ok(drawn[c] >= per - 1 && drawn[c] <= per, `cluster ${c}: ${drawn[c]} draws, expected ${per}`);
        if (sizes[c] > per)
          assert.equal(new Set(perCluster.get(c)).size, drawn[c], 'large clusters are drawn without replacement');
      }
    }),
    { numRuns: RUNS * 8 },
  );
  assert.throws(
    () => balancedEpoch(Uint32Array.from([0, 5]), 3, 2, new Rng(1)),
    /label 5 of sample 1 is outside 0\.\.2/,
  );
});
