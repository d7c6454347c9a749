/**
 * f16 vs f32: GEMM throughput (and the tensor-core GEMM where the adapter has it and its self-check
 * passed) and the ODC training step, the same code timed in both working precisions.
 *   npx tsx bench/precision.ts [--quick | --full]
 * Quick (lavapipe): GEMM 256-1024 and the convnet-s step at batch 64. Full (a GPU): GEMM up to 4096³,
 * plus the resnet18 CIFAR b512 and resnet50 224² b256 steps of bench/train-step.ts. The rows are what
 * bench/gpu.sh puts beside PyTorch's tf32 and bf16 (`torch.mm` and autocast steps) in the same call.
 */
import { gpu } from '../src/gpu/device.ts';
import { matmul } from '../src/ops/matmul.ts';
import { setWorkingPrecision } from '../src/ops/precision.ts';
import { checkTensorCores, resetTensorCores } from '../src/ops/tensor-cores.ts';
import type { Precision } from '../src/gpu/kernel.ts';
import { convnetCase, prepareStep, RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE, type Case } from './train-step.ts';
import { randomTensor, runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

/** Runs `fn` in a working precision (and with the tensor-core path on or off), restoring f32 after. */
async function inPrecision<T>(precision: Precision, tensorCores: boolean, fn: () => Promise<T>): Promise<T> {
  setWorkingPrecision(precision);
  resetTensorCores();
  if (tensorCores) await checkTensorCores();
  try {
    return await fn();
  } finally {
    resetTensorCores();
    setWorkingPrecision('f32');
  }
}

export async function run(options: BenchOptions): Promise<BenchRow[]> {
  const g = gpu();
  if (!g.features.f16)
    return [{ name: 'f16 (skipped)', ms: 0, value: 0, unit: '-', note: `${g.adapterName} lacks shader-f16` }];
  const tensorCores = (await inPrecision('f16', true, async () => checkTensorCores())).state === 'passed';
  const paths: Array<[label: string, precision: Precision, tc: boolean]> = [
    ['f32', 'f32', false],
    ['f16', 'f16', false],
  ];
  if (tensorCores) paths.push(['f16 tensor cores', 'f16', true]);
  const rows: BenchRow[] = [];
  for (const n of options.quick ? [256, 512, 1024] : [1024, 2048, 4096]) {
    const a = randomTensor([n, n]);
    const b = randomTensor([n, n]);
    for (const [label, precision, tc] of paths) {
      // The f16 rows include the two f16 copies of the operands (as a training GEMM pays them).
      const ms = await inPrecision(precision, tc, () =>
        timeGpu(`gemm ${n} ${label}`, () => matmul(a, b).dispose(), {
          iterations: g.isCpuAdapter && n >= 1024 ? 2 : 5,
        }),
      );
      rows.push({ name: `gemm ${n}^3 ${label}`, ms, value: (2 * n ** 3) / ms / 1e6, unit: 'GFLOP/s' });
    }
    a.dispose();
    b.dispose();
  }
  const cases: Case[] = [convnetCase(64)];
  if (!options.quick) {
    cases.push(RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE);
  }
  for (const c of cases) {
    for (const [label, precision, tc] of paths) {
      const ms = await inPrecision(precision, tc, async () => {
        const { step, dispose } = await prepareStep(c);
        try {
          return await timeGpu(`${c.name} ${label}`, step, { iterations: 3 });
        } finally {
          dispose();
        }
      });
      rows.push({ name: `${c.name} ${label}`, ms, value: (c.batch * 1000) / ms, unit: 'img/s' });
    }
  }
  return rows;
}

await runIfMain(import.meta.url, run);
