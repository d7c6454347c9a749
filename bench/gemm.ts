/**
 * f32 GEMM throughput: square C = A·B (and the transposed forms linear's backward uses), GFLOP/s.
 *   npx tsx bench/gemm.ts [--quick]
 *
 * Variants tried on lavapipe (Mesa 25.0.7, LLVM 15, 256-bit, 2 cores shared with other jobs, so compared
 * interleaved and as GFLOP per CPU-second of the process; 512^3 unless noted):
 *   workgroup memory tiles 64x64, 4x4/inv, K step 16 (gemm_tiled)               ~2.5 (wall)
 *   regs 8x8/inv, 16 inv along N (8x128 tile)                                  ~7
 *   regs 8x8/inv, 8 inv along N, vec4-interleaved columns (8x64 tile)          6.0-8.3
 *   regs 16x8/inv, same layout (16x64 tile)                             [kept]   7.5-7.8; 10-20% over 8x8
 *                                                    in interleaved wall-clock runs (GEMM and all 3 conv GEMMs)
 *   regs 8x8/inv, 8x8 inv (64x64 tile)                                        ~6.5 (per-lane A loads)
 *   regs 4x4, 4x8, 8x4, 16x4, 32x4, 8x12 /inv                                  2-6.3
 *   regs 8x16, 16x16 /inv                                                     2.0-6.0
 *   host-unrolled register block (no arrays)                                  same as arrays (NIR unrolls them)
 *   vec4 loads of B rows (VEC_B)                                              +30% over scalar B loads  [kept]
 *   Bᵀ read per invocation / vec4 along k + register transpose                2.4 / 2.9, so Bᵀ now
 *     transposes B first (~25 ns per element) when M >= 64                    [kept]
 *   uniform 8-float loads of B + per-invocation select instead of gathers     0.9-1.8 (much slower)
 *   A loaded as vec4 along k (4 k-steps per load)                             4.0-4.8 (slower)
 *   conv im2col decomposition with integer division per k (before k_next)    0.9 -> 6.9 after removing it
 */
import { gpu } from '../src/gpu/device.ts';
import { gemmVariant, matmul } from '../src/ops/matmul.ts';
import { cpuMs, randomTensor, runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

export async function run(options: BenchOptions): Promise<BenchRow[]> {
  const sizes = options.quick ? [256, 512, 1024, 2048] : [256, 512, 1024, 2048, 4096];
  const g = gpu();
  const tileNote = (n: number): string => {
    const v = gemmVariant('matmul', n, n, n);
    return `${v.body} ${v.wgm * v.tm}x${v.wgn * v.tn} tile, ${v.tm}x${v.tn}/inv`;
  };
  const rows: BenchRow[] = [];
  for (const n of sizes) {
    const a = randomTensor([n, n]);
    const b = randomTensor([n, n]);
    const flops = 2 * n ** 3;
    const iterations = g.isCpuAdapter && n >= 2048 ? 2 : 5;
    for (const [label, opts] of [
      ['', {}],
      [' Aᵀ', { transA: true }],
      [' Bᵀ', { transB: true }],
    ] as const) {
      if (label && options.quick && n > 1024) continue;
      const task = (): void => matmul(a, b, opts).dispose();
      const ms = await timeGpu(`gemm ${n}`, task, { iterations });
      const perCore = g.isCpuAdapter ? `; ${(flops / (await cpuMs(task)) / 1e6).toFixed(2)} GFLOP per cpu-s` : '';
      rows.push({
        name: `gemm ${n}^3${label}`,
        ms,
        value: flops / ms / 1e6,
        unit: 'GFLOP/s',
        note: tileNote(n) + perCore,
      });
    }
    a.dispose();
    b.dispose();
  }
  return rows;
}

await runIfMain(import.meta.url, run);
