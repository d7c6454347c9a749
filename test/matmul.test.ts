import { test, before, after } from 'node:test';
import fc from 'fast-check';
import { assert, randomPair, setupGpu, RUNS } from './helpers.ts';
import { linear, matmul } from '../src/ops/matmul.ts';
import { gemmChoice } from '../src/ops/gemm-variants.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refLinear, refLinearBackward, refMatmul, refMatmulBackward } from '../src/ref/matmul.ts';
import { finiteDifference, refDot, type RefArray } from '../src/ref/array.ts';
import { absOf, assertWithinSumBound, matmulWithGrads, VARIANTS } from './gemm-bound.ts';

before(async () => {
  await setupGpu();
});

after(() => gemmChoice.force(null));

const EXACT_FD = { rtol: 1e-6, atol: 1e-7 };

function assertFd(analytic: RefArray, numeric: RefArray, what: string): void {
  for (let i = 0; i < analytic.data.length; i++) {
    const e = numeric.data[i];
    assert.ok(
      Math.abs(analytic.data[i] - e) <= EXACT_FD.atol + EXACT_FD.rtol * Math.abs(e),
      `${what}[${i}]: ${analytic.data[i]} vs finite difference ${e}`,
    );
  }
}

test('reference matmul/linear gradients match finite differences', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.integer({ min: 1, max: 4 }),
      fc.boolean(),
      fc.boolean(),
      fc.integer(),
      (M, N, K, tA, tB, seed) => {
        const a = randomPair(seed, tA ? [K, M] : [M, K]);
        const b = randomPair(seed + 1, tB ? [N, K] : [K, N]);
        const g = randomPair(seed + 2, [M, N]);
        for (const t of [a.gpu, b.gpu, g.gpu]) t.dispose();
        const { da, db } = refMatmulBackward(g.ref, a.ref, b.ref, tA, tB);
        assertFd(
          da,
          finiteDifference((v) => refDot(g.ref, refMatmul(v, b.ref, tA, tB)), a.ref),
          'dA',
        );
        assertFd(
          db,
          finiteDifference((v) => refDot(g.ref, refMatmul(a.ref, v, tA, tB)), b.ref),
          'dB',
        );
        const bias = randomPair(seed + 3, [N]);
        bias.gpu.dispose();
        const x = a.ref.shape[0] === M && !tA ? a.ref : randomPair(seed + 4, [M, K]).ref;
        const w = randomPair(seed + 5, [N, K]);
        w.gpu.dispose();
        const lin = refLinearBackward(g.ref, x, w.ref);
        assertFd(
          lin.dx,
          finiteDifference((v) => refDot(g.ref, refLinear(v, w.ref, bias.ref)), x),
          'linear dx',
        );
        assertFd(
          lin.dw,
          finiteDifference((v) => refDot(g.ref, refLinear(x, v, bias.ref)), w.ref),
          'linear dW',
        );
        assertFd(
          lin.db,
          finiteDifference((v) => refDot(g.ref, refLinear(x, w.ref, v)), bias.ref),
          'linear db',
        );
      },
    ),
    { numRuns: 30 },
  );
});

// Sizes straddle the tile sizes (8 rows x 64 columns per workgroup on lavapipe, 64 x 64 tiled), include 1.
const dimArb = fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 10, max: 80 }), fc.constant(1));

test('matmul forward and gradients match the f64 reference (all transposes, all variants)', async () => {
  await fc.assert(
    fc.asyncProperty(
      dimArb,
      dimArb,
      dimArb,
      fc.boolean(),
      fc.boolean(),
      fc.constantFrom(...VARIANTS),
      fc.integer(),
      async (M, N, K, tA, tB, variant, seed) => {
        gemmChoice.force(variant.v);
        const { a, b, g, c } = matmulWithGrads(seed, M, N, K, tA, tB);
        const what = `${variant.name} M=${M} N=${N} K=${K} tA=${tA} tB=${tB}`;
        assertWithinSumBound(
          await c.data(),
          refMatmul(a.ref, b.ref, tA, tB),
          refMatmul(absOf(a.ref), absOf(b.ref), tA, tB),
          K,
          `${what} C`,
        );
        const exp = refMatmulBackward(g.ref, a.ref, b.ref, tA, tB);
        const bound = refMatmulBackward(absOf(g.ref), absOf(a.ref), absOf(b.ref), tA, tB);
        assertWithinSumBound(await a.gpu.grad!.data(), exp.da, bound.da, N, `${what} dA`);
        assertWithinSumBound(await b.gpu.grad!.data(), exp.db, bound.db, M, `${what} dB`);
        for (const t of [c, a.gpu.grad!, b.gpu.grad!, a.gpu, b.gpu, g.gpu]) t.dispose();
      },
    ),
    { numRuns: RUNS * 2 },
  );
  gemmChoice.force(null);
});

test('linear forward (fused bias) and gradients match the f64 reference', async () => {
  await fc.assert(
    fc.asyncProperty(
      dimArb,
      dimArb,
      dimArb,
      fc.boolean(),
      fc.constantFrom(...VARIANTS),
      fc.integer(),
      async (rows, inF, outF, withBias, variant, seed) => {
        gemmChoice.force(variant.v);
        const x = randomPair(seed, [rows, inF]);
        const w = randomPair(seed + 1, [outF, inF]);
        const bias = randomPair(seed + 2, [outF]);
        const g = randomPair(seed + 3, [rows, outF]);
        for (const t of [x.gpu, w.gpu, bias.gpu]) t.requiresGrad = true;
        const y = tidy(() => {
          const out = linear(x.gpu, w.gpu, withBias ? bias.gpu : null);
          backward(out, g.gpu);
          return out;
        });
        const what = `${variant.name} B=${rows} in=${inF} out=${outF} bias=${withBias}`;
        const absBias = withBias ? absOf(bias.ref) : null;
        assertWithinSumBound(
          await y.data(),
          refLinear(x.ref, w.ref, withBias ? bias.ref : null),
          refLinear(absOf(x.ref), absOf(w.ref), absBias),
          inF + 1,
          `${what} y`,
        );
        const exp = refLinearBackward(g.ref, x.ref, w.ref);
        const bound = refLinearBackward(absOf(g.ref), absOf(x.ref), absOf(w.ref));
        assertWithinSumBound(await x.gpu.grad!.data(), exp.dx, bound.dx, outF, `${what} dx`);
        assertWithinSumBound(await w.gpu.grad!.data(), exp.dw, bound.dw, rows, `${what} dW`);
        if (withBias) assertWithinSumBound(await bias.gpu.grad!.data(), exp.db, bound.db, rows, `${what} db`);
        else assert.equal(bias.gpu.grad, null);
        for (const t of [y, x.gpu.grad!, w.gpu.grad!, bias.gpu.grad, x.gpu, w.gpu, bias.gpu, g.gpu]) t?.dispose();
      },
    ),
    { numRuns: RUNS },
  );
  gemmChoice.force(null);
});

test('linear with many rows (the CPU path transposes the weight first) matches the reference', async () => {
  const x = randomPair(21, [70, 13]);
  const w = randomPair(22, [9, 13]);
  const bias = randomPair(23, [9]);
  const y = linear(x.gpu, w.gpu, bias.gpu);
  assertWithinSumBound(
    await y.data(),
    refLinear(x.ref, w.ref, bias.ref),
    refLinear(absOf(x.ref), absOf(w.ref), absOf(bias.ref)),
    14,
    'linear 70x13 -> 9',
  );
  for (const t of [y, x.gpu, w.gpu, bias.gpu]) t.dispose();
});

test('split-K and the tiled body give the same numbers run after run (deterministic)', async () => {
  const a = randomPair(11, [5, 700]);
  const b = randomPair(12, [700, 3]);
  for (const variant of VARIANTS) {
    gemmChoice.force(variant.v);
    const first = tidy(() => matmul(a.gpu, b.gpu));
    const second = tidy(() => matmul(a.gpu, b.gpu));
    assert.deepEqual([...(await first.data())], [...(await second.data())], variant.name);
    first.dispose();
    second.dispose();
  }
  gemmChoice.force(null);
  a.gpu.dispose();
  b.gpu.dispose();
});

test('matmul/linear forward+backward leak no buffers', async () => {
  const base = gpu().pool.liveCount;
  const x = randomPair(1, [3, 4]).gpu;
  const w = randomPair(2, [5, 4]).gpu;
  const bias = randomPair(3, [5]).gpu;
  for (const t of [x, w, bias]) t.requiresGrad = true;
  tidy(() => {
    const y = linear(x, w, bias);
    const z = matmul(y, w);
    backward(z, randomPair(4, [3, 4]).gpu);
  });
  await x.grad!.data();
  for (const t of [x, w, bias]) {
    t.grad!.dispose();
    t.dispose();
  }
  assert.equal(gpu().pool.liveCount, base);
});

test('matmul/linear reject bad inputs with clear errors', () => {
  const a = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = Tensor.from([1, 2, 3, 4], [2, 2]);
  const v = Tensor.from([1, 2, 3], [3]);
  const u = Tensor.from([1, 2, 3, 4], [2, 2], 'u32');
  assert.throws(() => matmul(a, b), /matmul: inner dimensions differ: op\(A\) is \[2, 3\]/);
  assert.throws(() => matmul(a, v), /matmul: B must be 2-D, got shape \[3\]/);
  assert.throws(() => matmul(u as unknown as Tensor<'f32'>, b), /expected a f32 tensor, got u32/);
  assert.throws(() => linear(a, b, null), /linear: x \[2, 3\] has 3 features but weight \[2, 2\] expects 2/);
  assert.throws(() => linear(b, b, v), /linear: bias must have shape \[2\], got \[3\]/);
  assert.doesNotThrow(() => matmul(a, b, { transA: true }).dispose());
  for (const t of [a, b, v, u]) t.dispose();
});
