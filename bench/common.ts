/**
 * Shared bench plumbing: every bench module exports `run(options)` returning rows; bench/run.ts runs
 * them all, prints one table and writes JSON. Timing uses tinybench; each timed task ends with
 * `await gpu().sync()` so GPU time is included.
 */
import { Bench } from 'tinybench';
import { gpu } from '../src/gpu/device.ts';

export interface BenchRow {
  /** What was measured, e.g. "gemm 1024^3" or "conv fwd+bwd 64x64 32x32 b64". */
  name: string;
  /** Median milliseconds per iteration. */
  ms: number;
  /** Derived throughput, e.g. 12.3 with unit "GFLOP/s" or "img/s". */
  value?: number;
  unit?: string;
  note?: string;
}

export interface BenchOptions {
  /** Smaller sizes and fewer iterations (lavapipe, CI smoke runs). */
  quick: boolean;
}

/** Times an async GPU task with tinybench; returns the median ms per call. */
export async function timeGpu(name: string, task: () => void | Promise<void>, opts: { iterations?: number; time?: number } = {}): Promise<number> {
  const bench = new Bench({ iterations: opts.iterations ?? 5, time: opts.time ?? 0, warmupIterations: 1 });
  bench.add(name, async () => {
    await task();
    await gpu().sync();
  });
  await bench.run();
  const result = bench.tasks[0].result as { latency?: { p50?: number; mean?: number } } | undefined;
  const ms = result?.latency?.p50 ?? result?.latency?.mean;
  if (ms === undefined) throw new Error(`bench ${name} produced no timing`);
  return ms;
}

export function printTable(rows: readonly BenchRow[]): void {
  const lines = rows.map((r) => [r.name, r.ms.toFixed(3), r.value === undefined ? '' : `${r.value.toFixed(2)} ${r.unit ?? ''}`, r.note ?? '']);
  const header = ['benchmark', 'ms (median)', 'throughput', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}
