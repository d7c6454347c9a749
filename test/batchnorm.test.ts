import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomPair, randomValues, setupGpu, RUNS } from './helpers.ts';
import { batchNorm, type BatchNormState } from '../src/ops/batchnorm.ts';
import { backward, noGrad } from '../src/tensor/autograd.ts';
import { keep, tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { refBatchNorm, refBatchNormBackward, type RefBatchNormOptions } from '../src/ref/batchnorm.ts';
import { finiteDifference, refArray, refDot, type RefArray } from '../src/ref/array.ts';
import { refRelu } from '../src/ref/elementwise.ts';
import { add, relu } from '../src/ops/elementwise.ts';
import { fromF16, toF16 } from '../src/ops/precision.ts';

before(async () => {
  await setupGpu();
});

const F32_EPS = 2 ** -23;

/** f32-rounded values as a reference array (what the GPU tensor holds). */
function ref32(shape: number[], values: ArrayLike<number>): RefArray {
  return refArray(shape, Float32Array.from(values));
}

/** Bitwise equality of two f32 arrays (a plain loop: deepEqual on millions of elements is slow under Deno). */
function assertBitEqual(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths differ`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} differs between runs: ${a[i]} vs ${b[i]}`);
}

interface Setup {
  x: { ref: RefArray; gpu: Tensor<'f32'> };
  weight: { ref: RefArray; gpu: Tensor<'f32'> } | null;
  bias: { ref: RefArray; gpu: Tensor<'f32'> } | null;
  state: BatchNormState;
  refOpts: RefBatchNormOptions;
  dispose(): void;
}

function setup(
  shape: number[],
  seed: number,
  affine: 'affine' | 'none' | 'weight',
  offset: number,
  eps: number,
  momentum: number,
  training: boolean,
): Setup {
  const channels = shape[shape.length - 1];
  const x = randomPair(seed, shape, offset - 1, offset + 1);
  const weight = affine === 'none' ? null : randomPair(seed + 1, [channels], 0.5, 1.5);
  const bias = affine === 'affine' ? randomPair(seed + 2, [channels]) : null;
  const rm = ref32([channels], randomValues(seed + 3, channels, -0.5, 0.5));
  const rv = ref32([channels], randomValues(seed + 4, channels, 0.5, 2));
  const state: BatchNormState = {
    runningMean: Tensor.from(rm.data, [channels]),
    runningVar: Tensor.from(rv.data, [channels]),
    momentum,
    eps,
  };
  return {
    x,
    weight,
    bias,
    state,
    refOpts: { training, runningMean: rm, runningVar: rv, momentum: Math.fround(momentum), eps: Math.fround(eps) },
    dispose() {
      for (const t of [x.gpu, weight?.gpu, bias?.gpu, state.runningMean, state.runningVar]) {
        if (!t) continue;
        t.grad?.dispose();
        t.dispose();
      }
    },
  };
}

/**
 * Tolerances. f32 rounding of (x - mean) is a few ulps of |x| ≤ 1 + |offset|, and the normalised
 * output multiplies it by the per-channel scale |w|/σ (up to 1/sqrt(eps) when a channel is nearly
 * constant, as with two nearly equal rows); variance and the per-channel sums (Σdy, Σdy·x̂) over `rows`
 * terms add a relative error of order rows·ε in the worst case. So the absolute tolerance is
 * 64·ε·(1 + |offset|)·maxScale plus a rows-proportional part for sums, and rtol is 1e-4.
 */
function tolerances(r: { variance: Float64Array }, weight: RefArray | null, eps: number, offset: number, rows: number) {
  let maxScale = 0;
  r.variance.forEach((v, c) => {
    maxScale = Math.max(maxScale, Math.abs(weight ? weight.data[c] : 1) / Math.sqrt(v + eps));
  });
  const base = 64 * F32_EPS * (1 + Math.abs(offset)) * Math.max(1, maxScale);
  return {
    out: { rtol: 1e-4, atol: base },
    dx: { rtol: 1e-4, atol: base * Math.max(1, maxScale) },
    sums: { rtol: 1e-4, atol: 64 * F32_EPS * rows * (1 + Math.abs(offset)) * Math.max(1, maxScale) },
  };
}

const shapeArb = fc
  .oneof(
    fc.tuple(fc.integer({ min: 2, max: 9 }), fc.integer({ min: 1, max: 9 })).map(([b, c]) => [b, c]),
    fc
      .tuple(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 70 }),
      )
      .map(([n, h, w, c]) => [n, h, w, c]),
  )
  .filter((s) => s.slice(0, -1).reduce((a, b) => a * b, 1) >= 2);

test('reference batch-norm gradients match finite differences (training and eval)', () => {
  for (const training of [true, false]) {
    for (const shape of [
      [3, 2],
      [2, 2, 2, 3],
    ]) {
      const channels = shape[shape.length - 1];
      const x = refArray(
        shape,
        randomValues(
          1,
          shape.reduce((a, b) => a * b, 1),
        ),
      );
      const g = refArray(shape, randomValues(2, x.data.length));
      const w = refArray([channels], randomValues(3, channels, 0.5, 1.5));
      const b = refArray([channels], randomValues(4, channels));
      const opts: RefBatchNormOptions = {
        training,
        runningMean: refArray([channels], randomValues(5, channels)),
        runningVar: refArray([channels], randomValues(6, channels, 0.5, 2)),
        momentum: 0.1,
        eps: 1e-5,
      };
      const grads = refBatchNormBackward(g, x, w, opts);
      const tol = { rtol: 1e-5, atol: 1e-6 };
      const what = `${training ? 'training' : 'eval'} ${JSON.stringify(shape)}`;
      assertClose(
        grads.dx.data,
        finiteDifference((v) => refDot(g, refBatchNorm(v, w, b, opts).out), x).data,
        tol,
        `dx ${what}`,
      );
      assertClose(
        grads.dweight.data,
        finiteDifference((v) => refDot(g, refBatchNorm(x, v, b, opts).out), w).data,
        tol,
        `dweight ${what}`,
      );
      assertClose(
        grads.dbias.data,
        finiteDifference((v) => refDot(g, refBatchNorm(x, w, v, opts).out), b).data,
        tol,
        `dbias ${what}`,
      );
    }
  }
});

async function checkAgainstReference(
  shape: number[],
  seed: number,
  affine: 'affine' | 'none' | 'weight',
  offset: number,
  eps: number,
  momentum: number,
  training: boolean,
  gradX: boolean,
): Promise<void> {
  const s = setup(shape, seed, affine, offset, eps, momentum, training);
  const gOut = randomPair(seed + 9, shape);
  s.x.gpu.requiresGrad = gradX || !s.weight;
  if (s.weight) s.weight.gpu.requiresGrad = true;
  if (s.bias) s.bias.gpu.requiresGrad = true;
  const out = tidy(() => {
    const y = batchNorm(s.x.gpu, s.state, s.weight?.gpu ?? null, s.bias?.gpu ?? null, training);
    backward(y, gOut.gpu);
    return y;
  });
  const r = refBatchNorm(s.x.ref, s.weight?.ref ?? null, s.bias?.ref ?? null, s.refOpts);
  const rg = refBatchNormBackward(gOut.ref, s.x.ref, s.weight?.ref ?? null, s.refOpts);
  const rows = s.x.ref.data.length / shape[shape.length - 1];
  const tol = tolerances(r, s.weight?.ref ?? null, s.refOpts.eps, offset, rows);
  const what = `${training ? 'training' : 'eval'} ${JSON.stringify(shape)} ${affine} offset ${offset}`;
  assertClose(await out.data(), r.out.data, tol.out, `out ${what}`);
  assertClose(
    await s.state.runningMean.data(),
    r.runningMean.data,
    { rtol: 1e-5, atol: 1e-6 * (1 + offset) },
    `runningMean ${what}`,
  );
  assertClose(await s.state.runningVar.data(), r.runningVar.data, { rtol: 1e-4, atol: 1e-6 }, `runningVar ${what}`);
  if (s.x.gpu.requiresGrad) assertClose(await s.x.gpu.grad!.data(), rg.dx.data, tol.dx, `dx ${what}`);
  else assert.equal(s.x.gpu.grad, null);
  if (s.weight) assertClose(await s.weight.gpu.grad!.data(), rg.dweight.data, tol.sums, `dweight ${what}`);
  if (s.bias) assertClose(await s.bias.gpu.grad!.data(), rg.dbias.data, tol.sums, `dbias ${what}`);
  out.dispose();
  gOut.gpu.dispose();
  s.dispose();
}

test('training: forward, running stats and gradients match the f64 reference', async () => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb,
      fc.integer(),
      fc.constantFrom<'affine' | 'none' | 'weight'>('affine', 'none', 'weight'),
      fc.constantFrom(0, 10),
      fc.constantFrom(1e-5, 1e-3),
      fc.constantFrom(0.1, 0.5, 1),
      fc.boolean(),
      (shape, seed, affine, offset, eps, momentum, gradX) =>
        checkAgainstReference(shape, seed, affine, offset, eps, momentum, true, gradX),
    ),
    { numRuns: RUNS * 2 },
  );
});

test('eval: forward and gradients use the running stats (batch 1 allowed)', async () => {
  const evalShapes = fc.oneof(
    fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 })).map(([b, c]) => [b, c]),
    fc
      .tuple(
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 20 }),
      )
      .map(([n, h, w, c]) => [n, h, w, c]),
  );
  await fc.assert(
    fc.asyncProperty(
      evalShapes,
      fc.integer(),
      fc.constantFrom<'affine' | 'none' | 'weight'>('affine', 'none', 'weight'),
      fc.boolean(),
      (shape, seed, affine, gradX) => checkAgainstReference(shape, seed, affine, 0, 1e-5, 0.1, false, gradX),
    ),
    { numRuns: RUNS },
  );
});

test('fused BN + ReLU: bit-identical to relu(batchNorm(x)) on the GPU, and matches the f64 reference', async () => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb,
      fc.integer(),
      fc.constantFrom<'affine' | 'none' | 'weight'>('affine', 'none', 'weight'),
      fc.boolean(),
      async (shape, seed, affine, training) => {
        const gOut = randomPair(seed + 9, shape);
        const run = async (fused: boolean) => {
          const s = setup(shape, seed, affine, 0, 1e-5, 0.1, training);
          for (const t of [s.x.gpu, s.weight?.gpu, s.bias?.gpu]) if (t) t.requiresGrad = true;
          const y = tidy(() => {
            const out = fused
              ? batchNorm(s.x.gpu, s.state, s.weight?.gpu ?? null, s.bias?.gpu ?? null, training, { relu: true })
              : relu(batchNorm(s.x.gpu, s.state, s.weight?.gpu ?? null, s.bias?.gpu ?? null, training));
            backward(out, gOut.gpu);
            return out;
          });
          const result = {
            out: await y.data(),
            dx: await s.x.gpu.grad!.data(),
            dweight: s.weight ? await s.weight.gpu.grad!.data() : null,
            dbias: s.bias ? await s.bias.gpu.grad!.data() : null,
            runningVar: await s.state.runningVar.data(),
            s,
          };
          y.dispose();
          return result;
        };
        const fused = await run(true);
        const plain = await run(false);
        const what = `${training ? 'training' : 'eval'} ${JSON.stringify(shape)} ${affine}`;
        assertBitEqual(fused.out, plain.out, `out ${what}`);
        assertBitEqual(fused.dx, plain.dx, `dx ${what}`);
        if (fused.dweight) assertBitEqual(fused.dweight, plain.dweight!, `dweight ${what}`);
        if (fused.dbias) assertBitEqual(fused.dbias, plain.dbias!, `dbias ${what}`);
        assertBitEqual(fused.runningVar, plain.runningVar, `runningVar ${what}`);
        // the reference: relu of the f64 batch norm; its backward with dy masked where the GPU output is 0
        const s = fused.s;
        const r = refBatchNorm(s.x.ref, s.weight?.ref ?? null, s.bias?.ref ?? null, s.refOpts);
        const rows = s.x.ref.data.length / shape[shape.length - 1];
        const tol = tolerances(r, s.weight?.ref ?? null, s.refOpts.eps, 0, rows);
        assertClose(fused.out, refRelu(r.out).data, tol.out, `out vs reference ${what}`);
        const masked = refArray(
          shape,
          gOut.ref.data.map((g, i) => (fused.out[i] > 0 ? g : 0)),
        );
        const rg = refBatchNormBackward(masked, s.x.ref, s.weight?.ref ?? null, s.refOpts);
        assertClose(fused.dx, rg.dx.data, tol.dx, `dx vs reference ${what}`);
        if (fused.dweight) assertClose(fused.dweight, rg.dweight.data, tol.sums, `dweight vs reference ${what}`);
        if (fused.dbias) assertClose(fused.dbias, rg.dbias.data, tol.sums, `dbias vs reference ${what}`);
        fused.s.dispose();
        plain.s.dispose();
        gOut.gpu.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('fused BN + residual add + ReLU: bit-identical to relu(batchNorm(x) + r), matches the f64 reference', async () => {
  await fc.assert(
    fc.asyncProperty(
      shapeArb,
      fc.integer(),
      fc.constantFrom<'affine' | 'none' | 'weight'>('affine', 'none', 'weight'),
      fc.boolean(),
      fc.constantFrom<'both' | 'x' | 'residual'>('both', 'x', 'residual'),
      async (shape, seed, affine, training, grads) => {
        const gOut = randomPair(seed + 9, shape);
        const run = async (fused: boolean) => {
          const s = setup(shape, seed, affine, 0, 1e-5, 0.1, training);
          const r = randomPair(seed + 5, shape);
          s.x.gpu.requiresGrad = grads !== 'residual';
          r.gpu.requiresGrad = grads !== 'x';
          for (const t of [s.weight?.gpu, s.bias?.gpu]) if (t) t.requiresGrad = true;
          const [w, b] = [s.weight?.gpu ?? null, s.bias?.gpu ?? null];
          const y = tidy(() => {
            const out = fused
              ? batchNorm(s.x.gpu, s.state, w, b, training, { relu: true, residual: r.gpu })
              : relu(add(batchNorm(s.x.gpu, s.state, w, b, training), r.gpu));
            backward(out, gOut.gpu);
            return out;
          });
          const result = {
            out: await y.data(),
            dx: s.x.gpu.grad ? await s.x.gpu.grad.data() : null,
            dres: r.gpu.grad ? await r.gpu.grad.data() : null,
            dweight: s.weight ? await s.weight.gpu.grad!.data() : null,
            dbias: s.bias ? await s.bias.gpu.grad!.data() : null,
            runningVar: await s.state.runningVar.data(),
            s,
            r,
          };
          y.dispose();
          return result;
        };
        const fused = await run(true);
        const plain = await run(false);
        const what = `${training ? 'training' : 'eval'} ${JSON.stringify(shape)} ${affine} grads ${grads}`;
        assertBitEqual(fused.out, plain.out, `out ${what}`);
        if (grads !== 'residual') assertBitEqual(fused.dx!, plain.dx!, `dx ${what}`);
        if (grads !== 'x') assertBitEqual(fused.dres!, plain.dres!, `dresidual ${what}`);
        if (fused.dweight) assertBitEqual(fused.dweight, plain.dweight!, `dweight ${what}`);
        if (fused.dbias) assertBitEqual(fused.dbias, plain.dbias!, `dbias ${what}`);
        assertBitEqual(fused.runningVar, plain.runningVar, `runningVar ${what}`);
        // the reference: relu(f64 batch norm + r); dy masked where the GPU output is 0 goes to r and into the BN
        const s = fused.s;
        const rb = refBatchNorm(s.x.ref, s.weight?.ref ?? null, s.bias?.ref ?? null, s.refOpts);
        const rows = s.x.ref.data.length / shape[shape.length - 1];
        const tol = tolerances(rb, s.weight?.ref ?? null, s.refOpts.eps, 0, rows);
        const sum = refArray(
          shape,
          rb.out.data.map((v, i) => v + fused.r.ref.data[i]),
        );
        assertClose(
          fused.out,
          refRelu(sum).data,
          { rtol: tol.out.rtol, atol: tol.out.atol + 4 * F32_EPS },
          `out ${what}`,
        );
        const masked = refArray(
          shape,
          gOut.ref.data.map((g, i) => (fused.out[i] > 0 ? g : 0)),
        );
        if (fused.dres) assertClose(fused.dres, masked.data, { rtol: 0, atol: 0 }, `dresidual vs reference ${what}`);
        const rg = refBatchNormBackward(masked, s.x.ref, s.weight?.ref ?? null, s.refOpts);
        if (fused.dx) assertClose(fused.dx, rg.dx.data, tol.dx, `dx vs reference ${what}`);
        if (fused.dweight) assertClose(fused.dweight, rg.dweight.data, tol.sums, `dweight vs reference ${what}`);
        if (fused.dbias) assertClose(fused.dbias, rg.dbias.data, tol.sums, `dbias vs reference ${what}`);
        for (const run of [fused, plain]) {
          run.s.dispose();
          run.r.gpu.grad?.dispose();
          run.r.gpu.dispose();
        }
        gOut.gpu.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

test('fused BN + residual add + ReLU under f16 activations: bit-identical to the separate kernels', async (t) => {
  if (!gpu().features.f16) return t.skip('no shader-f16 on this adapter');
  for (const [shape, seed] of [
    [[4, 8, 8, 64], 3],
    [[2, 5, 3, 12], 4],
    [[7, 3], 5],
  ] as Array<[number[], number]>) {
    const gOut = randomPair(seed + 9, shape);
    const run = async (fused: boolean) => {
      const s = setup(shape, seed, 'affine', 0, 1e-5, 0.1, true);
      const r = randomPair(seed + 5, shape, -3, 3);
      const x16 = toF16(s.x.gpu);
      const r16 = toF16(r.gpu);
      x16.requiresGrad = true;
      r16.requiresGrad = true;
      s.weight!.gpu.requiresGrad = true;
      const y = tidy(() => {
        const out = fused
          ? batchNorm(x16, s.state, s.weight!.gpu, s.bias!.gpu, true, { relu: true, residual: r16 })
          : relu(add(batchNorm(x16, s.state, s.weight!.gpu, s.bias!.gpu, true), r16));
        backward(out, gOut.gpu);
        return keep(fromF16(out));
      });
      const result = [await y.data(), await x16.grad!.data(), await r16.grad!.data(), await s.weight!.gpu.grad!.data()];
      for (const d of [y, x16.grad!, r16.grad!, x16, r16, r.gpu]) d.dispose();
      s.dispose();
      return result;
    };
    const fused = await run(true);
    const plain = await run(false);
    ['out', 'dx', 'dresidual', 'dweight'].forEach((name, i) =>
      assertBitEqual(fused[i], plain[i], `${name} f16 ${JSON.stringify(shape)}`),
    );
    gOut.gpu.dispose();
  }
});

test('running stats after several training steps, then eval with them', async () => {
  const shape = [4, 3, 3, 5];
  const s = setup(shape, 77, 'affine', 0, 1e-5, 0.1, true);
  let rm = s.refOpts.runningMean;
  let rv = s.refOpts.runningVar;
  for (let step = 0; step < 4; step++) {
    const x = randomPair(100 + step, shape, -2 + step, 2 + step);
    tidy(() => noGrad(() => batchNorm(x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, true)));
    const r = refBatchNorm(x.ref, s.weight!.ref, s.bias!.ref, { ...s.refOpts, runningMean: rm, runningVar: rv });
    rm = r.runningMean;
    rv = r.runningVar;
    x.gpu.dispose();
  }
  assertClose(await s.state.runningMean.data(), rm.data, { rtol: 1e-5, atol: 1e-6 }, 'runningMean after 4 steps');
  assertClose(await s.state.runningVar.data(), rv.data, { rtol: 1e-5, atol: 1e-6 }, 'runningVar after 4 steps');
  // eval with the accumulated stats, and eval leaves them unchanged
  const y = batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, false);
  const r = refBatchNorm(s.x.ref, s.weight!.ref, s.bias!.ref, {
    ...s.refOpts,
    training: false,
    runningMean: rm,
    runningVar: rv,
  });
  assertClose(await y.data(), r.out.data, { rtol: 1e-5, atol: 1e-5 }, 'eval output');
  assertClose(await s.state.runningMean.data(), rm.data, { rtol: 1e-5, atol: 1e-6 }, 'runningMean unchanged by eval');
  y.dispose();
  s.dispose();
});

test('large row count (256·32·32 rows × 64 channels, mean 5): matches the reference, deterministic', async () => {
  const shape = [256, 32, 32, 64];
  const rows = 256 * 32 * 32;
  const s = setup(shape, 5, 'affine', 5, 1e-5, 0.1, true);
  const gOut = randomPair(6, shape);
  s.x.gpu.requiresGrad = true;
  s.weight!.gpu.requiresGrad = true;
  s.bias!.gpu.requiresGrad = true;
  const run = () =>
    tidy(() => {
      const y = batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, true);
      backward(y, gOut.gpu);
      return y;
    });
  const y1 = run();
  const out1 = await y1.data();
  const dw1 = await s.weight!.gpu.grad!.data();
  const dx1 = await s.x.gpu.grad!.data();
  const r = refBatchNorm(s.x.ref, s.weight!.ref, s.bias!.ref, s.refOpts);
  const rg = refBatchNormBackward(gOut.ref, s.x.ref, s.weight!.ref, s.refOpts);
  // Shifted per-lane sums merged with Chan's rule keep the f32 error far below the rows·ε worst case
  // (measured on 64·32·32 rows: |out| error ~1e-5 with mean 5; Σdy·x̂ over 65536 terms of size ~1 errs by ~1e-3).
  assertClose(out1, r.out.data, { rtol: 1e-4, atol: 2e-5 }, 'out');
  assertClose(await s.state.runningMean.data(), r.runningMean.data, { rtol: 1e-6, atol: 1e-5 }, 'runningMean');
  assertClose(await s.state.runningVar.data(), r.runningVar.data, { rtol: 1e-5, atol: 1e-6 }, 'runningVar');
  assertClose(dw1, rg.dweight.data, { rtol: 1e-4, atol: 1e-6 * rows }, 'dweight');
  assertClose(await s.bias!.gpu.grad!.data(), rg.dbias.data, { rtol: 1e-4, atol: 1e-6 * rows }, 'dbias');
  assertClose(dx1, rg.dx.data, { rtol: 1e-4, atol: 1e-5 }, 'dx'); // |dx| ~ 1: a few ulps, plus x̂·Σ/rows terms
  // The same input again gives bit-identical outputs and gradients (no atomics, fixed summation order).
  for (const t of [s.weight!.gpu, s.bias!.gpu, s.x.gpu]) {
    t.grad!.dispose();
    t.grad = null;
  }
  const y2 = run();
  assertBitEqual(await y2.data(), out1, 'out');
  assertBitEqual(await s.weight!.gpu.grad!.data(), dw1, 'dweight');
  assertBitEqual(await s.x.gpu.grad!.data(), dx1, 'dx');
  y1.dispose();
  y2.dispose();
  gOut.gpu.dispose();
  s.dispose();
});

test('batch 1: rejected in training for [1, C], allowed in eval and for [1, H, W, C]', async () => {
  const s = setup([1, 4], 1, 'affine', 0, 1e-5, 0.1, true);
  assert.throws(
    () => batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, true),
    /expected more than 1 value per channel when training, got input of shape \[1, 4\]/,
  );
  const y = batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, false);
  const r = refBatchNorm(s.x.ref, s.weight!.ref, s.bias!.ref, { ...s.refOpts, training: false });
  assertClose(await y.data(), r.out.data, { rtol: 1e-5, atol: 1e-5 }, 'eval batch 1');
  y.dispose();
  s.dispose();
  await checkAgainstReference([1, 2, 1, 3], 3, 'affine', 0, 1e-5, 0.1, true, true);
});

test('no buffer is leaked by forward/backward (training and eval, with and without grad)', async () => {
  const base = gpu().pool.liveCount;
  for (const training of [true, false]) {
    const s = setup([3, 2, 2, 5], 9, 'affine', 0, 1e-5, 0.1, training);
    s.x.gpu.requiresGrad = true;
    s.weight!.gpu.requiresGrad = true;
    tidy(() => {
      const y = batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, training);
      backward(y, Tensor.from(randomValues(1, y.size), y.shape));
    });
    // recorded for grad but never back-propagated: the saved statistics go with the scope
    tidy(() => {
      batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, training);
    });
    // outside any scope: without grad nothing is saved; the output is the only new tensor
    const y = noGrad(() => batchNorm(s.x.gpu, s.state, s.weight!.gpu, null, training));
    y.dispose();
    // the fused residual block end, the residual's gradient included
    const r = Tensor.from(randomValues(2, s.x.gpu.size), s.x.gpu.shape);
    r.requiresGrad = true;
    tidy(() => {
      const out = batchNorm(s.x.gpu, s.state, s.weight!.gpu, s.bias!.gpu, training, { relu: true, residual: r });
      backward(out, Tensor.from(randomValues(3, out.size), out.shape));
    });
    r.grad?.dispose();
    r.dispose();
    s.dispose();
  }
  await gpu().sync();
  assert.equal(gpu().pool.liveCount, base);
});

test('rejects bad inputs with clear errors', () => {
  const x = Tensor.from(randomValues(1, 12), [4, 3]);
  const x3 = Tensor.from(randomValues(1, 12), [2, 2, 3]);
  const xi = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3], 'u32');
  const rm = Tensor.from([0, 0, 0], [3]);
  const rv = Tensor.from([1, 1, 1], [3]);
  const rm4 = Tensor.from([0, 0, 0, 0], [4]);
  const w2 = Tensor.from([1, 1], [2]);
  const st = (over: Partial<BatchNormState> = {}): BatchNormState => ({
    runningMean: rm,
    runningVar: rv,
    momentum: 0.1,
    eps: 1e-5,
    ...over,
  });
  assert.throws(
    () => batchNorm(x3, st(), null, null, true),
    /batchNorm: expected x of shape \[B, C\] or \[N, H, W, C\], got \[2, 2, 3\]/,
  );
  assert.throws(
    () => batchNorm(xi as unknown as Tensor<'f32'>, st(), null, null, true),
    /batchNorm x: expected an f32 or f16 tensor, got u32/,
  );
  assert.throws(
    () => batchNorm(x, st({ runningMean: rm4 }), null, null, true),
    /batchNorm runningMean: expected shape \[3\], got \[4\]/,
  );
  assert.throws(() => batchNorm(x, st(), w2, null, true), /batchNorm weight: expected shape \[3\], got \[2\]/);
  assert.throws(() => batchNorm(x, st(), null, w2, true), /batchNorm bias: expected shape \[3\], got \[2\]/);
  assert.throws(() => batchNorm(x, st({ momentum: 2 }), null, null, true), /momentum must be in \[0, 1\], got 2/);
  assert.throws(() => batchNorm(x, st({ eps: 0 }), null, null, true), /eps must be a positive finite number, got 0/);
  assert.throws(
    () => batchNorm(x, st({ runningVar: rm }), null, null, true),
    /runningMean and runningVar must not share storage/,
  );
  assert.throws(() => batchNorm(x, st(), rm, null, true), /must not share storage with the running stats/);
  const r2 = Tensor.from(randomValues(2, 6), [2, 3]);
  assert.throws(
    () => batchNorm(x, st(), null, null, true, { residual: x }),
    /a residual is only fused with relu: true/,
  );
  assert.throws(
    () => batchNorm(x, st(), null, null, true, { relu: true, residual: r2 }),
    /batchNorm residual: expected shape \[4, 3\], got \[2, 3\]/,
  );
  r2.dispose();
  for (const t of [x, x3, xi, rm, rv, rm4, w2]) t.dispose();
});
