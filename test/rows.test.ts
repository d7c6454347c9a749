import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomInts, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { argmaxRows, countEqual, gatherRows, normalizeRows, scatterRows } from '../src/ops/rows.ts';
import { flatten, reshape } from '../src/ops/shape.ts';
import { sum } from '../src/ops/reduce.ts';
import { mul } from '../src/ops/elementwise.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { Rng } from '../src/util/rng.ts';
import {
  refArgmaxRows,
  refCountEqual,
  refGatherRows,
  refGatherRowsBackward,
  refL2NormalizeRows,
  refL2NormalizeRowsBackward,
  refScatterRows,
} from '../src/ref/rows.ts';
import { finiteDifference, refArray, refDot } from '../src/ref/array.ts';

// Normalisation: a sum of D <= 70 squares in f32 then sqrt and a divide: a few ulp of 1, so 1e-5.
const NORM_TOL = { rtol: 1e-5, atol: 1e-6 };
// Its gradient subtracts two terms of size ~|g|/||x||: allow 1e-4 relative, 1e-5 absolute.
const NORM_GRAD_TOL = { rtol: 1e-4, atol: 1e-5 };
// Gather is a copy; its gradient adds at most B <= 12 rows of f32 values in [-1, 1).
const GATHER_GRAD_TOL = { rtol: 1e-6, atol: 1e-6 };

before(async () => {
  await setupGpu();
});

const matArb = fc.record({
  b: fc.integer({ min: 1, max: 12 }),
  d: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constantFrom(64, 65, 70)),
  seed: fc.integer(),
});

test('reference L2-normalisation gradient equals finite differences', () => {
  fc.assert(
    fc.property(matArb, ({ b, d, seed }) => {
      const x = refArray([b, d], randomValues(seed, b * d, -2, 2));
      const g = refArray([b, d], randomValues(seed + 1, b * d));
      const numeric = finiteDifference((v) => refDot(g, refL2NormalizeRows(v)), x);
      assertClose(
        refL2NormalizeRowsBackward(g, x).data,
        numeric.data,
        { rtol: 1e-5, atol: 1e-6 },
        'reference vs finite differences',
      );
    }),
    { numRuns: 40 },
  );
});

test('normalizeRows forward and gradient match the reference', async () => {
  await fc.assert(
    fc.asyncProperty(matArb, async ({ b, d, seed }) => {
      const x = randomPair(seed, [b, d], -2, 2);
      const g = randomPair(seed + 1, [b, d]);
      x.gpu.requiresGrad = true;
      const y = normalizeRows(x.gpu, { epsilon: 'add' });
      assertClose(await y.data(), refL2NormalizeRows(x.ref).data, NORM_TOL, 'forward');
      backward(y, g.gpu);
      assertClose(await x.gpu.grad!.data(), refL2NormalizeRowsBackward(g.ref, x.ref).data, NORM_GRAD_TOL, 'grad');
      for (const t of [y, x.gpu.grad!, x.gpu, g.gpu]) t.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('normalizeRows keeps an all-zero row zero (ODC invariant 2), gradient g/eps there', async () => {
  const x = Tensor.from([0, 0, 0, 3, 4, 0], [2, 3]);
  x.requiresGrad = true;
  const y = normalizeRows(x, { epsilon: 'add', eps: 1e-3 });
  assertClose(await y.data(), refL2NormalizeRows(refArray([2, 3], [0, 0, 0, 3, 4, 0]), 1e-3).data, NORM_TOL, 'forward');
  const g = Tensor.from([1, -2, 0.5, 1, 1, 1], [2, 3]);
  backward(y, g);
  const expected = refL2NormalizeRowsBackward(
    refArray([2, 3], [1, -2, 0.5, 1, 1, 1]),
    refArray([2, 3], [0, 0, 0, 3, 4, 0]),
    1e-3,
  );
  assertClose(await x.grad!.data(), expected.data, NORM_GRAD_TOL, 'grad');
  assertClose((await x.grad!.data()).slice(0, 3), [1000, -2000, 500], { rtol: 1e-6, atol: 0 }, 'zero row: g / eps');
  for (const t of [x, x.grad!, y, g]) t.dispose();
});

test('argmaxRows: first maximum on ties, NaN wins, matches the reference', async () => {
  await fc.assert(
    fc.asyncProperty(matArb, fc.boolean(), async ({ b, d, seed }, withNaN) => {
      // few distinct values so ties are common
      const rng = new Rng(seed);
      const values = Array.from({ length: b * d }, () =>
        withNaN && rng.uniform() < 0.05 ? Number.NaN : rng.int(4) - 2,
      );
      const x = Tensor.from(values, [b, d]);
      const out = argmaxRows(x);
      assert.deepEqual([...(await out.data())], refArgmaxRows(refArray([b, d], values)));
      x.dispose();
      out.dispose();
    }),
    { numRuns: RUNS },
  );
  const x = Tensor.from(
    [1, Number.NaN, 5, Number.NaN, -0, 0, 0, -1, -Infinity, -Infinity, -Infinity, -Infinity],
    [3, 4],
  );
  const out = argmaxRows(x);
  assert.deepEqual([...(await out.data())], [1, 0, 0]);
  x.dispose();
  out.dispose();
});

test('gatherRows forward and deterministic scatter-add gradient match the reference', async () => {
  await fc.assert(
    fc.asyncProperty(matArb, fc.integer({ min: 1, max: 6 }), async ({ b, d, seed }, n) => {
      const x = randomPair(seed, [n, d]);
      const g = randomPair(seed + 1, [b, d]);
      const index = randomInts(seed + 2, b, n); // n small: duplicates are common
      const idx = Tensor.from(index, [b], 'u32');
      x.gpu.requiresGrad = true;
      const y = gatherRows(x.gpu, idx);
      assert.deepEqual([...(await y.data())], [...refGatherRows(x.ref, index).data]);
      backward(y, g.gpu);
      const gx = await x.gpu.grad!.data();
      assertClose(gx, refGatherRowsBackward(g.ref, index, n).data, GATHER_GRAD_TOL, 'grad');
      // the same again gives bit-identical gradients
      x.gpu.grad!.dispose();
      x.gpu.grad = null;
      tidy(() => backward(gatherRows(x.gpu, idx), g.gpu));
      assert.deepEqual([...(await x.gpu.grad!.data())], [...gx]);
      for (const t of [y, x.gpu.grad!, x.gpu, g.gpu, idx]) t.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('reference gather gradient equals finite differences', () => {
  const x = refArray([4, 3], randomValues(1, 12));
  const g = refArray([5, 3], randomValues(2, 15));
  const index = [3, 0, 3, 3, 1];
  const numeric = finiteDifference((v) => refDot(g, refGatherRows(v, index)), x);
  assertClose(refGatherRowsBackward(g, index, 4).data, numeric.data, { rtol: 1e-6, atol: 1e-8 }, 'reference');
});

test('gatherRows: an out-of-range index gives a zero row and no gradient', async () => {
  const x = Tensor.from([1, 2, 3, 4], [2, 2]);
  x.requiresGrad = true;
  const idx = Tensor.from([1, 9, 0], [3], 'u32');
  const y = gatherRows(x, idx);
  assert.deepEqual([...(await y.data())], [3, 4, 0, 0, 1, 2]);
  backward(y, Tensor.from([1, 1, 5, 5, 2, 2], [3, 2]));
  assert.deepEqual([...(await x.grad!.data())], [2, 2, 1, 1]);
  for (const t of [x, x.grad!, idx, y]) t.dispose();
});

test('scatterRows: the last duplicate wins, unindexed rows stay bit-identical', async () => {
  await fc.assert(
    fc.asyncProperty(matArb, fc.integer({ min: 1, max: 8 }), async ({ b, d, seed }, n) => {
      const dst = randomPair(seed, [n, d], -1e30, 1e30);
      const src = randomPair(seed + 1, [b, d]);
      const index = randomInts(seed + 2, b, n + 1); // n itself is out of range: ignored
      const idx = Tensor.from(index, [b], 'u32');
      const before = await dst.gpu.data();
      scatterRows(dst.gpu, idx, src.gpu);
      const after = await dst.gpu.data();
      const expected = refScatterRows(dst.ref, index, src.ref);
      assert.deepEqual([...after], [...Float32Array.from(expected.data)]);
      for (let r = 0; r < n; r++) {
        if (!index.includes(r))
          assert.deepEqual([...after.slice(r * d, r * d + d)], [...before.slice(r * d, r * d + d)], `row ${r}`);
      }
      for (const t of [dst.gpu, src.gpu, idx]) t.dispose();
    }),
    { numRuns: RUNS },
  );
  const dst = Tensor.from([0, 0, 0, 0, 0, 0], [3, 2]);
  const idx = Tensor.from([2, 0, 2, 2], [4], 'u32');
  scatterRows(dst, idx, Tensor.from([1, 1, 2, 2, 3, 3, 4, 4], [4, 2]));
  assert.deepEqual([...(await dst.data())], [2, 2, 0, 0, 4, 4]);
  dst.dispose();
  idx.dispose();
});

test('scatterRows with a large batch (atomic winner path) also lets the last duplicate win', async () => {
  for (const [b, n, d] of [
    [1500, 7, 3],
    [1100, 3000, 2],
    [2000, 1, 1],
  ]) {
    const dst = randomPair(b + n, [n, d]);
    const src = randomPair(b + n + 1, [b, d]);
    const index = randomInts(b + n + 2, b, n + 2); // some out of range
    const idx = Tensor.from(index, [b], 'u32');
    scatterRows(dst.gpu, idx, src.gpu);
    const after = await dst.gpu.data();
    assert.deepEqual([...after], [...Float32Array.from(refScatterRows(dst.ref, index, src.ref).data)], `B=${b} N=${n}`);
    for (const t of [dst.gpu, src.gpu, idx]) t.dispose();
  }
});

test('countEqual counts equal positions', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: 700 }), fc.integer(), async (n, seed) => {
      const a = randomInts(seed, n, 3);
      const b = randomInts(seed + 1, n, 3);
      const ta = Tensor.from(a, [n], 'u32');
      const tb = Tensor.from(b, [n], 'u32');
      const c = countEqual(ta, tb);
      assert.equal((await c.data())[0], refCountEqual(a, b));
      for (const t of [ta, tb, c]) t.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('reshape and flatten are views whose gradient flows back in the input shape', async () => {
  const x = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 3, 2]);
  x.requiresGrad = true;
  const w = Tensor.from(
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((v) => v / 10),
    [2, 6],
  );
  const f = flatten(x);
  assert.deepEqual(f.shape, [2, 6]);
  const r = reshape(x, [-1, 4]);
  assert.deepEqual(r.shape, [3, 4]);
  r.dispose();
  const loss = sum(mul(f, w));
  backward(loss);
  assertClose(await x.grad!.data(), await w.data(), { rtol: 0, atol: 0 }, 'grad');
  assert.deepEqual(x.grad!.shape, [2, 3, 2]);
  assert.throws(() => reshape(x, [5, -1]), /cannot view \[2, 3, 2\]/);
  assert.throws(() => reshape(x, [-1, -1]), /at most one dimension may be -1/);
  assert.throws(() => reshape(x, [7]), /cannot view \[2, 3, 2\] \(12 elements\) as \[7\]/);
  const u = Tensor.from([1, 2, 3, 4], [4], 'u32');
  const u2 = reshape(u, [2, 2]);
  assert.equal(u2.dtype, 'u32');
  assert.deepEqual([...(await u2.data())], [1, 2, 3, 4]);
  for (const t of [x, x.grad!, w, f, loss, u]) t.dispose();
});

test('no buffer is leaked by row ops and their gradients', async () => {
  const base = gpu().pool.liveCount;
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [3, 2]);
  x.requiresGrad = true;
  const idx = Tensor.from([2, 2, 0], [3], 'u32');
  tidy(() => {
    backward(sum(normalizeRows(gatherRows(x, idx), { epsilon: 'add' })));
    argmaxRows(x);
    countEqual(idx, idx);
    const dst = Tensor.from([0, 0, 0, 0], [2, 2]);
    scatterRows(dst, Tensor.from([1, 1], [2], 'u32'), Tensor.from([1, 2, 3, 4], [2, 2]));
  });
  await x.grad!.data();
  for (const t of [x, x.grad!, idx]) t.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('row ops reject bad shapes and dtypes with clear errors', () => {
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [3, 2]);
  const v = Tensor.from([1, 2, 3], [3]);
  const idx = Tensor.from([0, 1], [2], 'u32');
  const idxF = Tensor.from([0, 1], [2]);
  const src = Tensor.from([1, 2, 3], [1, 3]);
  assert.throws(() => normalizeRows(v, { epsilon: 'add' }), /normalizeRows: x must be a rank-2/);
  assert.throws(() => argmaxRows(idx as unknown as Tensor<'f32'>), /argmaxRows: x: expected a f32 tensor, got u32/);
  assert.throws(
    () => gatherRows(x, idxF as unknown as Tensor<'u32'>),
    /gatherRows: index: expected a u32 tensor, got f32/,
  );
  assert.throws(() => scatterRows(x, idx, src), /scatterRows: src must be \[2, 2\].*got \[1, 3\]/);
  assert.throws(() => scatterRows(x, idx, x), /src must be \[2, 2\]/);
  assert.throws(() => countEqual(idx, Tensor.from([1], [1], 'u32')), /countEqual: shapes \[2\] and \[1\] differ/);
  for (const t of [x, v, idx, idxF, src]) t.dispose();
});
