import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, setupGpu, RUNS } from './helpers.ts';
import { mean, sum, sumAxis0 } from '../src/ops/reduce.ts';
import { mul } from '../src/ops/elementwise.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refMean, refSum, refSumAxis0 } from '../src/ref/reduce.ts';
import { finiteDifference, refDot } from '../src/ref/array.ts';

// A sum of n values in [-1, 1) in f32 errs by about sqrt(n) * 6e-8 * (partial magnitudes); for n up to
// 5000 that is below 1e-5 absolute. Gradients are broadcasts: exact up to the f32 rounding of 1/n.
const SUM_TOL = { rtol: 1e-5, atol: 2e-5 };

before(async () => {
  await setupGpu();
});

test('sum and mean (multi-partial sizes) match the reference; gradients broadcast', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1000, max: 5000 })),
      fc.integer(),
      async (n, seed) => {
        const x = randomPair(seed, [n]);
        x.gpu.requiresGrad = true;
        const s = sum(x.gpu);
        const m = mean(x.gpu);
        assertClose(await s.data(), [refSum(x.ref)], SUM_TOL, 'sum');
        assertClose(await m.data(), [refMean(x.ref)], { rtol: 1e-5, atol: 1e-7 }, 'mean');
        tidy(() => backward(s, Tensor.from([2], [1])));
        tidy(() => backward(m, Tensor.from([3], [1])));
        assertClose(await x.gpu.grad!.data(), new Float64Array(n).fill(2 + 3 / n), { rtol: 1e-6, atol: 0 }, 'grad');
        // deterministic
        const s2 = sum(x.gpu);
        assert.equal((await s2.data())[0], (await s.data())[0]);
        for (const t of [s, s2, m, x.gpu.grad!, x.gpu]) t.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('sumAxis0 matches the reference, gradient checked against finite differences', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 100 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer(),
      async (r, c, seed) => {
        const x = randomPair(seed, [r, c]);
        const g = randomPair(seed + 1, [c]);
        x.gpu.requiresGrad = true;
        const y = sumAxis0(x.gpu);
        assertClose(await y.data(), refSumAxis0(x.ref).data, SUM_TOL, 'sumAxis0');
        backward(y, g.gpu);
        const numeric = finiteDifference((v) => refDot(g.ref, refSumAxis0(v)), x.ref);
        assertClose(await x.gpu.grad!.data(), numeric.data, { rtol: 1e-6, atol: 1e-6 }, 'grad');
        for (const t of [y, x.gpu.grad!, x.gpu, g.gpu]) t.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('reductions compose with autograd and do not leak', async () => {
  const base = gpu().pool.liveCount;
  const x = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  x.requiresGrad = true;
  tidy(() => backward(sum(mul(sumAxis0(x), sumAxis0(x)))));
  // d/dx sum_c (colsum_c)^2 = 2 colsum_c
  assert.deepEqual([...(await x.grad!.data())], [10, 14, 18, 10, 14, 18]);
  const e = Tensor.from([], [0]);
  const s = sum(e);
  assert.deepEqual([...(await s.data())], [0]);
  assert.throws(() => mean(e), /mean: the input \[0\] is empty/);
  const v = Tensor.from([1, 2], [2]);
  const u = Tensor.from([1], [1], 'u32');
  assert.throws(() => sumAxis0(v), /sumAxis0: expected a rank-2 \[R, C\] tensor, got \[2\]/);
  assert.throws(() => sum(u as unknown as Tensor<'f32'>), /sum: expected a f32 tensor, got u32/);
  for (const t of [x, x.grad!, e, s, v, u]) t.dispose();
  assert.equal(gpu().pool.liveCount, base);
});
