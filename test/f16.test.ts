/**
 * `--precision f16` kernels against the float64 reference, every GEMM variant forced one by one.
 *
 * Tolerances. The f16 copies are exact functions of their inputs (round to nearest even), so the
 * kernels are checked twice: (1) against the reference run on the f16-rounded inputs, within the f32
 * accumulation bound of test/gemm-bound.ts: this isolates the kernel (f16 loads, f32 accumulation) and
 * would catch a wrong conversion or a lost bit; (2) against the reference on the unrounded inputs within
 * the stated f16 tolerance: each product of two rounded operands is off by at most (2·2^-11 + 2^-22)·|a·b|
 * (unit roundoff of f16 2^-11), plus the f32 accumulation bound, plus 2^-24 per term for operands in
 * f16's subnormal range (|v| < 2^-14, absolute error <= 2^-25 times an operand <= 1, twice).
 */
import { test, before, after } from 'node:test';
import fc from 'fast-check';
import { assert, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { linear, matmul } from '../src/ops/matmul.ts';
import { gemmChoice } from '../src/ops/gemm-variants.ts';
import { fromF16, setWorkingPrecision, toF16, workingPrecision } from '../src/ops/precision.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu, grid } from '../src/gpu/device.ts';
import { declareKernels, dispatchKernel, kernelSource } from '../src/gpu/kernel.ts';
import { readFloat, writeF32 } from '../src/kernels/common.ts';
import { kernelKey } from '../src/gpu/pipelines.ts';
import { refLinear, refLinearBackward, refMatmul, refMatmulBackward } from '../src/ref/matmul.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import type { RefArray } from '../src/ref/array.ts';
import { refRoundF16, roundF16 } from '../src/ref/precision.ts';
import { absOf, assertWithinSumBound, convWithGrads, matmulWithGrads, VARIANTS } from './gemm-bound.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});
after(() => {
  gemmChoice.force(null);
  if (hasF16) setWorkingPrecision('f32');
});

const NO_F16 = 'the adapter has no shader-f16';

/** The stated f16 tolerance of a k-term GEMM result (see the file comment). */
function assertWithinF16Bound(
  actual: ArrayLike<number>,
  expected: RefArray,
  absSum: RefArray,
  k: number,
  what: string,
): void {
  const perTerm = 2 * 2 ** -11 + 2 ** -22 + (k + 4) * 2 ** -24;
  for (let i = 0; i < actual.length; i++) {
    const bound = perTerm * absSum.data[i] + k * 2 ** -24 + 1e-30;
    const err = Math.abs(actual[i] - expected.data[i]);
    if (!(err <= bound))
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${expected.data[i]} (error ${err.toExponential(2)} > f16 bound ${bound.toExponential(2)})`,
      );
  }
}

test('a float binding makes an entry follow the precision: alias in the header, `enable f16;` opening the f16 module', () => {
  const decls = declareKernels('precision', {
    to_float: {
      params: { n: 'u32' },
      bindings: { src: { access: 'read', type: 'f32' }, dst: { access: 'read_write', type: 'float' } },
    },
    plain: { bindings: { v: { access: 'read_write', type: 'f32' } } },
  });
  assert.match(decls.to_float.header, /^alias float = f32;$/m);
  assert.match(decls.to_float.header, /var<storage, read_write> dst: array<float>;/);
  assert.match(decls.to_float.headerF16 ?? '', /^alias float = f16;$/m);
  const f16 = kernelSource(decls.to_float, {}, 'f16');
  assert.equal(f16.directives, 'enable f16; ');
  assert.notEqual(
    kernelKey(f16, { uniforms: true, access: ['read', 'rw'] }),
    kernelKey(kernelSource(decls.to_float), { uniforms: true, access: ['read', 'rw'] }),
  );
  // An entry without float bindings keeps exactly its f32 header and refuses f16.
  assert.equal(decls.plain.headerF16, null);
  assert.doesNotMatch(decls.plain.header, /alias/);
  assert.throws(() => kernelSource(decls.plain, {}, 'f16'), /precision\.plain has no float bindings/);
});

test('roundF16 (the reference) matches known halves', () => {
  assert.equal(roundF16(1), 1);
  assert.equal(roundF16(1 + 2 ** -11), 1); // tie -> even
  assert.equal(roundF16(1 + 3 * 2 ** -11), 1 + 2 ** -9); // tie -> even (up)
  assert.equal(roundF16(65504), 65504);
  assert.equal(roundF16(65519), 65504);
  assert.equal(roundF16(65520), Infinity);
  assert.equal(roundF16(2 ** -24), 2 ** -24); // smallest subnormal
  assert.equal(roundF16(2 ** -26), 0);
  assert.equal(roundF16(-0.1), -0.0999755859375);
});

/** A test that runs in f16, and says it was skipped (and why) on an adapter without shader-f16. */
function f16Test(name: string, fn: () => Promise<void>): void {
  test(name, async (t) => {
    if (!hasF16) return t.skip(NO_F16);
    setWorkingPrecision('f16');
    try {
      await fn();
    } finally {
      setWorkingPrecision('f32');
      gemmChoice.force(null);
    }
  });
}

f16Test('f16 copies round to nearest even and widen back exactly', async () => {
  const values = [
    ...randomValues(1, 4000, -2, 2),
    ...randomValues(2, 1000, -1e-4, 1e-4),
    ...randomValues(3, 500, -7e4, 7e4),
    0,
    -0,
    65504,
    65520,
    2 ** -24,
    1 + 2 ** -11,
  ];
  const x = Tensor.from(Float32Array.from(values), [values.length]);
  const [half, back] = tidy(() => {
    const h = toF16(x);
    return [h, fromF16(h)];
  });
  const got = await back.data();
  const expected = Float32Array.from(values).map(roundF16);
  for (let i = 0; i < values.length; i++)
    assert.ok(Object.is(got[i], expected[i]), `element ${i}: ${values[i]} -> ${got[i]}, expected ${expected[i]}`);
  assert.equal((await half.data()).length, values.length);
  for (const t of [x, half, back]) t.dispose();
});

f16Test('f16 matmul and its gradients match the f64 reference (every variant, transposes)', async () => {
  for (const variant of VARIANTS) {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 48 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer(),
        async (M, N, K, tA, tB, seed) => {
          gemmChoice.force(variant.v);
          const { a, b, g, c } = matmulWithGrads(seed, M, N, K, tA, tB);
          const what = `${variant.name} M${M} N${N} K${K} tA${tA} tB${tB}`;
          const [ra, rb, rg] = [refRoundF16(a.ref), refRoundF16(b.ref), refRoundF16(g.ref)];
          const got = await c.data();
          assertWithinSumBound(
            got,
            refMatmul(ra, rb, tA, tB),
            refMatmul(absOf(ra), absOf(rb), tA, tB),
            K,
            `${what} C (rounded inputs)`,
          );
          assertWithinF16Bound(
            got,
            refMatmul(a.ref, b.ref, tA, tB),
            refMatmul(absOf(a.ref), absOf(b.ref), tA, tB),
            K,
            `${what} C`,
          );
          const exact = refMatmulBackward(rg, ra, rb, tA, tB);
          const bound = refMatmulBackward(absOf(rg), absOf(ra), absOf(rb), tA, tB);
          assertWithinSumBound(await a.gpu.grad!.data(), exact.da, bound.da, N, `${what} dA`);
          assertWithinSumBound(await b.gpu.grad!.data(), exact.db, bound.db, M, `${what} dB`);
          for (const t of [c, a.gpu.grad!, b.gpu.grad!, a.gpu, b.gpu, g.gpu]) t.dispose();
        },
      ),
      { numRuns: Math.max(2, Math.ceil(RUNS / 6)) },
    );
  }
});

f16Test('f16 linear (bias in f32) matches the f64 reference', async () => {
  const x = randomPair(11, [37, 45]);
  const w = randomPair(12, [19, 45]);
  const bias = randomPair(13, [19]);
  const g = randomPair(14, [37, 19]);
  for (const t of [x.gpu, w.gpu, bias.gpu]) t.requiresGrad = true;
  const y = tidy(() => {
    const out = linear(x.gpu, w.gpu, bias.gpu);
    backward(out, g.gpu);
    return out;
  });
  const [rx, rw, rg] = [refRoundF16(x.ref), refRoundF16(w.ref), refRoundF16(g.ref)];
  const absBias = { shape: bias.ref.shape, data: bias.ref.data.map(Math.abs) };
  assertWithinSumBound(await y.data(), refLinear(rx, rw, bias.ref), refLinear(absOf(rx), absOf(rw), absBias), 46, 'y');
  const exact = refLinearBackward(rg, rx, rw);
  const bound = refLinearBackward(absOf(rg), absOf(rx), absOf(rw));
  assertWithinSumBound(await x.gpu.grad!.data(), exact.dx, bound.dx, 19, 'dx');
  assertWithinSumBound(await w.gpu.grad!.data(), exact.dw, bound.dw, 37, 'dw');
  // The bias gradient sums the f32 output gradient: no f16 rounding at all.
  assertWithinSumBound(
    await bias.gpu.grad!.data(),
    refLinearBackward(g.ref, x.ref, w.ref).db,
    refLinearBackward(absOf(g.ref), x.ref, w.ref).db,
    37,
    'db',
  );
  for (const t of [y, x.gpu.grad!, w.gpu.grad!, bias.gpu.grad!, x.gpu, w.gpu, bias.gpu, g.gpu]) t.dispose();
});

f16Test('f16 conv2d forward, dgrad and wgrad match the f64 reference (every variant)', async () => {
  const caseArb = fc
    .record({
      batch: fc.integer({ min: 1, max: 2 }),
      H: fc.integer({ min: 1, max: 9 }),
      W: fc.integer({ min: 1, max: 9 }),
      Cin: fc.integer({ min: 1, max: 12 }),
      Cout: fc.integer({ min: 1, max: 12 }),
      k: fc.constantFrom(1, 3, 7),
      stride: fc.constantFrom(1, 2),
      pad: fc.constantFrom(0, 1, 3),
    })
    .map((c) => ({ ...c, H: Math.max(c.H, c.k - 2 * c.pad), W: Math.max(c.W, c.k - 2 * c.pad) }));
  for (const variant of VARIANTS) {
    await fc.assert(
      fc.asyncProperty(caseArb, fc.integer(), async (c, seed) => {
        gemmChoice.force(variant.v);
        const opts = { stride: c.stride, padding: c.pad };
        const { x, w, g, y } = convWithGrads(seed, [c.batch, c.H, c.W, c.Cin], [c.k, c.k, c.Cin, c.Cout], opts);
        const [rx, rw] = [refRoundF16(x.ref), refRoundF16(w.ref)];
        const expected = refConv2d(rx, rw, opts);
        const rg = refRoundF16(g.ref);
        const what = `${variant.name} x [${c.batch}, ${c.H}, ${c.W}, ${c.Cin}] k${c.k} s${c.stride} p${c.pad} Cout ${c.Cout}`;
        const kk = c.k * c.k;
        const got = await y.data();
        assertWithinSumBound(
          got,
          expected,
          refConv2d(absOf(rx), absOf(rw), opts),
          kk * c.Cin,
          `${what} y (rounded inputs)`,
        );
        assertWithinF16Bound(
          got,
          refConv2d(x.ref, w.ref, opts),
          refConv2d(absOf(x.ref), absOf(w.ref), opts),
          kk * c.Cin,
          `${what} y`,
        );
        const exact = refConv2dBackward(rg, rx, rw, opts);
        const bound = refConv2dBackward(absOf(rg), absOf(rx), absOf(rw), opts);
        const positions = c.batch * expected.shape[1] * expected.shape[2];
        assertWithinSumBound(await x.gpu.grad!.data(), exact.dx, bound.dx, kk * c.Cout, `${what} dx`);
        assertWithinSumBound(await w.gpu.grad!.data(), exact.dw, bound.dw, positions, `${what} dw`);
        for (const t of [y, x.gpu.grad!, w.gpu.grad!, x.gpu, w.gpu, g.gpu]) t.dispose();
      }),
      { numRuns: Math.max(2, Math.ceil(RUNS / 6)) },
    );
  }
});

f16Test(
  "an entry launched in f32 and in f16 in one process runs each precision's module, in either order",
  async () => {
    // Values exact in f16, so both precisions must give them back bit-exactly.
    const values = Float32Array.from({ length: 300 }, (_, i) => (i - 150) * 0.25);
    const asF32 = Tensor.from(values, [values.length]);
    const asF16 = toF16(asF32);
    const sources = { f32: asF32, f16: asF16 };
    for (const order of [
      ['f32', 'f16'],
      ['f16', 'f32'],
    ] as const) {
      // A fresh declaration of from_float: no pipeline of it exists yet, so the first launch compiles it.
      const fresh = declareKernels('precision', {
        from_float: { params: { n: 'u32' }, bindings: { src: readFloat, dst: writeF32 } },
      }).from_float;
      for (const precision of order) {
        const out = Tensor.empty([values.length], 'f32');
        dispatchKernel(fresh, {
          params: { n: values.length },
          bindings: { src: sources[precision].buffer, dst: out.buffer },
          precision,
          workgroups: grid(Math.ceil(values.length / 256)),
        });
        assert.deepEqual(await out.data(), values, `${precision} launched after ${order[0]}: widened values`);
        out.dispose();
      }
    }
    for (const t of [asF32, asF16]) t.dispose();
  },
);

f16Test('f16 GEMMs leak no buffers, and precision f32 is restored to the plain kernels', async () => {
  const base = gpu().pool.liveCount;
  const [ap, bp] = [randomPair(21, [16, 24]), randomPair(22, [24, 8])];
  const [a, b] = [ap.gpu, bp.gpu];
  const c16 = tidy(() => matmul(a, b));
  setWorkingPrecision('f32');
  assert.equal(workingPrecision(), 'f32');
  const c32 = tidy(() => matmul(a, b));
  const [h, f] = [await c16.data(), await c32.data()];
  // The same GEMM entry ran in f16 first: the f32 launch must still run the f32 module.
  const [absA, absB] = [absOf(ap.ref), absOf(bp.ref)];
  assertWithinSumBound(f, refMatmul(ap.ref, bp.ref), refMatmul(absA, absB), 24, 'f32 C after the f16 GEMM');
  assert.ok(
    h.some((v, i) => v !== f[i]),
    'the f16 result differs from the f32 one somewhere (the copies were used)',
  );
  for (const t of [a, b, c16, c32]) t.dispose();
  assert.equal(gpu().pool.liveCount, base);
});
