/**
 * Does `--precision f16` need loss scaling? Counts, for one training iteration at initialisation, the
 * gradient values (the dY operands of the backward GEMMs) that the f16 copies flush to zero or make
 * subnormal (|v| < 2^-14: fewer than 11 significant bits), without scaling and with the loss scaled by
 * 2^16 (GradScaler's initial scale; values past 65504 would overflow). Each dY is read once, on the host.
 *   npx tsx bench/f16-underflow.ts [--batch N]
 * Cases: the tiny test fixture (convnet-s, 8x8 bars, K 8, batch 16) and resnet18 CIFAR (K 1000) at
 * `--batch` (default 64 on CPU adapters). The cross-entropy gradient is a mean over the batch, so every dY
 * scales as 1/B: the rows "as at b512" multiply the measured values by B/512 (a power of two, exact in
 * f32), i.e. the preset's batch with the same per-image gradients.
 */
import { gpu, initGpu } from '../src/gpu/device.ts';
import { GpuAugmenter } from '../src/data/augment.ts';
import { augmentConfig } from '../src/data/training-data.ts';
import { buildModel } from '../src/odc/build.ts';
import { applyOverride, presetConfig, type TrainConfig } from '../src/config/settings.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { observeF16Copies, setWorkingPrecision } from '../src/ops/precision.ts';
import { backward } from '../src/tensor/autograd.ts';
import { clone } from '../src/tensor/kernels.ts';
import { keep, tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import type { ImageDataset } from '../src/data/dataset.ts';
import { syntheticDataset, tinyConfig } from '../test/train-fixtures.ts';

/** Below this magnitude an f16 is subnormal; at or below half the smallest subnormal it rounds to zero. */
const F16_MIN_NORMAL = 2 ** -14;
const F16_ZERO_AT = 2 ** -25;
const F16_MAX = 65504;

interface Counts {
  values: number;
  nonzero: number;
  flushed: number;
  subnormal: number;
  overflow: number;
}

/** How f16 rounding treats the nonzero values of `v` times `scale`. */
function count(v: Float32Array, scale: number): Counts {
  const c: Counts = { values: v.length, nonzero: 0, flushed: 0, subnormal: 0, overflow: 0 };
  for (const x of v) {
    if (x === 0) continue;
    c.nonzero++;
    const a = Math.abs(x * scale);
    if (a <= F16_ZERO_AT) c.flushed++;
    else if (a < F16_MIN_NORMAL) c.subnormal++;
    else if (a >= F16_MAX + 16) c.overflow++; // 65520 and up round to infinity
  }
  return c;
}

function add(a: Counts, b: Counts): Counts {
  return {
    values: a.values + b.values,
    nonzero: a.nonzero + b.nonzero,
    flushed: a.flushed + b.flushed,
    subnormal: a.subnormal + b.subnormal,
    overflow: a.overflow + b.overflow,
  };
}

const pct = (n: number, of: number): string => `${((100 * n) / Math.max(1, of)).toFixed(2)}%`;

function randomBytes(n: number, size: number, channels: 1 | 3): ImageDataset {
  const rng = new Rng(1);
  const images = new Uint8Array(n * size * size * channels).map(() => rng.nextU32() & 255);
  return { name: 'random', n, height: size, width: size, channels, images, labels: null, numClasses: null };
}

/** The dY tensors (f32, as the backward GEMMs receive them before their f16 copies) of one iteration. */
async function gradientOperands(config: TrainConfig, ds: ImageDataset, batch: number): Promise<Float32Array[]> {
  const model = buildModel(config, ds.channels, new Rng(0));
  const augmenter = new GpuAugmenter(ds, augmentConfig(config, ds));
  const params = new Set<Tensor>(model.parameters());
  const forwardSeen = new Set<Tensor>();
  const grads = new Map<Tensor, Tensor<'f32'>>();
  const rng = new Rng(3);
  try {
    tidy(() => {
      const idx = new Uint32Array(batch).map(() => rng.int(ds.n));
      const labels = Tensor.from(
        new Uint32Array(batch).map(() => rng.int(config.odc.k)),
        [batch],
        'u32',
      );
      observeF16Copies((ts) => ts.forEach((t) => forwardSeen.add(t)));
      const logits = model.forward(augmenter.augment(idx, rng));
      const loss = weightedCrossEntropy(logits, labels, null);
      observeF16Copies((ts) => {
        for (const t of ts) if (!params.has(t) && !forwardSeen.has(t) && !grads.has(t)) grads.set(t, keep(clone(t)));
      });
      backward(loss);
    });
    const out: Float32Array[] = [];
    for (const g of grads.values()) out.push(await g.data());
    return out;
  } finally {
    observeF16Copies(null);
    for (const g of grads.values()) g.dispose();
    model.dispose();
    augmenter.dispose();
  }
}

function report(name: string, operands: Float32Array[], batch: number): void {
  const rows: Array<[string, number]> = [
    [`${name}, b${batch}, no scaling`, 1],
    [`${name}, b${batch}, loss x 2^16`, 2 ** 16],
  ];
  if (batch !== 512 && Number.isInteger(Math.log2(512 / batch))) {
    rows.push(
      [`${name}, as at b512, no scaling`, batch / 512],
      [`${name}, as at b512, loss x 2^16`, (batch / 512) * 2 ** 16],
    );
  }
  for (const [label, scale] of rows) {
    const total = operands.map((v) => count(v, scale)).reduce(add);
    const worst = operands
      .map((v) => count(v, scale))
      .map((c) => c.flushed / Math.max(1, c.nonzero))
      .reduce((a, b) => Math.max(a, b), 0);
    console.log(
      `${label.padEnd(44)} ${operands.length} dY operands, ${total.nonzero} nonzero values: flushed to 0 ${pct(total.flushed, total.nonzero)}, subnormal ${pct(total.subnormal, total.nonzero)}, overflow ${total.overflow}; worst operand flushes ${(100 * worst).toFixed(2)}%`,
    );
  }
}

const g = await initGpu();
if (!g.features.f16) {
  console.log(`${g.adapterName} lacks shader-f16: nothing to measure`);
} else {
  const at = process.argv.indexOf('--batch');
  const batch = at >= 0 ? Number(process.argv[at + 1]) : g.isCpuAdapter ? 64 : 512;
  setWorkingPrecision('f16');
  const tiny = applyOverride(tinyConfig(), 'optim.precision=f16');
  report('tiny fixture (convnet-s, K 8)', await gradientOperands(tiny, syntheticDataset(), 16), 16);
  const cifar = applyOverride(applyOverride(presetConfig('cifar'), 'optim.precision=f16'), 'data.imageSize=32');
  report('resnet18 CIFAR (K 1000)', await gradientOperands(cifar, randomBytes(1024, 32, 3), batch), batch);
  setWorkingPrecision('f32');
  console.log(`adapter: ${gpu().adapterName}`);
}
