/**
 * f16 activations between ops (`--precision f16`): conv2d writing f16, batch norm, ReLU, residual add and
 * pooling on f16 storage, against the float64 reference run on the f16 inputs (f16 activations are exact
 * f16 values, so the reference sees exactly what the kernels read). Every GEMM variant is forced for the
 * conv, and the split-K path (whose ordered sum rounds the f16 output) is forced too.
 *
 * Stated tolerances. A result computed in f32 and rounded once to f16 on store is off from the exact value
 * by its f32 error e32 plus the rounding: |got - exact| <= e32 + 2^-11·(|exact| + e32) + 2^-25 (half an f16
 * ulp relative, 2^-25 absolute in f16's subnormal range). e32 is the f32 tolerance of the same op on f32
 * storage: the GEMM sum bound of test/gemm-bound.ts ((k + 4)·2^-24·Σ|a·b|), batch norm's 1e-4 relative +
 * 1e-5 absolute on unit-scale data (test/batchnorm.test.ts), a sum of k terms k·2^-24·Σ|terms| for pooling.
 * ReLU and max pooling only select f16 values: exact. Gradients are f32 and get the f32 tolerances.
 */
import { test, before, after } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { gemmChoice } from '../src/ops/gemm-variants.ts';
import { conv2d } from '../src/ops/conv.ts';
import { runGemm, setTensorCoreGemm, type PlainGemm } from '../src/ops/matmul.ts';
import { batchNorm } from '../src/ops/batchnorm.ts';
import { add, relu } from '../src/ops/elementwise.ts';
import { avgPool2d, globalAvgPool, maxPool2d } from '../src/ops/pool.ts';
import { fromF16, setWorkingPrecision, toF16 } from '../src/ops/precision.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { declareKernels, kernelSource } from '../src/gpu/kernel.ts';
import { kernelKey } from '../src/gpu/pipelines.ts';
import { readF32 } from '../src/kernels/common.ts';
import { ConvNetS, ResNet } from '../src/models/backbones.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import { refMatmul } from '../src/ref/matmul.ts';
import { refBatchNorm, refBatchNormBackward } from '../src/ref/batchnorm.ts';
import { refRelu, refReluBackward } from '../src/ref/elementwise.ts';
import {
  refAvgPool2d,
  refAvgPool2dBackward,
  refGlobalAvgPool,
  refGlobalAvgPoolBackward,
  refMaxPool2d,
  refMaxPool2dBackward,
} from '../src/ref/pool.ts';
import { refArray, refMap, refZip, type RefArray } from '../src/ref/array.ts';
import { refRoundF16 } from '../src/ref/precision.ts';
import { Rng } from '../src/util/rng.ts';
import { assertWithinSumBound, VARIANTS } from './gemm-bound.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});
after(() => {
  gemmChoice.force(null);
  if (hasF16) setWorkingPrecision('f32');
});

const U = 2 ** -24;
const HALF_ULP = 2 ** -11;
const absOf = (a: RefArray): RefArray => refMap(a, Math.abs);

/** An f32 tensor's f16 activation and the reference's view of it (the same f16 values, in f64). */
function halfPair(seed: number, shape: number[], lo = -1, hi = 1): { ref: RefArray; gpu: Tensor<'f16'> } {
  const pair = randomPair(seed, shape, lo, hi);
  const half = toF16(pair.gpu);
  pair.gpu.dispose();
  return { ref: refRoundF16(pair.ref), gpu: half };
}

/** The values of an f16 tensor, widened exactly. */
async function halfValues(t: Tensor<'f16'>): Promise<Float32Array> {
  const wide = fromF16(t);
  const values = await wide.data();
  wide.dispose();
  return values;
}

/** |got - exact| <= e32 + 2^-11·(|exact| + e32) + 2^-25 elementwise, e32 given per element (file comment). */
function assertRoundedOnce(got: ArrayLike<number>, exact: RefArray, e32: (i: number) => number, what: string): void {
  assert.equal(got.length, exact.data.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    const e = e32(i);
    const bound = e + HALF_ULP * (Math.abs(exact.data[i]) + e) + 2 ** -25;
    const err = Math.abs(got[i] - exact.data[i]);
    if (!(err <= bound))
      assert.fail(
        `${what}: element ${i} is ${got[i]}, expected ${exact.data[i]} (error ${err.toExponential(2)} > f16 bound ${bound.toExponential(2)})`,
      );
  }
}

test("a 'storage' template constant types a binding per dispatch: an alias after the header, f16 enabled when f16", () => {
  const decl = declareKernels('gemm', {
    sum_splits: {
      params: { M: 'u32', N: 'u32', splits: 'u32' },
      bindings: { parts: readF32, bias: readF32, out: { access: 'read_write', type: 'OUT_T' } },
      defines: { HAS_BIAS: 'bool', OUT_T: 'storage' },
      sample: { HAS_BIAS: false, OUT_T: 'f32' },
    },
  }).sum_splits;
  assert.match(decl.header, /var<storage, read_write> out: array<OUT_T>;/);
  const f32 = kernelSource(decl, { HAS_BIAS: false, OUT_T: 'f32' });
  const f16 = kernelSource(decl, { HAS_BIAS: false, OUT_T: 'f16' });
  assert.match(f32.header, /^alias OUT_T = f32;$/m);
  assert.equal(f32.directives, undefined, 'an f32 storage constant enables nothing');
  assert.match(f16.header, /^alias OUT_T = f16;$/m);
  assert.equal(f16.directives, 'enable f16; ');
  const layout = { uniforms: true, access: ['read', 'read', 'rw'] as const };
  assert.notEqual(
    kernelKey(f32, { ...layout, access: [...layout.access] }),
    kernelKey(f16, { ...layout, access: [...layout.access] }),
  );
  assert.throws(() => kernelSource(decl, { HAS_BIAS: false, OUT_T: 'u32' as 'f32' }), /OUT_T is u32, not f32 or f16/);
  assert.throws(
    () => declareKernels('gemm', { sum_splits: { bindings: { out: { access: 'read_write', type: 'OUT_T' } } } }),
    /binding out has type OUT_T, which is no element type and no 'storage' constant/,
  );
});

/** A test that runs under --precision f16, and says it was skipped (and why) without shader-f16. */
function f16Test(name: string, fn: () => Promise<void>): void {
  test(name, async (t) => {
    if (!hasF16) return t.skip('the adapter has no shader-f16');
    setWorkingPrecision('f16');
    const live = gpu().pool.liveCount;
    try {
      await fn();
      assert.equal(gpu().pool.liveCount, live, 'every buffer released');
    } finally {
      setWorkingPrecision('f32');
      gemmChoice.force(null);
    }
  });
}

f16Test('conv2d writes f16 activations rounded once from the f32 sum (every GEMM variant), gradients f32', async () => {
  const caseArb = fc
    .record({
      batch: fc.integer({ min: 1, max: 2 }),
      H: fc.integer({ min: 1, max: 8 }),
      W: fc.integer({ min: 1, max: 8 }),
      Cin: fc.integer({ min: 1, max: 10 }),
      Cout: fc.integer({ min: 1, max: 12 }),
      k: fc.constantFrom(1, 3),
      stride: fc.constantFrom(1, 2),
      pad: fc.constantFrom(0, 1),
    })
    .map((c) => ({ ...c, H: Math.max(c.H, c.k - 2 * c.pad), W: Math.max(c.W, c.k - 2 * c.pad) }));
  for (const variant of VARIANTS) {
    await fc.assert(
      fc.asyncProperty(caseArb, fc.integer(), async (c, seed) => {
        gemmChoice.force(variant.v);
        const opts = { stride: c.stride, padding: c.pad };
        const x = halfPair(seed, [c.batch, c.H, c.W, c.Cin]);
        const w = randomPair(seed + 1, [c.k, c.k, c.Cin, c.Cout]);
        const rw = refRoundF16(w.ref);
        const expected = refConv2d(x.ref, rw, opts);
        const absSum = refConv2d(absOf(x.ref), absOf(rw), opts);
        const g = randomPair(seed + 2, expected.shape);
        x.gpu.requiresGrad = true;
        w.gpu.requiresGrad = true;
        const y = tidy(() => {
          const out = conv2d(x.gpu, w.gpu, { ...opts, dtype: 'f16' });
          backward(out, g.gpu);
          return out;
        });
        assert.equal(y.dtype, 'f16');
        const what = `${variant.name} x [${c.batch}, ${c.H}, ${c.W}, ${c.Cin}] k${c.k} s${c.stride} p${c.pad} Cout ${c.Cout}`;
        const kk = c.k * c.k * c.Cin;
        assertRoundedOnce(await halfValues(y), expected, (i) => (kk + 4) * U * absSum.data[i], `${what} y`);
        const rg = refRoundF16(g.ref); // the GEMMs read f16 copies of the f32 output gradient
        const exact = refConv2dBackward(rg, x.ref, rw, opts);
        const bound = refConv2dBackward(absOf(rg), absOf(x.ref), absOf(rw), opts);
        assert.equal(x.gpu.grad!.dtype, 'f32');
        assertWithinSumBound(await x.gpu.grad!.data(), exact.dx, bound.dx, c.k * c.k * c.Cout, `${what} dx`);
        const positions = c.batch * expected.shape[1] * expected.shape[2];
        assertWithinSumBound(await w.gpu.grad!.data(), exact.dw, bound.dw, positions, `${what} dw`);
        for (const t of [y, x.gpu.grad!, w.gpu.grad!, x.gpu, w.gpu, g.gpu]) t.dispose();
      }),
      { numRuns: Math.max(2, Math.ceil(RUNS / 6)) },
    );
  }
});

f16Test('a split-K GEMM rounds its f16 output in the ordered sum of the f32 partials', async () => {
  for (const [M, N, K, splits] of [
    [5, 7, 40, 3],
    [33, 12, 100, 4],
    [8, 1, 9, 9],
  ]) {
    const a = halfPair(M + N, [M, K]);
    const b = halfPair(K + splits, [K, N]);
    const out = Tensor.empty([M, N], 'f16');
    runGemm({
      mode: 'matmul',
      M,
      N,
      K,
      a: a.gpu.buffer,
      b: b.gpu.buffer,
      out: out.buffer,
      precision: 'f16',
      outPrecision: 'f16',
      splits,
    });
    const exact = refMatmul(a.ref, b.ref);
    const absSum = refMatmul(absOf(a.ref), absOf(b.ref));
    assertRoundedOnce(
      await halfValues(out),
      exact,
      (i) => (K + 4) * U * absSum.data[i],
      `${M}x${N}x${K} in ${splits} splits`,
    );
    for (const t of [a.gpu, b.gpu, out]) t.dispose();
  }
});

f16Test(
  'batch norm on f16 activations: f32 statistics, f16 output, f32 gradients (training, eval, fused ReLU)',
  async () => {
    const shapeArb = fc
      .oneof(
        fc.tuple(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 20 })),
        fc.tuple(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 70 }),
        ),
      )
      .filter((s) => s.slice(0, -1).reduce((p, q) => p * q, 1) >= 2);
    await fc.assert(
      fc.asyncProperty(shapeArb, fc.integer(), fc.boolean(), fc.boolean(), async (shape, seed, training, fusedRelu) => {
        const channels = shape[shape.length - 1];
        const x = halfPair(seed, [...shape], -2, 2);
        const weight = randomPair(seed + 1, [channels], 0.5, 1.5);
        const bias = randomPair(seed + 2, [channels]);
        const runningMean = randomPair(seed + 3, [channels]);
        const runningVar = randomPair(seed + 4, [channels], 0.5, 2);
        const refOpts = {
          training,
          runningMean: runningMean.ref,
          runningVar: runningVar.ref,
          momentum: 0.1,
          eps: 1e-5,
        };
        const state = { runningMean: runningMean.gpu, runningVar: runningVar.gpu, momentum: 0.1, eps: 1e-5 };
        const g = randomPair(seed + 5, [...shape]);
        x.gpu.requiresGrad = true;
        weight.gpu.requiresGrad = true;
        bias.gpu.requiresGrad = true;
        const y = tidy(() => {
          const out = batchNorm(x.gpu, state, weight.gpu, bias.gpu, training, { relu: fusedRelu });
          backward(out, g.gpu);
          return out;
        });
        assert.equal(y.dtype, 'f16');
        const r = refBatchNorm(x.ref, weight.ref, bias.ref, refOpts);
        const expected = fusedRelu ? refRelu(r.out) : r.out;
        const got = await halfValues(y);
        const what = `${training ? 'training' : 'eval'} ${JSON.stringify(shape)}${fusedRelu ? ' +relu' : ''}`;
        assertRoundedOnce(got, expected, (i) => 1e-5 + 1e-4 * Math.abs(expected.data[i]), `out ${what}`);
        if (training) {
          assertClose(
            await runningMean.gpu.data(),
            r.runningMean.data,
            { rtol: 1e-5, atol: 1e-6 },
            `runningMean ${what}`,
          );
          assertClose(await runningVar.gpu.data(), r.runningVar.data, { rtol: 1e-4, atol: 1e-6 }, `runningVar ${what}`);
        }
        // The fused ReLU masks the gradient by the saved f16 output: the mask is the kernel's own forward.
        const gm = fusedRelu ? refZip(g.ref, refArray([...shape], got), (gv, yv) => (yv > 0 ? gv : 0)) : g.ref;
        const rg = refBatchNormBackward(gm, x.ref, weight.ref, refOpts);
        const rows = x.ref.data.length / channels;
        assertClose(await x.gpu.grad!.data(), rg.dx.data, { rtol: 1e-4, atol: 1e-4 }, `dx ${what}`);
        const sums = { rtol: 1e-4, atol: 64 * U * rows * 4 };
        assertClose(await weight.gpu.grad!.data(), rg.dweight.data, sums, `dweight ${what}`);
        assertClose(await bias.gpu.grad!.data(), rg.dbias.data, sums, `dbias ${what}`);
        for (const t of [y, x.gpu, weight.gpu, bias.gpu, runningMean.gpu, runningVar.gpu, g.gpu]) t.dispose();
        for (const t of [x.gpu, weight.gpu, bias.gpu]) t.grad?.dispose();
      }),
      { numRuns: RUNS },
    );
  },
);

f16Test('ReLU, residual add and pooling keep f16 activations f16; the global average pool gives f32', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        h: fc.integer({ min: 2, max: 7 }),
        w: fc.integer({ min: 2, max: 7 }),
        c: fc.integer({ min: 1, max: 9 }),
        kernel: fc.constantFrom(2, 3),
        stride: fc.constantFrom(1, 2),
      }),
      fc.integer(),
      async (s, seed) => {
        const shape = [s.n, s.h, s.w, s.c];
        const pool = { kernel: Math.min(s.kernel, s.h, s.w), stride: s.stride, padding: 0 };
        const a = halfPair(seed, shape);
        const b = halfPair(seed + 1, shape);
        const sum = add(a.gpu, b.gpu);
        const r = relu(sum);
        const mp = maxPool2d(r, pool);
        const ap = avgPool2d(r, pool);
        const gp = globalAvgPool(r);
        for (const t of [sum, r, mp, ap]) assert.equal(t.dtype, 'f16');
        assert.equal(gp.dtype, 'f32');
        const what = JSON.stringify({ ...s, seed });
        const exactSum = refZip(a.ref, b.ref, (p, q) => p + q);
        // a + b of two f16 values in f32 (one f32 rounding), then rounded to f16
        const gotSum = await halfValues(sum);
        assertRoundedOnce(gotSum, exactSum, (i) => U * Math.abs(exactSum.data[i]), `add ${what}`);
        const rSum = refArray(shape, gotSum); // the next ops read the f16 sum itself
        assert.deepEqual(Array.from(await halfValues(r)), Array.from(refRelu(rSum).data), `relu ${what}`);
        const rRelu = refRelu(rSum);
        assert.deepEqual(
          Array.from(await halfValues(mp)),
          Array.from(refMaxPool2d(rRelu, pool).out.data),
          `maxPool ${what}`,
        );
        const expAvg = refAvgPool2d(rRelu, pool);
        const kk = pool.kernel * pool.kernel;
        assertRoundedOnce(
          await halfValues(ap),
          expAvg,
          (i) => (kk + 1) * U * Math.abs(expAvg.data[i]),
          `avgPool ${what}`,
        );
        const expGap = refGlobalAvgPool(rRelu);
        assertClose(await gp.data(), expGap.data, { rtol: (s.h * s.w + 1) * U, atol: 1e-30 }, `globalAvgPool ${what}`);
        // Gradients (f32) of sum(gm·maxPool) + sum(ga·avgPool) + sum(gg·gap) through relu and add.
        const gm = randomPair(seed + 2, [...mp.shape]);
        const ga = randomPair(seed + 3, [...ap.shape]);
        const gg = randomPair(seed + 4, [...gp.shape]);
        a.gpu.requiresGrad = true;
        b.gpu.requiresGrad = true;
        // backward releases the graph it ran through, so each pool gets its own pass; a and b accumulate.
        tidy(() => backward(maxPool2d(relu(add(a.gpu, b.gpu)), pool), gm.gpu));
        tidy(() => backward(avgPool2d(relu(add(a.gpu, b.gpu)), pool), ga.gpu));
        tidy(() => backward(globalAvgPool(relu(add(a.gpu, b.gpu))), gg.gpu));
        const dr = refZip(
          refZip(refMaxPool2dBackward(gm.ref, rRelu, pool), refAvgPool2dBackward(ga.ref, rRelu, pool), (p, q) => p + q),
          refGlobalAvgPoolBackward(gg.ref, rRelu),
          (p, q) => p + q,
        );
        const dsum = refReluBackward(dr, rSum);
        assert.equal(a.gpu.grad!.dtype, 'f32');
        const tol = { rtol: 1e-5, atol: 1e-6 };
        assertClose(await a.gpu.grad!.data(), dsum.data, tol, `d a ${what}`);
        assertClose(await b.gpu.grad!.data(), dsum.data, tol, `d b ${what}`);
        for (const t of [sum, r, mp, ap, gp, gm.gpu, ga.gpu, gg.gpu, a.gpu.grad!, b.gpu.grad!, a.gpu, b.gpu])
          t.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

f16Test('with the tensor-core path on, f16 outputs are rounded from its f32 result (a stand-in runner)', async () => {
  // The subgroup-matrix kernel cannot compile on lavapipe; a stand-in with its contract (f16 A and B, f32 C)
  // takes its place, so the matmul and im2col-conv branches that round its output to f16 run here.
  let calls = 0;
  const standIn: PlainGemm = (a, b, out, M, N, K) => {
    calls++;
    setTensorCoreGemm(null);
    runGemm({ mode: 'matmul', M, N, K, a, b, out, precision: 'f16' });
    setTensorCoreGemm(standIn);
  };
  setTensorCoreGemm(standIn);
  try {
    const opts = { stride: 1, padding: 1 };
    const x = halfPair(11, [2, 5, 6, 3]);
    const w = randomPair(12, [3, 3, 3, 8]);
    const rw = refRoundF16(w.ref);
    const y = conv2d(x.gpu, w.gpu, { ...opts, dtype: 'f16' });
    const exact = refConv2d(x.ref, rw, opts);
    const absSum = refConv2d(absOf(x.ref), absOf(rw), opts);
    assertRoundedOnce(await halfValues(y), exact, (i) => (27 + 4) * U * absSum.data[i], 'im2col conv');
    const [M, N, K] = [9, 12, 20];
    const a = halfPair(13, [M, K]);
    const b = halfPair(14, [N, K]);
    const out = Tensor.empty([M, N], 'f16');
    runGemm({
      mode: 'matmul',
      M,
      N,
      K,
      transB: true,
      a: a.gpu.buffer,
      b: b.gpu.buffer,
      out: out.buffer,
      precision: 'f16',
      outPrecision: 'f16',
    });
    const bt = refArray(
      [K, N],
      Array.from({ length: K * N }, (_, i) => b.ref.data[(i % N) * K + Math.floor(i / N)]),
    );
    const mm = refMatmul(a.ref, bt);
    const mmAbs = refMatmul(absOf(a.ref), absOf(bt));
    assertRoundedOnce(await halfValues(out), mm, (i) => (K + 4) * U * mmAbs.data[i], 'matmul A·Bᵀ');
    assert.equal(calls, 2, 'both went through the tensor-core runner');
    for (const t of [x.gpu, w.gpu, y, a.gpu, b.gpu, out]) t.dispose();
  } finally {
    setTensorCoreGemm(null);
  }
});

/** Bytes live after a training-mode forward (the activations the backward pass keeps), and the features. */
async function forwardBytes(
  build: () => ConvNetS | ResNet,
  x: Tensor<'f32'>,
): Promise<{ bytes: number; features: Float32Array }> {
  const model = build();
  for (const p of model.parameters()) p.requiresGrad = true;
  const before = gpu().pool.liveByteCount;
  const features = tidy(() => {
    const f = model.forward(x);
    const bytes = gpu().pool.liveByteCount - before;
    backward(f, Tensor.from(new Float32Array(f.size).fill(1 / f.size), [...f.shape]));
    return { f, bytes };
  });
  const values = await features.f.data();
  features.f.dispose();
  for (const p of model.parameters()) p.grad?.dispose();
  model.dispose();
  return { bytes: features.bytes, features: values };
}

test('--precision f16 halves the bytes a forward keeps for backward, with features in the f16 band of f32', async (t) => {
  if (!hasF16) return t.skip('the adapter has no shader-f16');
  const live = gpu().pool.liveCount;
  for (const [name, build, shape] of [
    ['convnet-s', () => new ConvNetS(1, new Rng(1)), [4, 28, 28, 1]],
    ['resnet18', () => new ResNet(18, 3, 'cifar', new Rng(1)), [2, 12, 12, 3]],
  ] as const) {
    const x = Tensor.from(randomValues(7, shape[0] * shape[1] * shape[2] * shape[3]), [...shape]);
    const f32 = await forwardBytes(build, x);
    setWorkingPrecision('f16');
    let f16: { bytes: number; features: Float32Array };
    try {
      f16 = await forwardBytes(build, x);
    } finally {
      setWorkingPrecision('f32');
    }
    x.dispose();
    // Every saved conv, BN and ReLU output is half as large; the argmax, BN statistics and the weights'
    // f16 copies are what keeps the ratio above 1/2.
    assert.ok(f16.bytes < 0.6 * f32.bytes, `${name}: ${f16.bytes} bytes under f16 vs ${f32.bytes} under f32`);
    // Rounding every activation to f16 (relative 2^-11 per op, through ~20 ops and batch norms over few rows)
    // moves the features by well under 5% in norm; a wrong kernel moves them by order 1.
    let diff = 0;
    let norm = 0;
    for (let i = 0; i < f32.features.length; i++) {
      diff += (f16.features[i] - f32.features[i]) ** 2;
      norm += f32.features[i] ** 2;
    }
    assert.ok(Math.sqrt(diff / norm) < 0.05, `${name}: features differ by ${Math.sqrt(diff / norm)} in relative norm`);
  }
  assert.equal(gpu().pool.liveCount, live);
});
