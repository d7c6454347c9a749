import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, setupGpu, RUNS } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { headDataset, type ImageDataset } from '../src/data/dataset.ts';
import { loadMnistPackage } from '../src/data/mnist-package.ts';
import {
  GpuAugmenter,
  cifarPreset,
  evalGeometry,
  imagenetPreset,
  mnistPreset,
  sampleCrop,
  OP_BRIGHTNESS,
  OP_CONTRAST,
  OP_HUE,
  OP_SATURATION,
  type AugmentConfig,
  type SampleParams,
} from '../src/data/augment.ts';
import { refAugment } from '../src/ref/augment.ts';

// GPU (f32) vs the f64 reference on normalised outputs (std ~0.22, so 1e-4 here is ~2e-5 in [0, 1]
// units: f32 bilinear/HSV arithmetic errors are ~1e-6). Rotation uses nearest-neighbour rounding: output
// pixels whose source coordinate lies within 1e-4 of a .5 boundary are flagged by the reference, and a
// sample with any flagged pixel is skipped (its contrast mean could differ too); the tests assert that
// most samples are compared.
const TOL = { rtol: 1e-5, atol: 1e-4 };

before(async () => {
  await setupGpu();
});

function randomDataset(seed: number, n: number, height: number, width: number, channels: 1 | 3): ImageDataset {
  const rng = new Rng(seed);
  // smooth-ish random images (a gradient plus noise) so interpolation errors show
  const images = new Uint8Array(n * height * width * channels);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
  return { name: `random-${seed}`, n, height, width, channels, images, labels: null, numClasses: null };
}

function identity(geometry: SampleParams['geometry']): SampleParams {
  return {
    geometry,
    flip: false,
    angle: 0,
    brightness: 1,
    contrast: 1,
    saturation: 1,
    hue: 0,
    order: [],
    grayscale: false,
  };
}

/** Compares the GPU batch with the reference; returns how many samples were compared. */
async function compare(
  aug: GpuAugmenter,
  ds: ImageDataset,
  cfg: AugmentConfig,
  indices: Uint32Array,
  samples: SampleParams[],
  what: string,
): Promise<number> {
  const out = aug.augmentWith(indices, samples);
  assert.deepEqual(out.shape, [indices.length, cfg.outHeight, cfg.outWidth, ds.channels]);
  const got = await out.data();
  out.dispose();
  const ref = refAugment(ds, indices, samples, cfg.outHeight, cfg.outWidth, cfg.mean, cfg.std);
  const pix = cfg.outHeight * cfg.outWidth;
  const per = pix * ds.channels;
  let compared = 0;
  for (let b = 0; b < indices.length; b++) {
    if (ref.ambiguous.subarray(b * pix, (b + 1) * pix).some((v) => v !== 0)) continue;
    compared++;
    assertClose(
      got.subarray(b * per, (b + 1) * per),
      ref.data.subarray(b * per, (b + 1) * per),
      TOL,
      `${what}, sample ${b} ${JSON.stringify(samples[b])}`,
    );
  }
  return compared;
}

test('each transform alone matches the f64 reference (RGB, non-square, fixed parameters)', async () => {
  const ds = randomDataset(1, 3, 11, 13, 3);
  const cfg = cifarPreset({ outHeight: 9, outWidth: 10, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
  const aug = new GpuAugmenter(ds, cfg);
  const crop = { kind: 'crop' as const, top: 2, left: 3, height: 7, width: 9 };
  const cases: Array<[string, SampleParams]> = [
    ['whole image resized', identity({ kind: 'crop', top: 0, left: 0, height: 11, width: 13 })],
    ['crop upscaled', identity(crop)],
    ['crop downscaled', identity({ kind: 'crop', top: 0, left: 1, height: 11, width: 12 })],
    ['eval resize + center crop', identity(evalGeometry(11, 13, { ...cfg, evalResize: 12 }))],
    ['flip', { ...identity(crop), flip: true }],
    ['rotation 17.3 deg', { ...identity(crop), angle: 17.3 }],
    ['rotation -33 deg + flip', { ...identity(crop), angle: -33, flip: true }],
    ['brightness', { ...identity(crop), brightness: 1.3, order: [OP_BRIGHTNESS] }],
    ['contrast', { ...identity(crop), contrast: 0.6, order: [OP_CONTRAST] }],
    ['saturation', { ...identity(crop), saturation: 1.8, order: [OP_SATURATION] }],
    ['hue +0.3', { ...identity(crop), hue: 0.3, order: [OP_HUE] }],
    ['hue -0.45', { ...identity(crop), hue: -0.45, order: [OP_HUE] }],
    ['grayscale', { ...identity(crop), grayscale: true }],
    [
      'all, hue before contrast',
      {
        ...identity(crop),
        angle: 5,
        brightness: 0.7,
        contrast: 1.4,
        saturation: 0.2,
        hue: 0.1,
        order: [OP_HUE, OP_BRIGHTNESS, OP_CONTRAST, OP_SATURATION],
        grayscale: true,
      },
    ],
  ];
  for (const [what, s] of cases) {
    const samples = [s, { ...s }, { ...s }];
    const compared = await compare(aug, ds, cfg, Uint32Array.from([2, 0, 1]), samples, what);
    assert.equal(compared, 3, `${what}: a rotation tie in a fixed case; pick another angle`);
  }
  aug.dispose();
});

test('random parameters (spec 3.1 preset, larger rotations) match the reference, RGB and gray', async () => {
  const rgb = randomDataset(2, 5, 12, 10, 3);
  const gray = randomDataset(3, 5, 9, 9, 1);
  const cfgRgb = cifarPreset({ outHeight: 8, outWidth: 11, rotationDeg: 40 });
  const cfgGray = mnistPreset({
    outHeight: 9,
    outWidth: 7,
    rotationDeg: 40,
    jitter: { brightness: 0.4, contrast: 0.4, saturation: 0.5, hue: 0.2 },
  });
  const augRgb = new GpuAugmenter(rgb, cfgRgb);
  const augGray = new GpuAugmenter(gray, cfgGray);
  let compared = 0;
  let total = 0;
  await fc.assert(
    fc.asyncProperty(fc.integer(), fc.boolean(), async (seed, useGray) => {
      const [aug, ds, cfg] = useGray ? [augGray, gray, cfgGray] : [augRgb, rgb, cfgRgb];
      const rng = new Rng(seed);
      const indices = Uint32Array.from({ length: 6 }, () => rng.int(ds.n));
      const samples = aug.sample(6, rng);
      compared += await compare(aug, ds, cfg, indices, samples, `seed ${seed}`);
      total += 6;
    }),
    { numRuns: RUNS },
  );
  assert.ok(compared >= total * 0.6, `only ${compared} of ${total} samples free of rotation ties`);
  augRgb.dispose();
  augGray.dispose();
});

test('extract: eval resize + center crop + normalise matches the reference', async () => {
  const ds = randomDataset(4, 4, 10, 14, 3);
  const cfg = imagenetPreset({ outHeight: 8, outWidth: 8, evalResize: 9 });
  const aug = new GpuAugmenter(ds, cfg);
  const indices = Uint32Array.from([3, 1, 1, 0]);
  const out = aug.extract(indices);
  const got = await out.data();
  out.dispose();
  const g = evalGeometry(10, 14, cfg);
  assert.deepEqual(g, { kind: 'resize-crop', height: 9, width: 12, top: 0, left: 2 });
  const ref = refAugment(
    ds,
    indices,
    indices.length ? Array.from(indices, () => identity(g)) : [],
    8,
    8,
    cfg.mean,
    cfg.std,
  );
  assertClose(got, ref.data, TOL, 'extract');
  // eval at the native size is the identity up to normalisation
  const same = new GpuAugmenter(ds, imagenetPreset({ outHeight: 10, outWidth: 10, evalResize: 10 }));
  const t = same.extract(Uint32Array.from([2]));
  const v = await t.data();
  t.dispose();
  const expected = Array.from({ length: 300 }, (_, i) => {
    const y = Math.floor(i / 30);
    const x = Math.floor((i % 30) / 3) + 2; // center crop of the 14-wide image
    const c = i % 3;
    return (ds.images[2 * 420 + (y * 14 + x) * 3 + c] / 255 - [0.485, 0.456, 0.406][c]) / [0.229, 0.224, 0.225][c];
  });
  assertClose(v, expected, TOL, 'native-size extract');
  aug.dispose();
  same.dispose();
});

test('images split over several buffers give the same batches; tensor indices work; no leaks', async () => {
  const base = gpu().pool.liveCount;
  const ds = randomDataset(5, 11, 6, 5, 3);
  const cfg = cifarPreset({ outHeight: 6, outWidth: 6 });
  const one = new GpuAugmenter(ds, cfg);
  const many = new GpuAugmenter(ds, cfg, { maxShardBytes: 4 * 90 + 3 }); // 4 images per buffer -> 3 buffers
  assert.equal(many.perShard, 4);
  const indices = Uint32Array.from([10, 0, 4, 3, 8, 7, 10, 1]);
  const a = one.augment(indices, new Rng(11));
  const b = many.augment(indices, new Rng(11));
  const idxTensor = Tensor.from(indices, [indices.length], 'u32');
  const c = many.augment(idxTensor, new Rng(11));
  const [va, vb, vc] = [await a.data(), await b.data(), await c.data()];
  assert.deepEqual(vb, va);
  assert.deepEqual(vc, va);
  const d = one.augment(indices, new Rng(12));
  assert.notDeepEqual(await d.data(), va, 'another seed gives another batch');
  // an out-of-range index in a GPU tensor yields NaN; in a host array it throws
  const bad = Tensor.from([1, 99], [2], 'u32');
  const e = many.augment(bad, new Rng(1));
  const ve = await e.data();
  assert.ok(ve.subarray(0, 108).every(Number.isFinite) && ve.subarray(108).every(Number.isNaN));
  assert.throws(
    () => one.augment(Uint32Array.from([11]), new Rng(1)),
    /index 11 at position 0 is outside data set "random-5" of 11 images/,
  );
  assert.throws(() => new GpuAugmenter(ds, cfg, { maxShardBytes: 10 }), /larger than a GPU buffer binding/);
  // more than 8 buffers' worth of images: batches stream from host memory instead, with the same values
  const streamed = new GpuAugmenter(ds, cfg, { maxShardBytes: 92 }); // 1 image per buffer -> 11 buffers
  assert.equal(streamed.streaming, true);
  const forced = new GpuAugmenter(ds, cfg, { stream: true });
  const [s1, r1, s8] = [
    streamed.augment(indices.subarray(0, 1), new Rng(11)),
    one.augment(indices.subarray(0, 1), new Rng(11)),
    forced.augment(indices, new Rng(11)),
  ];
  assert.deepEqual(await s1.data(), await r1.data());
  assert.deepEqual(await s8.data(), va);
  for (const t of [s1, r1, s8]) t.dispose();
  streamed.dispose();
  forced.dispose();
  assert.throws(
    () => one.augmentWith(Uint32Array.from([0]), [identity({ kind: 'crop', top: 1, left: 0, height: 6, width: 5 })]),
    /sample 0: geometry .* does not fit a 5x6 image/,
  );
  const empty = one.augment(new Uint32Array(0), new Rng(1));
  assert.deepEqual(empty.shape, [0, 6, 6, 3]);
  for (const t of [a, b, c, d, e, idxTensor, bad, empty]) t.dispose();
  one.dispose();
  many.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('mnist preset on the mnist package: shapes, value range, and the reference', async () => {
  const ds = headDataset(loadMnistPackage(), 50);
  const cfg = mnistPreset();
  const aug = new GpuAugmenter(ds, cfg);
  const rng = new Rng(3);
  const indices = Uint32Array.from({ length: 16 }, () => rng.int(ds.n));
  const samples = aug.sample(16, rng);
  assert.ok(
    samples.every(
      (s) => !s.flip && Math.abs(s.angle) <= 10 && s.order.every((op) => op === OP_BRIGHTNESS || op === OP_CONTRAST),
    ),
  );
  const compared = await compare(aug, ds, cfg, indices, samples, 'mnist');
  assert.ok(compared >= 8, `${compared} of 16 compared`);
  const x = aug.extract(indices);
  const v = await x.data();
  x.dispose();
  const lo = (0 - 0.1307) / 0.3081;
  const hi = (1 - 0.1307) / 0.3081;
  assert.ok(v.every((t) => t >= lo - 1e-5 && t <= hi + 1e-5));
  aug.dispose();
});

test('RandomResizedCrop parameters: inside the image, area and ratio in range, center-crop fallback', () => {
  fc.assert(
    fc.property(fc.integer({ min: 4, max: 300 }), fc.integer({ min: 4, max: 300 }), fc.integer(), (h, w, seed) => {
      const rng = new Rng(seed);
      const g = sampleCrop(rng, h, w, { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] });
      assert.equal(g.kind, 'crop');
      if (g.kind !== 'crop') return;
      assert.ok(
        g.top >= 0 && g.left >= 0 && g.height >= 1 && g.width >= 1 && g.top + g.height <= h && g.left + g.width <= w,
        JSON.stringify(g),
      );
    }),
    { numRuns: RUNS * 20 },
  );
  // in range on a large image (rounding is negligible there)
  const rng = new Rng(5);
  for (let i = 0; i < 200; i++) {
    const g = sampleCrop(rng, 1000, 1000, { scale: [0.2, 0.5], ratio: [0.5, 2] });
    if (g.kind !== 'crop') continue;
    const area = (g.height * g.width) / 1e6;
    assert.ok(area > 0.19 && area < 0.51, `area ${area}`);
    assert.ok(g.width / g.height > 0.49 && g.width / g.height < 2.02, `ratio ${g.width / g.height}`);
  }
  // impossible ratio on a square image: 10 failed attempts, then the widest crop with the nearest ratio
  assert.deepEqual(sampleCrop(new Rng(1), 30, 30, { scale: [1, 1], ratio: [2, 3] }), {
    kind: 'crop',
    top: 7,
    left: 0,
    height: 15,
    width: 30,
  });
});

test('presets follow spec 3.1', () => {
  const p = imagenetPreset();
  assert.equal(p.outHeight, 224);
  assert.deepEqual(p.crop, { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] });
  assert.equal(p.flipP, 0.5);
  assert.equal(p.rotationDeg, 2);
  assert.deepEqual(p.jitter, { brightness: 0.4, contrast: 0.4, saturation: 1.0, hue: 0.5 });
  assert.equal(p.grayscaleP, 0.2);
  assert.deepEqual(evalGeometry(300, 400, p), { kind: 'resize-crop', height: 256, width: 341, top: 16, left: 58 });
  const c = cifarPreset();
  assert.equal(c.outHeight, 32);
  assert.equal(c.outWidth, 32);
  const samples = new GpuAugmenter(randomDataset(9, 1, 32, 32, 3), c);
  const s = samples.sample(500, new Rng(4));
  const flips = s.filter((x) => x.flip).length / 500;
  const grays = s.filter((x) => x.grayscale).length / 500;
  assert.ok(Math.abs(flips - 0.5) < 0.07 && Math.abs(grays - 0.2) < 0.06, `flip ${flips}, gray ${grays}`);
  assert.ok(
    s.every(
      (x) =>
        x.order.length === 4 &&
        new Set(x.order).size === 4 &&
        Math.abs(x.angle) <= 2 &&
        x.saturation >= 0 &&
        x.saturation <= 2 &&
        Math.abs(x.hue) <= 0.5,
    ),
  );
  samples.dispose();
});

test('augment draws what sample() draws: the same batch bits and generator state as augmentWith(sample(...)), batch after batch', async () => {
  const rgb = randomDataset(7, 9, 12, 10, 3);
  const gray = randomDataset(8, 9, 9, 9, 1);
  const configs: Array<[string, ImageDataset, AugmentConfig]> = [
    ['imagenet', rgb, imagenetPreset({ outHeight: 8, outWidth: 8, rotationDeg: 30 })],
    ['cifar', rgb, cifarPreset({ outHeight: 6, outWidth: 7 })],
    ['mnist', gray, mnistPreset({ outHeight: 9, outWidth: 9 })],
    ['eval geometry in training', rgb, cifarPreset({ outHeight: 8, outWidth: 8, crop: null, evalResize: 9 })],
    ['no jitter', gray, mnistPreset({ outHeight: 5, outWidth: 5, jitter: null, flipP: 0.5 })],
  ];
  for (const [name, ds, cfg] of configs) {
    const aug = new GpuAugmenter(ds, cfg);
    const fast = new Rng(21);
    const objects = new Rng(21);
    // batch sizes change, so the reused parameter block is regrown and reused
    for (const size of [5, 3, 5, 5]) {
      const indices = Uint32Array.from({ length: size }, (_, i) => (i * 4 + size) % ds.n);
      const a = aug.augment(indices, fast);
      const b = aug.augmentWith(indices, aug.sample(size, objects));
      const [va, vb] = [await a.data(), await b.data()];
      a.dispose();
      b.dispose();
      assert.deepEqual(
        new Uint32Array(va.buffer),
        new Uint32Array(vb.buffer),
        `${name}, batch of ${size}: batches differ`,
      );
      assert.deepEqual(fast.state(), objects.state(), `${name}, batch of ${size}: generator states differ`);
    }
    aug.dispose();
  }
});
