/**
 * What f16 activations save: the GPU buffer pool's high-water mark over one ODC training step (the trainer's
 * own, src/odc/step.ts) above what was live before it (model, optimiser state, memory, augmenter), f32 vs
 * f16, and the step time.
 *   npx tsx bench/activation-memory.ts [--batch N] [--quick]
 * The resnet18 CIFAR case runs at --batch (default 512, quick 32: lavapipe needs a smaller one; quick also
 * shrinks its ODC memory), convnet-s at 64.
 */
import { gpu } from '../src/gpu/device.ts';
import { setWorkingPrecision } from '../src/ops/precision.ts';
import type { Precision } from '../src/gpu/kernel.ts';
import { convnetCase, prepareStep, RESNET18_CIFAR_CASE, type Case } from './train-step.ts';
import { runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

const MIB = 2 ** 20;

/** The step's high-water bytes above the bytes live before it, and (when `timed`) its median time, in one precision. */
async function measure(c: Case, precision: Precision, timed: boolean): Promise<{ peak: number; ms: number }> {
  setWorkingPrecision(precision);
  const { step, settle, dispose } = await prepareStep(c);
  try {
    await step(); // first step: pipelines compiled, pool warmed
    await settle();
    await gpu().sync();
    const pool = gpu().pool;
    const before = pool.liveByteCount;
    pool.resetPeak();
    await step();
    await settle();
    await gpu().sync();
    const peak = pool.peakLiveBytes - before;
    const ms = timed ? await timeGpu(`${c.name} ${precision}`, step, { iterations: 3 }) : 0;
    await settle();
    return { peak, ms };
  } finally {
    dispose();
    setWorkingPrecision('f32');
  }
}

export async function run(options: BenchOptions, batch = options.quick ? 32 : 512): Promise<BenchRow[]> {
  if (!gpu().features.f16)
    return [{ name: 'f16 activations (skipped)', ms: 0, value: 0, unit: '-', note: 'no shader-f16' }];
  // A small ODC memory (n 4096, k 100): its size is live before the step either way, and its k-means is slow here.
  const resnet: Case = {
    ...RESNET18_CIFAR_CASE,
    name: `ODC step resnet18 cifar 32x32 b${batch}`,
    batch,
    n: options.quick ? 4096 : RESNET18_CIFAR_CASE.n,
    k: options.quick ? 100 : RESNET18_CIFAR_CASE.k,
  };
  const rows: BenchRow[] = [];
  // The resnet18 step is timed only on a GPU (a lavapipe step at b8 takes half a minute).
  for (const [c, timed] of [
    [resnet, !options.quick],
    [convnetCase(64), true],
  ] as const) {
    const f32 = await measure(c, 'f32', timed);
    const f16 = await measure(c, 'f16', timed);
    for (const [label, m] of [
      ['f32', f32],
      ['f16', f16],
    ] as const) {
      rows.push({ name: `${c.name} ${label} step peak`, ms: m.ms, value: m.peak / MIB, unit: 'MiB' });
    }
    rows.push({ name: `${c.name} f16/f32 peak`, ms: 0, value: f16.peak / f32.peak, unit: 'ratio' });
  }
  return rows;
}

const batchArg = process.argv.indexOf('--batch');
await runIfMain(import.meta.url, (options) =>
  run(options, batchArg > 0 ? Number(process.argv[batchArg + 1]) : undefined),
);
