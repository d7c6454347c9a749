/**
 * conv2d throughput (implicit GEMM): ResNet-18's layer shapes, forward and forward+backward (dgrad +
 * wgrad), plus the TensorFlow.js comparison shape (batch 64, 64→64 channels, 32x32, 3x3, padding 1).
 * GFLOP/s counts useful multiply-adds only: forward 2·N·OH·OW·Cout·KH·KW·Cin, forward+backward 3x that.
 *   npx tsx bench/conv.ts [--quick]
 */
import { gpu } from '../src/gpu/device.ts';
import { tidy } from '../src/tensor/scope.ts';
import { backward } from '../src/tensor/autograd.ts';
import { conv2d } from '../src/ops/conv.ts';
import { cpuMs, randomTensor, runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

interface ConvShape {
  name: string;
  batch: number;
  hw: number;
  cin: number;
  cout: number;
  k: number;
  stride: number;
  pad: number;
}

/** ResNet-18 (224x224 input) convolutions, one of each distinct shape. */
const RESNET18: Omit<ConvShape, 'batch'>[] = [
  { name: 'r18 conv1 7x7/2 3→64 224', hw: 224, cin: 3, cout: 64, k: 7, stride: 2, pad: 3 },
  { name: 'r18 layer1 3x3 64→64 56', hw: 56, cin: 64, cout: 64, k: 3, stride: 1, pad: 1 },
  { name: 'r18 layer2 3x3/2 64→128 56', hw: 56, cin: 64, cout: 128, k: 3, stride: 2, pad: 1 },
  { name: 'r18 layer2 1x1/2 64→128 56', hw: 56, cin: 64, cout: 128, k: 1, stride: 2, pad: 0 },
  { name: 'r18 layer2 3x3 128→128 28', hw: 28, cin: 128, cout: 128, k: 3, stride: 1, pad: 1 },
  { name: 'r18 layer3 3x3 256→256 14', hw: 14, cin: 256, cout: 256, k: 3, stride: 1, pad: 1 },
  { name: 'r18 layer4 3x3 512→512 7', hw: 7, cin: 512, cout: 512, k: 3, stride: 1, pad: 1 },
];

async function measure(s: ConvShape, rows: BenchRow[], note = ''): Promise<void> {
  const x = randomTensor([s.batch, s.hw, s.hw, s.cin]);
  const w = randomTensor([s.k, s.k, s.cin, s.cout], 0.1);
  const opts = { stride: s.stride, padding: s.pad };
  const oh = Math.floor((s.hw + 2 * s.pad - s.k) / s.stride) + 1;
  const flops = 2 * s.batch * oh * oh * s.cout * s.k * s.k * s.cin;
  const g = randomTensor([s.batch, oh, oh, s.cout]);
  const iterations = gpu().isCpuAdapter ? 3 : 10;
  const label = `${s.name} b${s.batch}`;
  const cpu = gpu().isCpuAdapter;
  const perCore = async (f: number, task: () => void): Promise<string> =>
    cpu ? `${(f / (await cpuMs(task)) / 1e6).toFixed(2)} GFLOP per cpu-s` : '';
  const join = (a: string, b: string): string => [a, b].filter((t) => t).join('; ');
  const fwdTask = (): void => conv2d(x, w, opts).dispose();
  const fwd = await timeGpu(`${label} fwd`, fwdTask, { iterations });
  rows.push({
    name: `conv fwd ${label}`,
    ms: fwd,
    value: flops / fwd / 1e6,
    unit: 'GFLOP/s',
    note: join(await perCore(flops, fwdTask), note),
  });
  x.requiresGrad = true;
  w.requiresGrad = true;
  const bothTask = (): void => {
    tidy(() => backward(conv2d(x, w, opts), g));
    x.grad?.dispose();
    w.grad?.dispose();
    x.grad = null;
    w.grad = null;
  };
  const both = await timeGpu(`${label} fwd+bwd`, bothTask, { iterations });
  rows.push({
    name: `conv fwd+bwd ${label}`,
    ms: both,
    value: (3 * flops) / both / 1e6,
    unit: 'GFLOP/s',
    note: join(await perCore(3 * flops, bothTask), note),
  });
  for (const t of [x, w, g]) t.dispose();
}

export async function run(options: BenchOptions): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const batch = options.quick ? 1 : 32;
  for (const s of RESNET18) await measure({ ...s, batch }, rows);
  // TensorFlow.js WebGPU on the same Dawn+lavapipe: 4.4 GFLOP/s forward, 1.2 GFLOP/s forward+backward.
  const tfjsBatch = 64;
  await measure(
    { name: 'tfjs-cmp 3x3 64→64 32', batch: tfjsBatch, hw: 32, cin: 64, cout: 64, k: 3, stride: 1, pad: 1 },
    rows,
    'tfjs: 4.4 fwd / 1.2 fwd+bwd GFLOP/s',
  );
  return rows;
}

await runIfMain(import.meta.url, run);
