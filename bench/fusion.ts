/**
 * GPU time of the fused kernels of issue 9's fusion cuts against the separate kernels they replace, interleaved in
 * one process (each round times the separate and the fused form back to back, alternating which goes first), so a
 * noisy machine moves both alike. Prints per comparison the median and range of the per-round ratio fused /
 * separate (below 1: the fusion is faster) and the median ms of each:
 *   - a residual block's end, forward + backward (training): relu(add(batchNorm(x), r)) vs batchNorm with
 *     { relu, residual } (stats_apply_add_relu, dx_train_add_relu);
 *   - a gradient added into the one collected (a 1x1 dgrad, A·Bᵀ): GEMM then axpby vs the accumulating epilogue;
 *   - the loss-scale unscale of resnet18's parameter gradients: one dispatch per gradient vs 14 per dispatch.
 *   npx tsx bench/fusion.ts [--rounds 9] [--batch 32]
 */
import { gpu, initGpu } from '../src/gpu/device.ts';
import { batchNorm, type BatchNormState } from '../src/ops/batchnorm.ts';
import { add, relu } from '../src/ops/elementwise.ts';
import { runGemm } from '../src/ops/matmul.ts';
import { LossScaler, forceUnscaleSlots } from '../src/optim/loss-scale.ts';
import { createBackbone } from '../src/models/backbones.ts';
import { backward } from '../src/tensor/autograd.ts';
import { axpbyNoGrad } from '../src/tensor/kernels.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { adapterLine, positiveIntFlag, randomTensor } from './common.ts';

const rounds = positiveIntFlag('rounds', 9);
const batch = positiveIntFlag('batch', 32);

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Wall ms of fn's recorded work until the GPU has finished it (one warm-up call first). */
async function timed(fn: () => void): Promise<number> {
  const t0 = performance.now();
  fn();
  await gpu().sync();
  return performance.now() - t0;
}

async function compare(name: string, separate: () => void, fused: () => void): Promise<void> {
  await timed(separate);
  await timed(fused);
  const ratios: number[] = [];
  const ms = { separate: [] as number[], fused: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? (['fused', 'separate'] as const) : (['separate', 'fused'] as const);
    const t: Record<string, number> = {};
    for (const which of order) t[which] = await timed(which === 'fused' ? fused : separate);
    ms.separate.push(t.separate);
    ms.fused.push(t.fused);
    ratios.push(t.fused / t.separate);
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(
    `${name}: fused / separate median ${median(ratios).toFixed(2)} (rounds ${sorted[0].toFixed(2)}-${sorted[sorted.length - 1].toFixed(2)}); ` +
      `median ms separate ${median(ms.separate).toFixed(1)}, fused ${median(ms.fused).toFixed(1)}`,
  );
}

await initGpu();
console.log(adapterLine(gpu(), true), `rounds ${rounds}, batch ${batch}`);

// 1. The end of a resnet18 layer1 block at 32x32: [batch, 32, 32, 64].
{
  const shape = [batch, 32, 32, 64];
  const x = randomTensor(shape);
  const r = randomTensor(shape);
  const g = randomTensor(shape);
  const weight = Tensor.from(new Float32Array(64).fill(1), [64]);
  const bias = Tensor.from(new Float32Array(64), [64]);
  const state: BatchNormState = {
    runningMean: Tensor.from(new Float32Array(64), [64]),
    runningVar: Tensor.from(new Float32Array(64).fill(1), [64]),
    momentum: 0.1,
    eps: 1e-5,
  };
  for (const t of [x, r, weight, bias]) t.requiresGrad = true;
  const blockEnd = (fused: boolean) => () =>
    tidy(() => {
      const out = fused
        ? batchNorm(x, state, weight, bias, true, { relu: true, residual: r })
        : relu(add(batchNorm(x, state, weight, bias, true), r));
      backward(out, g);
      for (const t of [x, r, weight, bias]) {
        t.grad?.dispose();
        t.grad = null;
      }
    });
  await compare(`block end relu(bn(x) + r) fwd+bwd ${JSON.stringify(shape)}`, blockEnd(false), blockEnd(true));
  for (const t of [x, r, g, weight, bias, state.runningMean, state.runningVar]) t.dispose();
}

// 2. A 1x1 conv's dgrad (dy [batch·32·32, 64] · Wᵀ) added into a collected gradient.
{
  const M = batch * 32 * 32;
  const [N, K] = [64, 64];
  const dy = randomTensor([M, K]);
  const w = randomTensor([N, K]);
  const collected = randomTensor([M, N]);
  const spec = { mode: 'matmul' as const, M, N, K, transB: true, a: dy.buffer, b: w.buffer };
  const separate = () =>
    tidy(() => {
      const product = Tensor.empty([M, N], 'f32');
      runGemm({ ...spec, out: product.buffer });
      axpbyNoGrad(1, collected, 1, product);
    });
  const fused = () => runGemm({ ...spec, out: collected.buffer, accumulate: true });
  await compare(`dgrad [${M}, ${K}]·[${N}, ${K}]ᵀ + collected`, separate, fused);
  for (const t of [dy, w, collected]) t.dispose();
}

// 3. The unscale of resnet18's parameter gradients (CIFAR stem, plus nothing else: the backbone alone).
{
  const net = createBackbone('resnet18', 3, 'cifar', new Rng(0));
  const params = net.parameters();
  for (const p of params) p.grad = randomTensor([...p.shape]);
  const scaler = new LossScaler(2 ** 10, 1_000_000);
  const unscale = (slots: 1 | null) => () => {
    forceUnscaleSlots(slots);
    scaler.unscale(params);
    forceUnscaleSlots(null);
  };
  await compare(`unscale of ${params.length} resnet18 gradients`, unscale(1), unscale(null));
  scaler.dispose();
  net.dispose(); // with the gradients
}
process.exit(0);
