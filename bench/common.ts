/**
 * Shared bench plumbing: every bench module exports `run(options)` returning rows; bench/run.ts runs
 * them all, prints one table and writes JSON. Timing uses tinybench; each timed task ends with
 * `await gpu().sync()` so GPU time is included.
 */
import { pathToFileURL } from 'node:url';
import { Bench } from 'tinybench';
import { gpu, initGpu, type Gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';

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
export async function timeGpu(
  name: string,
  task: () => void | Promise<void>,
  opts: { iterations?: number; time?: number } = {},
): Promise<number> {
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
  const lines = rows.map((r) => [
    r.name,
    r.ms.toFixed(3),
    r.value === undefined ? '' : `${r.value.toFixed(2)} ${r.unit ?? ''}`,
    r.note ?? '',
  ]);
  const header = ['benchmark', 'ms (median)', 'throughput', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i])).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

/**
 * Process CPU milliseconds (all threads, lavapipe's workers included) of one call, best of `reps`.
 * On a CPU adapter shared with other jobs this is steadier than wall time: flops / cpu-ms is the
 * throughput per busy core.
 */
export async function cpuMs(task: () => void, reps = 2): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    const start = process.cpuUsage();
    task();
    await gpu().sync();
    const used = process.cpuUsage(start);
    best = Math.min(best, (used.user + used.system) / 1000);
  }
  return best;
}

/** An f32 tensor of uniform values in [-scale, scale) (Math.random, not seeded). */
export function randomTensor(shape: number[], scale = 1): Tensor<'f32'> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (Math.random() * 2 - 1) * scale;
  return Tensor.from(data, shape);
}

/** Quick sizes: asked for with --quick, or implied on a CPU adapter unless --full is given. */
export function quickSizes(g: Gpu): boolean {
  return process.argv.includes('--quick') || (g.isCpuAdapter && !process.argv.includes('--full'));
}

/** The header line naming the adapter, e.g. "adapter: llvmpipe (dawn under node), quick sizes". */
export function adapterLine(g: Gpu, quick: boolean): string {
  return `adapter: ${g.adapterName} (${g.implementation} under ${g.runtime})${quick ? ', quick sizes' : ''}`;
}

/**
 * When the module at `moduleUrl` is the program being run (`npx tsx bench/x.ts [--quick|--full]`):
 * initialises the GPU, runs `run`, prints its table and exits. Does nothing when the module is imported.
 */
export async function runIfMain(moduleUrl: string, run: (o: BenchOptions) => Promise<BenchRow[]>): Promise<void> {
  if (moduleUrl !== pathToFileURL(process.argv[1] ?? '').href) return;
  const g = await initGpu();
  const quick = quickSizes(g);
  console.log(adapterLine(g, quick));
  printTable(await run({ quick }));
  process.exit(0);
}

/** Least-squares slope of y against x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i] - mx) * (ys[i] - my);
    den += (xs[i] - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** The value after `--name` on the command line, or undefined when the flag is absent. */
export function flagValue(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The positive integer after `--name`, or `fallback` when the flag is absent; anything else is an error naming the flag. */
export function positiveIntFlag(name: string, fallback: number): number {
  const text = flagValue(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer, got ${text}`);
  return value;
}
