import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, setupGpu, RUNS } from './helpers.ts';
import { add, axpby, fill, mul, relu } from '../src/ops/elementwise.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refAxpby, refMul, refRelu, refReluBackward } from '../src/ref/elementwise.ts';
import { finiteDifference, refDot, refZip } from '../src/ref/array.ts';

const EXACT = { rtol: 1e-6, atol: 1e-7 };

before(async () => {
  await setupGpu();
});

const shapeArb = fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 3 });

test('elementwise forward matches the f64 reference', async () => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb,
      fc.integer(),
      fc.double({ min: -3, max: 3, noNaN: true }),
      async (shape, seed, alpha) => {
        const x = randomPair(seed, shape);
        const y = randomPair(seed + 1, shape);
        const [r, s, m] = tidy(() => [relu(x.gpu), axpby(alpha, x.gpu, 0.5, y.gpu), mul(x.gpu, y.gpu)]);
        assertClose(await r.data(), refRelu(x.ref).data, EXACT, 'relu');
        assertClose(
          await s.data(),
          refAxpby(Math.fround(alpha), x.ref, 0.5, y.ref).data,
          { rtol: 1e-6, atol: 1e-6 },
          'axpby',
        );
        assertClose(await m.data(), refMul(x.ref, y.ref).data, EXACT, 'mul');
        for (const t of [r, s, m, x.gpu, y.gpu]) t.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('a tensor used twice (residual) receives the sum of both gradients', async () => {
  await fc.assert(
    fc.asyncProperty(shapeArb, fc.integer(), async (shape, seed) => {
      const x = randomPair(seed, shape);
      const gOut = randomPair(seed + 7, shape);
      x.gpu.requiresGrad = true;
      tidy(() => {
        const y = add(relu(x.gpu), mul(x.gpu, x.gpu)); // uses x three times
        backward(y, gOut.gpu);
      });
      // reference: d/dx sum(g * (relu(x) + x^2)), checked against finite differences too
      const analytic = refZip(refReluBackward(gOut.ref, x.ref), refMul(gOut.ref, x.ref), (a, b) => a + 2 * b);
      const numeric = finiteDifference(
        (v) =>
          refDot(
            gOut.ref,
            refZip(refRelu(v), refMul(v, v), (a, b) => a + b),
          ),
        x.ref,
      );
      assertClose(analytic.data, numeric.data, { rtol: 1e-5, atol: 1e-6 }, 'reference vs finite differences');
      assertClose(await x.gpu.grad!.data(), analytic.data, { rtol: 1e-5, atol: 1e-6 }, 'gpu grad');
      x.gpu.grad!.dispose();
      x.gpu.dispose();
      gOut.gpu.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('fill, and no buffer is leaked by a forward/backward pass', async () => {
  const base = gpu().pool.liveCount;
  const x = Tensor.from([1, -2, 3, -4], [2, 2]);
  x.requiresGrad = true;
  tidy(() => backward(relu(add(x, fill([2, 2], 1))), fill([2, 2], 1)));
  assert.deepEqual([...(await x.grad!.data())], [1, 0, 1, 0]);
  x.grad!.dispose();
  x.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('rejects mismatched shapes and wrong dtypes with a clear error', () => {
  const a = Tensor.from([1, 2, 3], [3]);
  const b = Tensor.from([1, 2], [2]);
  const i = Tensor.from([1, 2, 3], [3], 'u32');
  assert.throws(() => add(a, b), /shapes \[3\] and \[2\] differ/);
  assert.throws(() => relu(i as unknown as Tensor<'f32'>), /expected an f32 or f16 tensor, got u32/);
  assert.throws(() => Tensor.empty([2, Number.NaN]), /invalid dimension NaN/);
  assert.throws(() => Tensor.empty([1 << 16, 1 << 16]), /maxStorageBufferBindingSize/);
  for (const t of [a, b, i]) t.dispose();
});
