import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, setupGpu, RUNS } from './helpers.ts';
import { dropout } from '../src/ops/dropout.ts';
import { backward, noGrad } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { fill } from '../src/ops/elementwise.ts';
import { dropoutMask, refDropout } from '../src/ref/dropout.ts';

before(async () => {
  await setupGpu();
});

/** Kept values are x·f32(1/(1-p)) rounded once to f32: within one ulp of the f64 product, plus the scale's own rounding. */
const SCALED = { rtol: 3e-7, atol: 0 };

/** The GPU mask: dropout of a tensor of ones is 1/(1-p) where kept and exactly 0 where dropped. */
async function gpuMask(n: number, p: number, seed: number): Promise<Uint8Array> {
  const y = tidy(() => noGrad(() => dropout(fill([n], 1), p, seed, true)));
  const values = await y.data();
  y.dispose();
  return Uint8Array.from(values, (v) => (v !== 0 ? 1 : 0));
}

test('forward and backward match the CPU hash exactly (mask) and the reference (values)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.double({ min: 0.01, max: 0.99, noNaN: true }),
      async (shape, seed, p) => {
        const n = shape.reduce((a, b) => a * b, 1);
        assert.deepEqual(
          await gpuMask(n, p, seed),
          dropoutMask(seed, n, p),
          `mask of ${n} elements, seed ${seed}, p ${p}`,
        );
        const x = randomPair(seed ^ 1, shape);
        const g = randomPair(seed ^ 2, shape);
        x.gpu.requiresGrad = true;
        const y = tidy(() => {
          const out = dropout(x.gpu, p, seed, true);
          backward(out, g.gpu);
          return out;
        });
        assertClose(await y.data(), refDropout(x.ref, p, seed).data, SCALED, 'forward');
        assertClose(
          await x.gpu.grad!.data(),
          refDropout(g.ref, p, seed).data,
          SCALED,
          'backward applies the same mask',
        );
        y.dispose();
        x.gpu.grad!.dispose();
        x.gpu.dispose();
        g.gpu.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('fraction kept is close to 1 - p on a large tensor', async () => {
  const n = 1 << 20;
  for (const p of [0.1, 0.5, 0.9]) {
    const mask = await gpuMask(n, p, 1234);
    const kept = mask.reduce((a, b) => a + b, 0) / n;
    // Binomial: standard deviation sqrt(p(1-p)/n) <= 4.9e-4; allow 6 of them.
    const sd = Math.sqrt((p * (1 - p)) / n);
    assert.ok(Math.abs(kept - (1 - p)) < 6 * sd, `p ${p}: kept fraction ${kept}, expected ${1 - p} ± ${6 * sd}`);
    // The neighbouring elements are not correlated: the kept fraction of pairs (i, i+1) is ≈ (1-p)².
    let pairs = 0;
    for (let i = 0; i + 1 < n; i += 2) pairs += mask[i] & mask[i + 1];
    const q = (1 - p) ** 2;
    const sdPairs = Math.sqrt((q * (1 - q)) / (n / 2));
    assert.ok(Math.abs(pairs / (n / 2) - q) < 6 * sdPairs, `p ${p}: kept pairs ${pairs / (n / 2)}, expected ${q}`);
  }
});

test('same seed gives the same mask; different seeds give different, uncorrelated masks', async () => {
  const n = 1 << 16;
  const p = 0.5;
  const a = await gpuMask(n, p, 42);
  assert.deepEqual(await gpuMask(n, p, 42), a);
  for (const other of [43, 42 + 2 ** 31, 0]) {
    const b = await gpuMask(n, p, other);
    let agree = 0;
    for (let i = 0; i < n; i++) agree += a[i] === b[i] ? 1 : 0;
    // Independent masks agree on a fraction p² + (1-p)² = 0.5 of elements, sd 0.5/sqrt(n) ≈ 0.002.
    assert.ok(Math.abs(agree / n - 0.5) < 0.012, `seeds 42 and ${other} agree on ${agree / n} of the elements`);
  }
});

test('eval mode and p = 0 are the identity (a view); p = 1 drops everything', async () => {
  const x = randomPair(5, [3, 7]);
  x.gpu.requiresGrad = true;
  for (const [p, training] of [
    [0.5, false],
    [0, true],
  ] as const) {
    const g = randomPair(6, [3, 7]);
    const y = tidy(() => {
      const out = dropout(x.gpu, p, 9, training);
      assert.equal(out.buffer, x.gpu.buffer, 'a view of x, no copy');
      backward(out, g.gpu);
      return out;
    });
    assert.deepEqual(await y.data(), await x.gpu.data());
    assert.deepEqual(await x.gpu.grad!.data(), await g.gpu.data());
    y.dispose();
    x.gpu.grad!.dispose();
    x.gpu.grad = null;
    g.gpu.dispose();
  }
  const z = noGrad(() => dropout(x.gpu, 1, 9, true));
  assert.deepEqual([...(await z.data())], new Array(21).fill(0));
  z.dispose();
  x.gpu.dispose();
});

test('no buffer is leaked; bad input rejected with clear errors', async () => {
  const base = gpu().pool.liveCount;
  const x = randomPair(1, [4, 5]);
  x.gpu.requiresGrad = true;
  tidy(() => backward(dropout(x.gpu, 0.3, 1, true), fill([4, 5], 1)));
  x.gpu.grad!.dispose();
  const i = Tensor.from([1, 2], [2], 'u32');
  assert.throws(() => dropout(x.gpu, 1.5, 1, true), /dropout: p must be in \[0, 1\], got 1.5/);
  assert.throws(() => dropout(x.gpu, Number.NaN, 1, true), /dropout: p must be in \[0, 1\], got NaN/);
  assert.throws(() => dropout(x.gpu, 0.5, -1, true), /dropout: seed must be an integer in \[0, 2\^32\), got -1/);
  assert.throws(() => dropout(x.gpu, 0.5, 1.5, true), /seed must be an integer/);
  assert.throws(() => dropout(i as unknown as Tensor<'f32'>, 0.5, 1, true), /dropout: expected a f32 tensor, got u32/);
  x.gpu.dispose();
  i.dispose();
  await gpu().sync();
  assert.equal(gpu().pool.liveCount, base);
});
