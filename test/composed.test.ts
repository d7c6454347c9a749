/**
 * A composed check of the whole engine: a small network (conv-BN-ReLU, conv-BN, residual add, ReLU,
 * max-pool, global average pool, linear, weighted cross-entropy) trained for several SGD steps on the
 * GPU tracks the float64 CPU reference's parameters and BN running statistics step by step.
 *
 * Tolerance: every step's update is lr·(gradient + momentum history) ~ 1e-2 per parameter; f32 rounding
 * through ~10 ops and 3 steps perturbs parameters by ~1e-6 relative, so atol 2e-4 + rtol 1e-3 is far above
 * the f32 noise and far below the error of any wrong gradient or update (which moves parameters by
 * ~lr·|grad| ≈ 1e-2).
 */
import { test, before } from 'node:test';
import { assert, assertClose, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { tidy } from '../src/tensor/scope.ts';
import { backward } from '../src/tensor/autograd.ts';
import { conv2d } from '../src/ops/conv.ts';
import { batchNorm, type BatchNormState } from '../src/ops/batchnorm.ts';
import { add, relu } from '../src/ops/elementwise.ts';
import { globalAvgPool, maxPool2d } from '../src/ops/pool.ts';
import { linear } from '../src/ops/matmul.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { SGD } from '../src/optim/sgd.ts';
import { Rng } from '../src/util/rng.ts';
import { refArray, refZip, type RefArray } from '../src/ref/array.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import { refBatchNorm, refBatchNormBackward } from '../src/ref/batchnorm.ts';
import { refRelu, refReluBackward } from '../src/ref/elementwise.ts';
import { refGlobalAvgPool, refGlobalAvgPoolBackward, refMaxPool2d, refMaxPool2dBackward } from '../src/ref/pool.ts';
import { refLinear, refLinearBackward } from '../src/ref/matmul.ts';
import { refWeightedCrossEntropy, refWeightedCrossEntropyGrad } from '../src/ref/loss.ts';
import { refSgdStep } from '../src/ref/sgd.ts';

before(async () => {
  await setupGpu();
});

const N = 4;
const H = 6;
const CIN = 2;
const C = 4;
const K = 3;
const POOL = { kernel: 2, stride: 2, padding: 0 };
const BN = { momentum: 0.1, eps: 1e-5 };

/** f32-representable random values, so GPU and reference start from identical numbers. */
function values(rng: Rng, n: number, scale: number, offset = 0): Float64Array {
  return Float64Array.from(Float32Array.from({ length: n }, () => offset + scale * rng.range(-1, 1)));
}

interface RefParams {
  w1: RefArray;
  g1: RefArray;
  b1: RefArray;
  w2: RefArray;
  g2: RefArray;
  b2: RefArray;
  wl: RefArray;
  bl: RefArray;
}

test('a conv-bn-relu-pool-linear network with a residual add trains like the float64 reference, step by step', async () => {
  const rng = new Rng(7);
  const ref: RefParams = {
    w1: refArray([3, 3, CIN, C], values(rng, 9 * CIN * C, 0.5)),
    g1: refArray([C], values(rng, C, 0.2, 1)),
    b1: refArray([C], values(rng, C, 0.2)),
    w2: refArray([3, 3, C, C], values(rng, 9 * C * C, 0.3)),
    g2: refArray([C], values(rng, C, 0.2, 1)),
    b2: refArray([C], values(rng, C, 0.2)),
    wl: refArray([K, C], values(rng, K * C, 0.5)),
    bl: refArray([K], values(rng, K, 0.1)),
  };
  const initialW2 = ref.w2.data.slice();
  const x = refArray([N, H, H, CIN], values(rng, N * H * H * CIN, 1));
  const labels = [0, 2, 1, 2];
  const weights = [0.5, 0.2, 0.3];
  const names = Object.keys(ref) as Array<keyof RefParams>;
  const head = new Set<keyof RefParams>(['wl', 'bl']);
  const sgdBody = { lr: 0.1, momentum: 0.9, weightDecay: 1e-4, nesterov: false };
  const sgdHead = { ...sgdBody, momentum: 0 };

  // GPU twins
  const base = gpu().pool.liveCount;
  const params = Object.fromEntries(names.map((k) => [k, Tensor.from(ref[k].data, ref[k].shape)])) as Record<
    keyof RefParams,
    Tensor<'f32'>
  >;
  for (const p of Object.values(params)) p.requiresGrad = true;
  const bnState = (): BatchNormState => ({
    runningMean: Tensor.from(new Float32Array(C), [C]),
    runningVar: Tensor.from(new Float32Array(C).fill(1), [C]),
    ...BN,
  });
  const bn1 = bnState();
  const bn2 = bnState();
  const xg = Tensor.from(x.data, x.shape);
  const yg = Tensor.from(labels, [N], 'u32');
  const wg = Tensor.from(weights, [K]);
  const sgd = new SGD(
    [
      { params: names.filter((k) => !head.has(k)).map((k) => params[k]) },
      { params: [params.wl, params.bl], momentum: 0 },
    ],
    {
      lr: 0.1,
      momentum: 0.9,
      weightDecay: 1e-4,
    },
  );

  // reference state
  const running = {
    m1: refArray([C]),
    v1: refArray([C], new Float64Array(C).fill(1)),
    m2: refArray([C]),
    v2: refArray([C], new Float64Array(C).fill(1)),
  };
  const buffers: Partial<Record<keyof RefParams, Float64Array | null>> = {};

  for (let step = 0; step < 3; step++) {
    // --- GPU step
    let gpuLoss = 0;
    const lossT = tidy(() => {
      const a1 = relu(batchNorm(conv2d(xg, params.w1, { padding: 1 }), bn1, params.g1, params.b1, true));
      const h2 = batchNorm(conv2d(a1, params.w2, { padding: 1 }), bn2, params.g2, params.b2, true);
      const r = relu(add(h2, a1));
      const logits = linear(globalAvgPool(maxPool2d(r, POOL)), params.wl, params.bl);
      const loss = weightedCrossEntropy(logits, yg, wg);
      backward(loss);
      sgd.step();
      return loss;
    });
    sgd.zeroGrad();
    gpuLoss = (await lossT.data())[0];
    lossT.dispose();

    // --- reference step
    const o1 = { training: true, runningMean: running.m1, runningVar: running.v1, ...BN };
    const o2 = { training: true, runningMean: running.m2, runningVar: running.v2, ...BN };
    const c1 = refConv2d(x, ref.w1, { padding: 1 });
    const n1 = refBatchNorm(c1, ref.g1, ref.b1, o1);
    const a1 = refRelu(n1.out);
    const c2 = refConv2d(a1, ref.w2, { padding: 1 });
    const n2 = refBatchNorm(c2, ref.g2, ref.b2, o2);
    const r = refRelu(refZip(n2.out, a1, (u, v) => u + v));
    const pooled = refMaxPool2d(r, POOL).out;
    const gp = refGlobalAvgPool(pooled);
    const logits = refLinear(gp, ref.wl, ref.bl);
    const refLoss = refWeightedCrossEntropy(logits, labels, weights);
    const dLogits = refWeightedCrossEntropyGrad(logits, labels, weights);
    const lin = refLinearBackward(dLogits, gp, ref.wl);
    const dr = refMaxPool2dBackward(refGlobalAvgPoolBackward(lin.dx, pooled), r, POOL);
    const ds = refReluBackward(dr, r);
    const b2 = refBatchNormBackward(ds, c2, ref.g2, o2);
    const conv2 = refConv2dBackward(b2.dx, a1, ref.w2, { padding: 1 });
    const da1 = refZip(ds, conv2.dx, (u, v) => u + v);
    const b1 = refBatchNormBackward(refReluBackward(da1, a1), c1, ref.g1, o1);
    const conv1 = refConv2dBackward(b1.dx, x, ref.w1, { padding: 1 });
    const grads: Record<keyof RefParams, RefArray> = {
      w1: conv1.dw,
      g1: b1.dweight,
      b1: b1.dbias,
      w2: conv2.dw,
      g2: b2.dweight,
      b2: b2.dbias,
      wl: lin.dw,
      bl: lin.db,
    };
    for (const k of names)
      buffers[k] = refSgdStep(ref[k].data, grads[k].data, buffers[k] ?? null, head.has(k) ? sgdHead : sgdBody);
    running.m1 = n1.runningMean;
    running.v1 = n1.runningVar;
    running.m2 = n2.runningMean;
    running.v2 = n2.runningVar;

    // --- compare
    const tol = { rtol: 1e-3, atol: 2e-4 };
    assertClose([gpuLoss], [refLoss], { rtol: 1e-4, atol: 1e-5 }, `step ${step} loss`);
    for (const k of names) assertClose(await params[k].data(), ref[k].data, tol, `step ${step} parameter ${k}`);
    assertClose(await bn1.runningMean.data(), running.m1.data, tol, `step ${step} bn1 running mean`);
    assertClose(await bn1.runningVar.data(), running.v1.data, tol, `step ${step} bn1 running var`);
    assertClose(await bn2.runningVar.data(), running.v2.data, tol, `step ${step} bn2 running var`);
  }
  // The parameters really moved (the comparison is not between two frozen networks).
  const after = await params.w2.data();
  const moved = Math.max(...after.map((v, i) => Math.abs(v - initialW2[i])));
  assert.ok(moved > 1e-3, `w2 moved by at most ${moved}`);
  for (const t of [
    ...Object.values(params),
    xg,
    yg,
    wg,
    bn1.runningMean,
    bn1.runningVar,
    bn2.runningMean,
    bn2.runningVar,
  ])
    t.dispose();
  sgd.dispose();
  assert.equal(gpu().pool.liveCount, base, 'training steps leak no buffers');
});
