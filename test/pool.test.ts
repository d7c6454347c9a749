import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { avgPool2d, globalAvgPool, maxPool2d } from '../src/ops/pool.ts';
import { backward, noGrad } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import {
  refAvgPool2d,
  refAvgPool2dBackward,
  refGlobalAvgPool,
  refGlobalAvgPoolBackward,
  refMaxPool2d,
  refMaxPool2dBackward,
  type RefPoolOptions,
} from '../src/ref/pool.ts';
import { finiteDifference, refArray, refDot } from '../src/ref/array.ts';

before(async () => {
  await setupGpu();
});

/** Max pooling selects and sums at most kernel² gradients per input: f32 sums of ≤ 9 terms. */
const EXACT = { rtol: 1e-6, atol: 1e-7 };
/** Averages: sums of ≤ kernel² (or H·W ≤ 64) terms of size ≤ 1, times a reciprocal rounded to f32. */
const AVG = { rtol: 1e-5, atol: 1e-6 };
const FD = { rtol: 1e-5, atol: 1e-6 };

interface Case {
  shape: number[];
  opts: RefPoolOptions;
}

/** Random NHWC shapes (odd sizes, batch 1 and 2) with a kernel, stride and padding that fit. */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.integer({ min: 1, max: 2 }),
    h: fc.integer({ min: 1, max: 9 }),
    w: fc.integer({ min: 1, max: 9 }),
    c: fc.integer({ min: 1, max: 5 }),
    kernel: fc.integer({ min: 1, max: 4 }),
    stride: fc.integer({ min: 1, max: 3 }),
    padding: fc.integer({ min: 0, max: 2 }),
  })
  .map((r) => ({
    shape: [r.n, r.h, r.w, r.c],
    opts: { kernel: r.kernel, stride: r.stride, padding: Math.min(r.padding, Math.floor(r.kernel / 2)) },
  }))
  .filter((k) => k.shape[1] + 2 * k.opts.padding >= k.opts.kernel && k.shape[2] + 2 * k.opts.padding >= k.opts.kernel);

function outShapeOf(c: Case): number[] {
  const [n, h, w, ch] = c.shape;
  const { kernel, stride, padding } = c.opts;
  return [
    n,
    Math.floor((h + 2 * padding - kernel) / stride) + 1,
    Math.floor((w + 2 * padding - kernel) / stride) + 1,
    ch,
  ];
}

test('reference pooling gradients match finite differences', () => {
  const cases: Case[] = [
    { shape: [1, 5, 4, 2], opts: { kernel: 3, stride: 2, padding: 1 } },
    { shape: [2, 3, 3, 1], opts: { kernel: 2, stride: 1, padding: 0 } },
    { shape: [1, 4, 5, 2], opts: { kernel: 2, stride: 2, padding: 1 } },
  ];
  for (const c of cases) {
    const x = refArray(
      c.shape,
      randomValues(
        11,
        c.shape.reduce((a, b) => a * b, 1),
      ),
    );
    const outShape = outShapeOf(c);
    const g = refArray(
      outShape,
      randomValues(
        12,
        outShape.reduce((a, b) => a * b, 1),
      ),
    );
    const what = `${JSON.stringify(c)}`;
    // random values: no ties, and a 1e-6 probe does not change any argmax
    assertClose(
      refMaxPool2dBackward(g, x, c.opts).data,
      finiteDifference((v) => refDot(g, refMaxPool2d(v, c.opts).out), x).data,
      FD,
      `max ${what}`,
    );
    assertClose(
      refAvgPool2dBackward(g, x, c.opts).data,
      finiteDifference((v) => refDot(g, refAvgPool2d(v, c.opts)), x).data,
      FD,
      `avg ${what}`,
    );
    const gg = refArray([c.shape[0], c.shape[3]], randomValues(13, c.shape[0] * c.shape[3]));
    assertClose(
      refGlobalAvgPoolBackward(gg, x).data,
      finiteDifference((v) => refDot(gg, refGlobalAvgPool(v)), x).data,
      FD,
      `gap ${what}`,
    );
  }
});

/** Runs op forward and backward on the GPU; returns the output and x's gradient on the host. */
async function gpuForwardBackward(
  op: (x: Tensor<'f32'>) => Tensor<'f32'>,
  x: Tensor<'f32'>,
  g: (shape: readonly number[]) => Tensor<'f32'>,
) {
  x.requiresGrad = true;
  const y = tidy(() => {
    const out = op(x);
    const gOut = g(out.shape);
    backward(out, gOut);
    gOut.dispose();
    return out;
  });
  const out = await y.data();
  const dx = await x.grad!.data();
  y.dispose();
  x.grad!.dispose();
  x.grad = null;
  return { out, dx };
}

function hostValues(seed: number, n: number, ties: boolean): Float64Array {
  // Integer values from a small range make ties common (tie-breaking must match the reference).
  const v = randomValues(seed, n, -1, 1);
  return ties ? v.map((a) => Math.floor(a * 2)) : Float64Array.from(Float32Array.from(v));
}

test('maxPool2d forward and backward match the reference (random shapes, strides, padding, ties)', async () => {
  await fc.assert(
    fc.asyncProperty(caseArb, fc.integer(), fc.boolean(), async (c, seed, ties) => {
      const values = hostValues(
        seed,
        c.shape.reduce((a, b) => a * b, 1),
        ties,
      );
      const x = Tensor.from(values, c.shape);
      const xr = refArray(c.shape, values);
      const gv = randomPair(seed + 1, outShapeOf(c));
      const { out, dx } = await gpuForwardBackward(
        (t) => maxPool2d(t, c.opts),
        x,
        () => gv.gpu.view(),
      );
      const what = `${JSON.stringify(c)} ties ${ties}`;
      assertClose(out, refMaxPool2d(xr, c.opts).out.data, EXACT, `maxPool2d out ${what}`);
      assertClose(dx, refMaxPool2dBackward(gv.ref, xr, c.opts).data, EXACT, `maxPool2d dx ${what}`);
      x.dispose();
      gv.gpu.dispose();
    }),
    { numRuns: RUNS * 2 },
  );
});

test('maxPool2d ties go to the first element in window order; padding never wins', async () => {
  // All-equal input, overlapping 3x3 windows with stride 1 and padding 1 on a 3x3 image: every window's
  // first in-bounds element (row-major) takes its gradient.
  const x = Tensor.from(new Float32Array(9).fill(-5), [1, 3, 3, 1]);
  const { out, dx } = await gpuForwardBackward(
    (t) => maxPool2d(t, { kernel: 3, stride: 1, padding: 1 }),
    x,
    (s) => Tensor.from(new Float32Array(s.reduce((a, b) => a * b, 1)).fill(1), s),
  );
  assert.deepEqual([...out], new Array(9).fill(-5)); // padding (-inf) never wins even over negative values
  // window (oy, ox) starts at input (max(oy-1, 0), max(ox-1, 0)): (0,0) gets 4 windows, (0,1) and (1,0) 2, (1,1) 1
  assert.deepEqual([...dx], [4, 2, 0, 2, 1, 0, 0, 0, 0]);
  x.dispose();
});

test('avgPool2d forward and backward match the reference (count_include_pad)', async () => {
  await fc.assert(
    fc.asyncProperty(caseArb, fc.integer(), async (c, seed) => {
      const x = randomPair(seed, c.shape);
      const gv = randomPair(seed + 1, outShapeOf(c));
      const { out, dx } = await gpuForwardBackward(
        (t) => avgPool2d(t, c.opts),
        x.gpu,
        () => gv.gpu.view(),
      );
      assertClose(out, refAvgPool2d(x.ref, c.opts).data, AVG, `avgPool2d out ${JSON.stringify(c)}`);
      assertClose(dx, refAvgPool2dBackward(gv.ref, x.ref, c.opts).data, AVG, `avgPool2d dx ${JSON.stringify(c)}`);
      x.gpu.dispose();
      gv.gpu.dispose();
    }),
    { numRuns: RUNS * 2 },
  );
});

test('globalAvgPool forward and backward match the reference', async () => {
  const shapeArb = fc.tuple(
    fc.integer({ min: 1, max: 3 }),
    fc.integer({ min: 1, max: 8 }),
    fc.integer({ min: 1, max: 8 }),
    fc.integer({ min: 1, max: 9 }),
  );
  await fc.assert(
    fc.asyncProperty(shapeArb, fc.integer(), async (shape, seed) => {
      const x = randomPair(seed, shape);
      const gv = randomPair(seed + 1, [shape[0], shape[3]]);
      const { out, dx } = await gpuForwardBackward(globalAvgPool, x.gpu, () => gv.gpu.view());
      assertClose(out, refGlobalAvgPool(x.ref).data, AVG, `globalAvgPool out ${JSON.stringify(shape)}`);
      assertClose(dx, refGlobalAvgPoolBackward(gv.ref, x.ref).data, AVG, `globalAvgPool dx ${JSON.stringify(shape)}`);
      x.gpu.dispose();
      gv.gpu.dispose();
    }),
    { numRuns: RUNS },
  );
});

test('pooling shapes: default stride, stride 2 on odd sizes, padding', () => {
  const x = Tensor.empty([2, 7, 5, 3]);
  const shapes = noGrad(() =>
    tidy(() => [
      maxPool2d(x, { kernel: 2 }).shape, // stride = kernel: floor(7/2), floor(5/2)
      maxPool2d(x, { kernel: 3, stride: 2, padding: 1 }).shape, // ResNet stem pooling
      avgPool2d(x, { kernel: 3, stride: 2 }).shape,
      globalAvgPool(x).shape,
    ]),
  );
  assert.deepEqual(shapes, [
    [2, 3, 2, 3],
    [2, 4, 3, 3],
    [2, 3, 2, 3],
    [2, 3],
  ]);
  x.dispose();
});

test('no buffer is leaked by pooling forward/backward', async () => {
  const base = gpu().pool.liveCount;
  const x = Tensor.from(randomValues(3, 2 * 5 * 5 * 3), [2, 5, 5, 3]);
  for (const op of [
    (t: Tensor<'f32'>) => maxPool2d(t, { kernel: 3, stride: 2, padding: 1 }),
    (t: Tensor<'f32'>) => avgPool2d(t, { kernel: 2 }),
    globalAvgPool,
  ]) {
    await gpuForwardBackward(op, x, (s) =>
      Tensor.from(
        randomValues(
          4,
          s.reduce((a, b) => a * b, 1),
        ),
        s,
      ),
    );
    // recorded for grad but never back-propagated: the saved argmax goes with the scope
    x.requiresGrad = true;
    tidy(() => {
      op(x);
    });
    // without grad, outside any scope: maxPool2d's argmax is released at once
    noGrad(() => op(x)).dispose();
  }
  x.dispose();
  await gpu().sync();
  assert.equal(gpu().pool.liveCount, base);
});

test('rejects bad pooling inputs with clear errors', () => {
  const x = Tensor.from(randomValues(1, 2 * 4 * 4 * 3), [2, 4, 4, 3]);
  const x3 = Tensor.from(randomValues(1, 12), [4, 3, 1]);
  const xi = Tensor.from([1, 2, 3, 4], [1, 2, 2, 1], 'u32');
  assert.throws(() => maxPool2d(x3, { kernel: 2 }), /maxPool2d: expected x of shape \[N, H, W, C\], got \[4, 3, 1\]/);
  assert.throws(() => globalAvgPool(x3), /globalAvgPool: expected x of shape \[N, H, W, C\], got \[4, 3, 1\]/);
  assert.throws(
    () => avgPool2d(xi as unknown as Tensor<'f32'>, { kernel: 2 }),
    /avgPool2d: expected an f32 or f16 tensor, got u32/,
  );
  assert.throws(() => maxPool2d(x, { kernel: 0 }), /kernel must be a positive integer, got 0/);
  assert.throws(() => maxPool2d(x, { kernel: 2.5 }), /kernel must be a positive integer, got 2.5/);
  assert.throws(() => avgPool2d(x, { kernel: 2, stride: 0 }), /stride must be a positive integer, got 0/);
  assert.throws(() => avgPool2d(x, { kernel: 2, padding: -1 }), /padding must be a non-negative integer, got -1/);
  assert.throws(() => maxPool2d(x, { kernel: 3, padding: 2 }), /padding 2 must be at most half the kernel size 3/);
  assert.throws(() => maxPool2d(x, { kernel: 5 }), /kernel 5 is larger than the padded input 4x4/);
  for (const t of [x, x3, xi]) t.dispose();
});
