import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomInts, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refWeightedCrossEntropy, refWeightedCrossEntropyGrad } from '../src/ref/loss.ts';
import { finiteDifference, refArray } from '../src/ref/array.ts';

// Forward: the loss is ~log K <= 3 and comes from f32 exp/log (WGSL allows a few ulp) summed over
// K <= 40 classes and B <= 12 rows, so errors stay near 1e-6 relative; 2e-5 leaves headroom.
const LOSS_TOL = { rtol: 2e-5, atol: 2e-6 };
// Gradient entries are coef * (softmax - onehot), |.| <= 1; softmax carries f32 exp error (~1e-6
// relative) and the weighted chunk sum adds a few ulp: 1e-4 relative plus 1e-6 absolute for tiny ones.
const GRAD_TOL = { rtol: 1e-4, atol: 1e-6 };

before(async () => {
  await setupGpu();
});

function randomWeights(seed: number, k: number): number[] {
  // f32-representable positive weights, including tiny ones (ODC's are ~n_c^-0.5 normalised to sum 1)
  return Array.from(Float32Array.from(randomValues(seed, k, 0.01, 2)));
}

const caseArb = fc.record({
  b: fc.integer({ min: 1, max: 12 }),
  k: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constantFrom(3, 7, 65, 129)),
  chunks: fc.integer({ min: 1, max: 5 }),
  weighted: fc.boolean(),
  seed: fc.integer(),
  gOut: fc.constantFrom(1, 2.5, -0.75),
});

test('the reference gradient equals finite differences of the reference loss', () => {
  fc.assert(
    fc.property(caseArb, ({ b, k, chunks, weighted, seed, gOut }) => {
      const x = refArray([b, k], randomValues(seed, b * k, -3, 3));
      const labels = randomInts(seed + 1, b, k);
      const w = weighted ? randomWeights(seed + 2, k) : null;
      const analytic = refWeightedCrossEntropyGrad(x, labels, w, chunks, gOut);
      const numeric = finiteDifference((v) => gOut * refWeightedCrossEntropy(v, labels, w, chunks), x);
      assertClose(analytic.data, numeric.data, { rtol: 1e-5, atol: 1e-7 }, 'reference vs finite differences');
    }),
    { numRuns: 50 },
  );
});

test('reference: chunks average per-chunk weighted means (torch.chunk split)', () => {
  // 5 rows in 2 chunks -> rows [0,3) and [3,5)
  const x = refArray([5, 2], [0, 1, 2, 0, 0, 0, 1, 1, 3, -1]);
  const labels = [0, 1, 0, 1, 0];
  const w = [1, 3];
  const ce = (i: number) => {
    const r = [x.data[2 * i], x.data[2 * i + 1]];
    return Math.log(Math.exp(r[0]) + Math.exp(r[1])) - r[labels[i]];
  };
  const l1 = (1 * ce(0) + 3 * ce(1) + 1 * ce(2)) / 5;
  const l2 = (3 * ce(3) + 1 * ce(4)) / 4;
  assert.ok(Math.abs(refWeightedCrossEntropy(x, labels, w, 2) - (l1 + l2) / 2) < 1e-12);
  // 3 chunks of a 4-row batch: size ceil(4/3) = 2, so only 2 non-empty chunks
  const l4 = refWeightedCrossEntropy(refArray([4, 2], x.data.slice(0, 8)), labels.slice(0, 4), w, 3);
  const l4b = refWeightedCrossEntropy(refArray([4, 2], x.data.slice(0, 8)), labels.slice(0, 4), w, 2);
  assert.ok(Math.abs(l4 - l4b) < 1e-12);
});

test('GPU loss and logits gradient match the f64 reference (B = 1, odd K, several chunks)', async () => {
  await fc.assert(
    fc.asyncProperty(caseArb, async ({ b, k, chunks, weighted, seed, gOut }) => {
      const x = randomPair(seed, [b, k], -3, 3);
      const labels = randomInts(seed + 1, b, k);
      const w = weighted ? randomWeights(seed + 2, k) : null;
      const yT = Tensor.from(labels, [b], 'u32');
      const wT = w ? Tensor.from(w, [k]) : null;
      const gT = Tensor.from([gOut], [1]);
      x.gpu.requiresGrad = true;
      const loss = weightedCrossEntropy(x.gpu, yT, wT, { chunks });
      const value = await loss.data();
      backward(loss, gT);
      assertClose(value, [refWeightedCrossEntropy(x.ref, labels, w, chunks)], LOSS_TOL, 'loss');
      assertClose(
        await x.gpu.grad!.data(),
        refWeightedCrossEntropyGrad(x.ref, labels, w, chunks, gOut).data,
        GRAD_TOL,
        'grad',
      );
      for (const t of [loss, x.gpu.grad!, x.gpu, yT, gT]) t.dispose();
      wT?.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('the loss is invariant to scaling the class weights (ODC invariant 13)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 10 }),
      fc.integer({ min: 2, max: 20 }),
      fc.integer({ min: 1, max: 3 }),
      fc.integer(),
      fc.constantFrom(1e-4, 0.5, 8, 1000),
      async (b, k, chunks, seed, c) => {
        const x = randomPair(seed, [b, k], -2, 2);
        const y = Tensor.from(randomInts(seed + 1, b, k), [b], 'u32');
        const w = randomWeights(seed + 2, k);
        const w1 = Tensor.from(w, [k]);
        const w2 = Tensor.from(
          w.map((v) => v * c),
          [k],
        );
        const [l1, l2] = tidy(() => [
          weightedCrossEntropy(x.gpu, y, w1, { chunks }),
          weightedCrossEntropy(x.gpu, y, w2, { chunks }),
        ]);
        const [a, bb] = [(await l1.data())[0], (await l2.data())[0]];
        assert.ok(
          Math.abs(a - bb) <= 1e-5 * Math.max(1, Math.abs(a)),
          `loss ${a} vs ${bb} with weights scaled by ${c}`,
        );
        for (const t of [x.gpu, y, w1, w2, l1, l2]) t.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('stable for large logits, and wide rows (K > workgroup size) match the reference', async () => {
  const b = 3;
  const k = 301;
  const x = randomPair(5, [b, k], -200, 200);
  const labels = [0, 150, 300];
  const y = Tensor.from(labels, [b], 'u32');
  x.gpu.requiresGrad = true;
  const loss = weightedCrossEntropy(x.gpu, y, null);
  const value = await loss.data();
  backward(loss);
  assert.ok(Number.isFinite(value[0]));
  // CE ~ 400 here: the f32 result of logsumexp - x_y is good to ~1e-7 relative of 200
  assertClose(value, [refWeightedCrossEntropy(x.ref, labels, null)], { rtol: 1e-5, atol: 1e-4 }, 'loss');
  assertClose(await x.gpu.grad!.data(), refWeightedCrossEntropyGrad(x.ref, labels, null).data, GRAD_TOL, 'grad');
  for (const t of [loss, x.gpu.grad!, x.gpu, y]) t.dispose();
});

test('ODC batch: 16 rows in 4 chunks with duplicate labels; repeated runs are bit-identical', async () => {
  const b = 16;
  const k = 7;
  const x = randomPair(9, [b, k]);
  const labels = randomInts(10, b, 3); // only classes 0..2
  const w = randomWeights(11, k);
  const y = Tensor.from(labels, [b], 'u32');
  const wT = Tensor.from(w, [k]);
  const l1 = weightedCrossEntropy(x.gpu, y, wT, { chunks: 4 });
  const l2 = weightedCrossEntropy(x.gpu, y, wT, { chunks: 4 });
  const [a, c] = [await l1.data(), await l2.data()];
  assert.equal(a[0], c[0]);
  assertClose(a, [refWeightedCrossEntropy(x.ref, labels, w, 4)], LOSS_TOL, 'loss');
  for (const t of [x.gpu, y, wT, l1, l2]) t.dispose();
});

test('an out-of-range label gives a NaN loss and gradient row without reading out of bounds', async () => {
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  x.requiresGrad = true;
  const y = Tensor.from([1, 7], [2], 'u32');
  const w = Tensor.from([1, 1, 1], [3]);
  const loss = weightedCrossEntropy(x, y, w);
  assert.ok(Number.isNaN((await loss.data())[0]));
  backward(loss);
  const g = await x.grad!.data();
  assert.ok(
    g.slice(3).every((v) => Number.isNaN(v)),
    'row with the bad label',
  );
  for (const t of [loss, x.grad!, x, y, w]) t.dispose();
});

test('no buffer is leaked by forward and backward', async () => {
  const base = gpu().pool.liveCount;
  const x = Tensor.from([0.1, -0.2, 0.3, 0.4, 0.5, -0.6], [2, 3]);
  x.requiresGrad = true;
  const y = Tensor.from([2, 0], [2], 'u32');
  const w = Tensor.from([0.2, 0.3, 0.5], [3]);
  tidy(() => backward(weightedCrossEntropy(x, y, w, { chunks: 2 })));
  tidy(() => backward(weightedCrossEntropy(x, y, null)));
  await x.grad!.data();
  for (const t of [x.grad!, x, y, w]) t.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('rejects bad shapes and dtypes with clear errors', () => {
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  const y = Tensor.from([0, 1], [2], 'u32');
  const yf = Tensor.from([0, 1], [2]);
  const y3 = Tensor.from([0, 1, 2], [3], 'u32');
  const w2 = Tensor.from([1, 1], [2]);
  const x1 = Tensor.from([1, 2, 3], [3]);
  assert.throws(
    () => weightedCrossEntropy(x, yf as unknown as Tensor<'u32'>, null),
    /labels: expected a u32 tensor, got f32/,
  );
  assert.throws(() => weightedCrossEntropy(x, y3, null), /labels must be \[2\].*got \[3\]/);
  assert.throws(() => weightedCrossEntropy(x, y, w2), /classWeights must be \[3\].*got \[2\]/);
  assert.throws(() => weightedCrossEntropy(x1, y, null), /logits must be \[B, K\], got \[3\]/);
  assert.throws(() => weightedCrossEntropy(x, y, null, { chunks: 0 }), /chunks must be a positive integer/);
  assert.throws(
    () => weightedCrossEntropy(x, y, y as unknown as Tensor<'f32'>),
    /classWeights: expected a f32 tensor, got u32/,
  );
  for (const t of [x, y, yf, y3, w2, x1]) t.dispose();
});
