import { test, before, after } from 'node:test';
import fc from 'fast-check';
import { assert, randomPair, setupGpu, RUNS } from './helpers.ts';
import { gemmChoice } from '../src/ops/gemm-variants.ts';
import { conv2d } from '../src/ops/conv.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import { finiteDifference, refDot, type RefArray } from '../src/ref/array.ts';
import { absOf, assertWithinSumBound, convWithGrads, VARIANTS } from './gemm-bound.ts';

before(async () => {
  await setupGpu();
});

after(() => gemmChoice.force(null));

interface ConvCase {
  batch: number;
  H: number;
  W: number;
  Cin: number;
  Cout: number;
  k: number;
  stride: number;
  pad: number;
}

/** Random conv geometries: kernels 1/3/7, stride 1/2, padding 0/1/3, odd sizes; H, W grown until the kernel fits. */
function caseArb(maxSide: number, maxC: number): fc.Arbitrary<ConvCase> {
  return fc
    .record({
      batch: fc.integer({ min: 1, max: 2 }),
      H: fc.integer({ min: 1, max: maxSide }),
      W: fc.integer({ min: 1, max: maxSide }),
      Cin: fc.integer({ min: 1, max: maxC }),
      Cout: fc.integer({ min: 1, max: maxC }),
      k: fc.constantFrom(1, 3, 7),
      stride: fc.constantFrom(1, 2),
      pad: fc.constantFrom(0, 1, 3),
    })
    .map((c) => ({ ...c, H: Math.max(c.H, c.k - 2 * c.pad), W: Math.max(c.W, c.k - 2 * c.pad) }));
}

const describe = (c: ConvCase): string =>
  `x [${c.batch}, ${c.H}, ${c.W}, ${c.Cin}] k${c.k} s${c.stride} p${c.pad} Cout ${c.Cout}`;

test('reference conv2d gradients match finite differences', () => {
  fc.assert(
    fc.property(caseArb(5, 3), fc.integer(), (c, seed) => {
      const opts = { stride: c.stride, padding: c.pad };
      const x = randomPair(seed, [c.batch, c.H, c.W, c.Cin]);
      const w = randomPair(seed + 1, [c.k, c.k, c.Cin, c.Cout]);
      const y = refConv2d(x.ref, w.ref, opts);
      const g = randomPair(seed + 2, y.shape);
      for (const t of [x.gpu, w.gpu, g.gpu]) t.dispose();
      const { dx, dw } = refConv2dBackward(g.ref, x.ref, w.ref, opts);
      const check = (analytic: RefArray, numeric: RefArray, what: string): void => {
        analytic.data.forEach((a, i) => {
          const e = numeric.data[i];
          assert.ok(
            Math.abs(a - e) <= 1e-7 + 1e-6 * Math.abs(e),
            `${describe(c)} ${what}[${i}]: ${a} vs finite difference ${e}`,
          );
        });
      };
      check(
        dx,
        finiteDifference((v) => refDot(g.ref, refConv2d(v, w.ref, opts)), x.ref),
        'dx',
      );
      check(
        dw,
        finiteDifference((v) => refDot(g.ref, refConv2d(x.ref, v, opts)), w.ref),
        'dw',
      );
    }),
    { numRuns: 25 },
  );
});

test('reference conv2d: hand-checked 1-channel 3x3 example', () => {
  // x = 1..9 on a 3x3 grid, all-ones 3x3 kernel, padding 1: each output sums its 3x3 neighbourhood.
  const x = { shape: [1, 3, 3, 1], data: Float64Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]) };
  const w = { shape: [3, 3, 1, 1], data: new Float64Array(9).fill(1) };
  assert.deepEqual([...refConv2d(x, w, { padding: 1 }).data], [12, 21, 16, 27, 45, 33, 24, 39, 28]);
  assert.deepEqual([...refConv2d(x, w, { padding: 1, stride: 2 }).data], [12, 16, 24, 28]);
});

test('conv2d forward, dgrad and wgrad match the f64 reference (all variants)', async () => {
  await fc.assert(
    fc.asyncProperty(caseArb(9, 12), fc.constantFrom(...VARIANTS), fc.integer(), async (c, variant, seed) => {
      gemmChoice.force(variant.v);
      const opts = { stride: c.stride, padding: c.pad };
      const { x, w, g, y } = convWithGrads(seed, [c.batch, c.H, c.W, c.Cin], [c.k, c.k, c.Cin, c.Cout], opts);
      const expected = refConv2d(x.ref, w.ref, opts);
      const what = `${variant.name} ${describe(c)}`;
      assert.deepEqual(y.shape, expected.shape, `${what}: output shape`);
      const kk = c.k * c.k;
      const positions = c.batch * expected.shape[1] * expected.shape[2];
      assertWithinSumBound(
        await y.data(),
        expected,
        refConv2d(absOf(x.ref), absOf(w.ref), opts),
        kk * c.Cin,
        `${what} y`,
      );
      const exp = refConv2dBackward(g.ref, x.ref, w.ref, opts);
      const bound = refConv2dBackward(absOf(g.ref), absOf(x.ref), absOf(w.ref), opts);
      assertWithinSumBound(await x.gpu.grad!.data(), exp.dx, bound.dx, kk * c.Cout, `${what} dx`);
      assertWithinSumBound(await w.gpu.grad!.data(), exp.dw, bound.dw, positions, `${what} dw`);
      for (const t of [y, x.gpu.grad!, w.gpu.grad!, x.gpu, w.gpu, g.gpu]) t.dispose();
    }),
    { numRuns: RUNS * 3 },
  );
  gemmChoice.force(null);
});

test('conv2d: wider channels (beyond one 64-column tile), stride 2, and only-weight / only-input gradients', async () => {
  const cases: Array<ConvCase & { gradX: boolean; gradW: boolean }> = [
    { batch: 1, H: 7, W: 5, Cin: 9, Cout: 70, k: 3, stride: 2, pad: 1, gradX: true, gradW: true },
    { batch: 2, H: 6, W: 6, Cin: 68, Cout: 5, k: 1, stride: 1, pad: 0, gradX: true, gradW: false },
    { batch: 1, H: 9, W: 9, Cin: 3, Cout: 8, k: 7, stride: 2, pad: 3, gradX: false, gradW: true },
  ];
  for (const c of cases) {
    const opts = { stride: c.stride, padding: c.pad };
    const x = randomPair(5, [c.batch, c.H, c.W, c.Cin]);
    const w = randomPair(6, [c.k, c.k, c.Cin, c.Cout]);
    const expected = refConv2d(x.ref, w.ref, opts);
    const g = randomPair(7, expected.shape);
    x.gpu.requiresGrad = c.gradX;
    w.gpu.requiresGrad = c.gradW;
    const y = tidy(() => {
      const out = conv2d(x.gpu, w.gpu, opts);
      backward(out, g.gpu);
      return out;
    });
    const kk = c.k * c.k;
    assertWithinSumBound(
      await y.data(),
      expected,
      refConv2d(absOf(x.ref), absOf(w.ref), opts),
      kk * c.Cin,
      `${describe(c)} y`,
    );
    const exp = refConv2dBackward(g.ref, x.ref, w.ref, opts);
    const bound = refConv2dBackward(absOf(g.ref), absOf(x.ref), absOf(w.ref), opts);
    if (c.gradX) assertWithinSumBound(await x.gpu.grad!.data(), exp.dx, bound.dx, kk * c.Cout, `${describe(c)} dx`);
    else assert.equal(x.gpu.grad, null);
    const positions = c.batch * expected.shape[1] * expected.shape[2];
    if (c.gradW) assertWithinSumBound(await w.gpu.grad!.data(), exp.dw, bound.dw, positions, `${describe(c)} dw`);
    else assert.equal(w.gpu.grad, null);
    for (const t of [y, x.gpu.grad, w.gpu.grad, x.gpu, w.gpu, g.gpu]) t?.dispose();
  }
});

test('conv2d is deterministic and leaks no buffers', async () => {
  const base = gpu().pool.liveCount;
  const x = randomPair(1, [2, 8, 8, 4]).gpu;
  const w = randomPair(2, [3, 3, 4, 6]).gpu;
  const g = randomPair(3, [2, 4, 4, 6]).gpu;
  const grads: Float32Array[] = [];
  for (let run = 0; run < 2; run++) {
    w.requiresGrad = true;
    tidy(() => backward(conv2d(x, w, { stride: 2, padding: 1 }), g));
    grads.push(await w.grad!.data());
    w.grad!.dispose();
    w.grad = null;
  }
  assert.deepEqual([...grads[0]], [...grads[1]]);
  for (const t of [x, w, g]) t.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('conv2d rejects bad inputs with clear errors', () => {
  const x = Tensor.from(new Float32Array(2 * 4 * 4 * 3), [2, 4, 4, 3]);
  const w = Tensor.from(new Float32Array(3 * 3 * 2 * 5), [3, 3, 2, 5]);
  const w3 = Tensor.from(new Float32Array(3 * 3 * 3 * 5), [3, 3, 3, 5]);
  const flat = Tensor.from(new Float32Array(48), [16, 3]);
  const xi = Tensor.from(new Int32Array(2 * 4 * 4 * 3), [2, 4, 4, 3], 'i32');
  assert.throws(() => conv2d(x, w), /conv2d: x \[2, 4, 4, 3\] has Cin = 3 but weight \[3, 3, 2, 5\] expects Cin = 2/);
  assert.throws(() => conv2d(flat, w3), /conv2d: x must be NHWC \[N, H, W, Cin\], got shape \[16, 3\]/);
  assert.throws(() => conv2d(x, flat), /conv2d: weight must be \[KH, KW, Cin, Cout\], got shape \[16, 3\]/);
  assert.throws(() => conv2d(xi as unknown as Tensor<'f32'>, w3), /conv2d: x: expected an f32 or f16 tensor, got i32/);
  assert.throws(() => conv2d(x, w3, { stride: 0 }), /stride must be a positive integer/);
  const w7 = Tensor.from(new Float32Array(7 * 7 * 3), [7, 7, 3, 1]);
  assert.throws(() => conv2d(x, w7), /does not fit input 4x4/);
  for (const t of [x, w, w3, w7, flat, xi]) t.dispose();
});
