import { test, before } from 'node:test';
import { assert, assertClose, setupGpu } from './helpers.ts';
import { featureMoments, linearProbe, standardizeFeatures } from '../src/eval/linear-probe.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { Rng } from '../src/util/rng.ts';

before(async () => {
  await setupGpu();
});

/**
 * Gaussian blobs in D dims with per-dimension offsets and scales (so standardisation matters):
 * x[i, j] = offset[j] + scale[j] * (centre[y_i, j] + noise * N(0, 1)).
 */
function blobs(
  rng: Rng,
  centres: Float64Array,
  n: number,
  d: number,
  numClasses: number,
  noise: number,
): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(numClasses);
    for (let j = 0; j < d; j++)
      x[i * d + j] = 3 * j - 10 + (1 + (j % 5)) * (centres[y[i] * d + j] + noise * rng.normal());
  }
  return { x, y };
}

function dataset(seed: number, ntr: number, nte: number, d: number, numClasses: number, noise: number) {
  const rng = new Rng(seed);
  const centres = Float64Array.from({ length: numClasses * d }, () => rng.normal());
  return {
    train: blobs(rng, centres, ntr, d, numClasses, noise),
    test: blobs(rng, centres, nte, d, numClasses, noise),
  };
}

const OPTS = { epochs: 15, lr: 0.1, batchSize: 64, weightDecay: 1e-4, seed: 7 };

test('featureMoments / standardizeFeatures match the float64 column statistics', async () => {
  const n = 300;
  const d = 70; // more than one 64-wide workgroup of columns
  const rng = new Rng(1);
  const host = Float32Array.from({ length: n * d }, (_, i) => 100 + (i % d) + (1 + (i % 3)) * rng.normal());
  for (let i = 0; i < n; i++) host[i * d + 5] = 42; // a constant column keeps scale 1
  const x = Tensor.from(host, [n, d]);
  const m = featureMoments(x);
  const s = standardizeFeatures(x, m);
  const mean = new Float64Array(d);
  const inv = new Float64Array(d);
  for (let j = 0; j < d; j++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += host[i * d + j];
    mean[j] = sum / n;
    let q = 0;
    for (let i = 0; i < n; i++) q += (host[i * d + j] - mean[j]) ** 2;
    inv[j] = q === 0 ? 1 : 1 / Math.sqrt(q / n);
  }
  const got = await m.data();
  assertClose(got.subarray(0, d), mean, { rtol: 1e-5, atol: 0 }, 'means');
  assertClose(got.subarray(d), inv, { rtol: 1e-3, atol: 0 }, 'reciprocal stds');
  const expected = Float64Array.from(host, (v, i) => (v - mean[i % d]) * inv[i % d]);
  assertClose(await s.data(), expected, { rtol: 1e-3, atol: 2e-3 }, 'standardised');
  for (const t of [x, m, s]) t.dispose();
});

test('linear probe separates Gaussian blobs (high accuracy, falling loss, no leaks, deterministic)', async () => {
  const base = gpu().pool.liveCount;
  const d = 24;
  const numClasses = 5;
  const { train, test: held } = dataset(3, 500, 250, d, numClasses, 0.6);
  const trX = Tensor.from(train.x, [500, d]);
  const teX = Tensor.from(held.x, [250, d]);
  const epochLosses: number[] = [];
  const res = await linearProbe(trX, train.y, teX, held.y, {
    ...OPTS,
    numClasses,
    onEpoch: (_, l) => epochLosses.push(l),
  });
  assert.ok(res.trainAccuracy > 0.95, `train accuracy ${res.trainAccuracy}`);
  assert.ok(res.testAccuracy > 0.93, `test accuracy ${res.testAccuracy}`);
  assert.equal(res.losses.length, OPTS.epochs);
  assert.deepEqual(res.losses, epochLosses);
  assert.ok(
    res.losses[0] > res.losses[res.losses.length - 1] * 2,
    `loss should fall: ${res.losses.map((l) => l.toFixed(3)).join(' ')}`,
  );
  assert.ok(
    res.losses[0] < Math.log(numClasses),
    'the first epoch starts at log(C) (small initial weights) and goes down',
  );
  assert.ok(res.losses[res.losses.length - 1] < 0.2, `final loss ${res.losses[res.losses.length - 1]}`);
  const again = await linearProbe(trX, train.y, teX, held.y, { ...OPTS, numClasses });
  assert.deepEqual(again.losses, res.losses, 'same seed, same run');
  assert.deepEqual(again.testPredictions, res.testPredictions);
  trX.dispose();
  teX.dispose();
  assert.equal(gpu().pool.liveCount, base, 'linearProbe leaked buffers');
});

test('random-label control stays near chance on held-out data', async () => {
  const d = 24;
  const numClasses = 5;
  const { train, test: held } = dataset(4, 500, 400, d, numClasses, 0.6);
  const rng = new Rng(99);
  const randTrain = Int32Array.from(train.y, () => rng.int(numClasses));
  const randTest = Int32Array.from(held.y, () => rng.int(numClasses));
  const trX = Tensor.from(train.x, [500, d]);
  const teX = Tensor.from(held.x, [400, d]);
  const res = await linearProbe(trX, randTrain, teX, randTest, { ...OPTS, numClasses });
  // chance is 0.2; 400 test samples give a standard error of 0.02
  assert.ok(res.testAccuracy < 0.3, `test accuracy on random labels ${res.testAccuracy}`);
  assert.ok(
    res.trainAccuracy < 0.5,
    `a linear model cannot memorise 500 random labels in 24 dims: ${res.trainAccuracy}`,
  );
  trX.dispose();
  teX.dispose();
});

test('linearProbe rejects bad inputs with clear errors', async () => {
  const a = Tensor.from(new Float32Array(12), [4, 3]);
  const b = Tensor.from(new Float32Array(8), [4, 2]);
  const y = Int32Array.from([0, 1, 0, 1]);
  await assert.rejects(linearProbe(a, y, b, y, { ...OPTS, numClasses: 2 }), /differ in dimension/);
  await assert.rejects(linearProbe(a, y, a, y, { ...OPTS, numClasses: 1 }), /numClasses = 1/);
  await assert.rejects(
    linearProbe(a, Int32Array.from([0, 1, 2, 0]), a, y, { ...OPTS, numClasses: 2 }),
    /train labels\[2\] = 2 is outside 0\.\.1/,
  );
  await assert.rejects(
    linearProbe(a, y.subarray(1), a, y, { ...OPTS, numClasses: 2 }),
    /3 train labels for 4 feature rows/,
  );
  a.dispose();
  b.dispose();
});
