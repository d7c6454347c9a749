/**
 * The stages of bench/gpu.sh, one per process call, each writing <out>/<stage>.json as it ends:
 *   check    every GEMM and nearest-centroid variant against the float64 reference on odd shapes
 *   tune     the autotuner on this adapter (its table cached in $ODC_CACHE_DIR for the later stages; the f32
 *            cases first and saved, then the f16 and tensor-core ones, so a cut-off keeps the f32 table)
 *   gemm     f32 GEMM n^3, tuned variant and the fixed default (PyTorch's torch.mm rows come from bench/torch_baseline.py)
 *   gemm16   f16 GEMM n^3 on f16 operands: the f16 kernels without tensor cores, and the tensor cores where their
 *            self-check passes (PyTorch's bf16 and f16 torch.mm rows and its tf32 ones go beside them)
 *   steps    the ODC training step (src/odc/step.ts): resnet18 CIFAR b512, resnet50 224^2 b256
 *   steps16  the same steps with `--precision f16` (dynamic loss scaling included), without and with tensor
 *            cores (beside PyTorch's tf32, bf16 autocast and f16 autocast + GradScaler steps)
 *   memory   the ODC memory ops (bench/odc.ts) at ImageNet scale: N 1,281,167, D 256, K 10,000
 *   dry-data 600 MNIST digits (every class) as IDX files in <out>/dry-data (the dry run's quality stage: its evaluation stays small)
 *   table    one table of every stage's rows (and PyTorch's, quality's) -> <out>/table.md
 * --dry-run: lavapipe-sized shapes, so the whole script runs on a CPU in a minute or two.
 *   bun bench/gpu-stages.ts STAGE --out DIR [--dry-run]
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gpu, initGpu, closeGpu, type Gpu } from '../src/gpu/device.ts';
import { tuneAll, saveCachedTable, adapterKey, tuneMode, applyTuneMode } from '../src/gpu/tuner.ts';
import { usedVariants, resetUsedVariants } from '../src/gpu/variants.ts';
import { GEMM_VARIANTS, gemmChoice, gemmUnsupported, gemmDefault, gemmShapeClass } from '../src/ops/gemm-variants.ts';
import { matmul, runGemm } from '../src/ops/matmul.ts';
import { setWorkingPrecision, toF16 } from '../src/ops/precision.ts';
import { TENSOR_CORE_DEFAULT, tensorCoreChoice } from '../src/ops/tensor-core-choice.ts';
import { checkTensorCores } from '../src/ops/tensor-cores.ts';
import { conv2d } from '../src/ops/conv.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { nearest, nearestChoice } from '../src/ops/clustering.ts';
import { tuneCases } from '../src/odc/tuning.ts';
import { refMatmul } from '../src/ref/matmul.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import { refMap, type RefArray } from '../src/ref/array.ts';
import { Rng } from '../src/util/rng.ts';
import { loadDataset } from '../src/data/registry.ts';
import { flagValue, timeGpu, type BenchRow } from './common.ts';
import { prepareStep, convnetCase, RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE, type Case } from './train-step.ts';
import { run as runMemory } from './odc.ts';

const U = 2 ** -24;

const stage = process.argv[2] ?? '';
const out = flagValue('out') ?? 'bench/out/gpu';
const dry = process.argv.includes('--dry-run');

/** What a stage writes to <out>/<stage>.json (besides the adapter and whether it was a dry run). */
interface StageData {
  stage: string;
  rows: BenchRow[];
  [extra: string]: unknown;
}

function write(result: StageData, g: Gpu): void {
  mkdirSync(out, { recursive: true });
  const full = { adapter: adapterKey(g), dryRun: dry, ...result };
  writeFileSync(join(out, `${result.stage}.json`), JSON.stringify(full, null, 2) + '\n');
  for (const r of result.rows)
    console.log(
      `${result.stage}: ${r.name}: ${r.ms.toFixed(3)} ms${r.value === undefined ? '' : `, ${r.value.toFixed(2)} ${r.unit ?? ''}`}${r.note ? ` (${r.note})` : ''}`,
    );
}

/** A seeded f32 tensor and its exact float64 copy (values rounded to f32 first). */
function pair(rng: Rng, shape: number[]): { ref: RefArray; gpu: Tensor<'f32'> } {
  const f = new Float32Array(shape.reduce((a, b) => a * b, 1)).map(() => rng.range(-1, 1));
  return { ref: { shape, data: Float64Array.from(f) }, gpu: Tensor.from(f, shape) };
}

/** The largest error over the f32 bound (k + 4) u sum|a b| (<= 1 passes). */
function boundRatio(actual: ArrayLike<number>, exact: RefArray, absSum: RefArray, k: number): number {
  let worst = 0;
  for (let i = 0; i < actual.length; i++)
    worst = Math.max(worst, Math.abs(actual[i] - exact.data[i]) / ((k + 4) * U * absSum.data[i] + 1e-30));
  return worst;
}

const abs = (a: RefArray): RefArray => refMap(a, Math.abs);

/** Every variant that runs here, forced, on matmul (4 transposes) and a stride-2 conv (fwd, dgrad, wgrad); nearest variants against a host argmax. */
async function check(g: Gpu): Promise<void> {
  const rng = new Rng(5);
  const [M, N, K] = dry ? [67, 45, 37] : [300, 260, 270];
  const conv = dry ? { batch: 2, hw: 9, cin: 5, cout: 8 } : { batch: 4, hw: 17, cin: 24, cout: 32 };
  const rows: BenchRow[] = [];
  const results: Array<{ variant: string; ok: boolean; worst?: number; skipped?: string }> = [];
  for (const [name, v] of GEMM_VARIANTS) {
    const reason = gemmUnsupported(v, g);
    if (reason !== null) {
      results.push({ variant: name, ok: true, skipped: reason });
      continue;
    }
    gemmChoice.force(v);
    let worst = 0;
    const t0 = performance.now();
    for (const [tA, tB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      const a = pair(rng, tA ? [K, M] : [M, K]);
      const b = pair(rng, tB ? [N, K] : [K, N]);
      const c = tidy(() => matmul(a.gpu, b.gpu, { transA: tA, transB: tB }));
      worst = Math.max(
        worst,
        boundRatio(await c.data(), refMatmul(a.ref, b.ref, tA, tB), refMatmul(abs(a.ref), abs(b.ref), tA, tB), K),
      );
      for (const t of [a.gpu, b.gpu, c]) t.dispose();
    }
    const opts = { stride: 2, padding: 1 };
    const x = pair(rng, [conv.batch, conv.hw, conv.hw, conv.cin]);
    const w = pair(rng, [3, 3, conv.cin, conv.cout]);
    const y0 = refConv2d(x.ref, w.ref, opts);
    const dy = pair(rng, y0.shape);
    x.gpu.requiresGrad = true;
    w.gpu.requiresGrad = true;
    const y = tidy(() => {
      const o = conv2d(x.gpu, w.gpu, opts);
      backward(o, dy.gpu);
      return o;
    });
    const exp = refConv2dBackward(dy.ref, x.ref, w.ref, opts);
    const bound = refConv2dBackward(abs(dy.ref), abs(x.ref), abs(w.ref), opts);
    worst = Math.max(worst, boundRatio(await y.data(), y0, refConv2d(abs(x.ref), abs(w.ref), opts), 9 * conv.cin));
    worst = Math.max(worst, boundRatio(await x.gpu.grad!.data(), exp.dx, bound.dx, 9 * conv.cout));
    worst = Math.max(
      worst,
      boundRatio(await w.gpu.grad!.data(), exp.dw, bound.dw, y0.shape[0] * y0.shape[1] * y0.shape[2]),
    );
    for (const t of [x.gpu, w.gpu, dy.gpu, y, x.gpu.grad!, w.gpu.grad!]) t.dispose();
    results.push({ variant: name, ok: worst <= 1, worst });
    rows.push({
      name: `check gemm ${name}`,
      ms: performance.now() - t0,
      note: `${worst <= 1 ? 'ok' : 'FAILED'}: worst error ${worst.toFixed(3)} of the f32 bound`,
    });
  }
  gemmChoice.force(null);
  const [n, d, k] = dry ? [100, 16, 37] : [2000, 256, 1000];
  const x = new Float32Array(n * d).map(() => rng.normal());
  const c = new Float32Array(k * d).map(() => rng.normal());
  for (const body of ['regs', 'tiled'] as const) {
    nearestChoice.force({ body });
    const xt = Tensor.from(x, [n, d]);
    const ct = Tensor.from(c, [k, d]);
    const labels = Tensor.empty([n], 'u32');
    const scores = Tensor.empty([n], 'f32');
    nearest({ x: xt, n, d, centroids: ct, k, labels, scores });
    const got = await scores.data();
    let worst = 0;
    for (let i = 0; i < n; i++) {
      // The GPU's best score is within the f32 bound of the exact best (each score is, so the max is).
      let best = -Infinity;
      let absMax = 0;
      for (let j = 0; j < k; j++) {
        let s = 0;
        let sAbs = 0;
        for (let q = 0; q < d; q++) {
          s += x[i * d + q] * c[j * d + q];
          sAbs += Math.abs(x[i * d + q] * c[j * d + q]);
        }
        best = Math.max(best, s);
        absMax = Math.max(absMax, sAbs);
      }
      worst = Math.max(worst, Math.abs(got[i] - best) / ((d + 4) * U * absMax + 1e-30));
    }
    results.push({ variant: `nearest ${body}`, ok: worst <= 1, worst });
    rows.push({
      name: `check nearest ${body}`,
      ms: 0,
      note: `${worst <= 1 ? 'ok' : 'FAILED'}: best score within ${worst.toFixed(3)} of its bound`,
    });
    for (const t of [xt, ct, labels, scores]) t.dispose();
  }
  nearestChoice.force(null);
  const failed = results.filter((r) => !r.ok).map((r) => r.variant);
  write({ stage: 'check', rows, results, failed }, g);
  if (failed.length > 0) {
    console.log(`check: FAILED variants: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

async function tune(g: Gpu): Promise<void> {
  if (g.features.f16) await checkTensorCores(); // the tensor-core candidates run only once it passed
  const cases = tuneCases(g, dry ? 'smoke' : 'full');
  try {
    const t0 = performance.now();
    const isF16 = (c: (typeof cases)[number]): boolean => c.shapeClass.endsWith('/f16');
    let { table, reports } = await tuneAll(
      g,
      cases.filter((c) => !isF16(c)),
      dry ? 2 : 5,
    );
    let file = saveCachedTable(g, table, reports);
    const half = await tuneAll(g, cases.filter(isF16), dry ? 2 : 5);
    ({ table, reports } = { table: { ...table, ...half.table }, reports: [...reports, ...half.reports] });
    file = saveCachedTable(g, table, reports);
    const rows = reports.map((r) => ({
      name: `tune ${r.key}`,
      ms: r.medians[r.choice] ?? 0,
      note: `${r.choice}: ${r.reason}`,
    }));
    write({ stage: 'tune', rows, table, reports, cache: file, seconds: (performance.now() - t0) / 1000 }, g);
  } finally {
    for (const c of cases) c.dispose();
  }
}

/** Median GPU milliseconds of `record` (timestamp queries where offered, else wall clock around a sync). */
async function gpuMedianMs(g: Gpu, record: () => void, repeats: number): Promise<number> {
  if (!g.features.timestampQuery) return timeGpu('task', record, { iterations: repeats });
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) times.push((await g.profile(record)).reduce((s, k) => s + k.ms, 0));
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

async function gemm(g: Gpu): Promise<void> {
  console.log(await applyTuneMode(g, tuneMode(g), () => []));
  const sizes = dry ? [64, 128, 256] : [1024, 2048, 4096, 8192];
  const rows: BenchRow[] = [];
  for (const n of sizes) {
    const a = Tensor.from(
      new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5),
      [n, n],
    );
    const b = Tensor.from(
      new Float32Array(n * n).map((_, i) => ((i * 104729) % 1000) / 1000 - 0.5),
      [n, n],
    );
    const flops = 2 * n ** 3;
    const record = (): void => matmul(a, b).dispose();
    record(); // compile
    resetUsedVariants();
    const tunedMs = await gpuMedianMs(g, record, dry ? 3 : 7);
    const used = Object.values(usedVariants())[0] ?? '?';
    rows.push({
      name: `gemm f32 ${n}^3 tuned`,
      ms: tunedMs,
      value: flops / tunedMs / 1e9,
      unit: 'TFLOP/s',
      note: used,
    });
    const fallback = gemmDefault(g, n, n);
    gemmChoice.force(fallback);
    record();
    const defaultMs = await gpuMedianMs(g, record, dry ? 3 : 7);
    gemmChoice.force(null);
    rows.push({
      name: `gemm f32 ${n}^3 default`,
      ms: defaultMs,
      value: flops / defaultMs / 1e9,
      unit: 'TFLOP/s',
      note: fallback,
    });
    a.dispose();
    b.dispose();
  }
  write({ stage: 'gemm', rows }, g);
}

/** Why the f16 stages cannot run here, or null. */
function noF16(g: Gpu): string | null {
  return g.features.f16 ? null : `${g.adapterName} lacks shader-f16`;
}

async function gemm16(g: Gpu): Promise<void> {
  console.log(await applyTuneMode(g, tuneMode(g), () => []));
  const rows: BenchRow[] = [];
  const missing = noF16(g);
  if (missing) return write({ stage: 'gemm16', rows: [{ name: 'gemm f16', ms: 0, note: `skipped: ${missing}` }] }, g);
  const tc = await checkTensorCores();
  for (const n of dry ? [64, 128, 256] : [1024, 2048, 4096, 8192]) {
    // f16 operands made once, outside the timing (PyTorch's rows time torch.mm on bf16/f16 tensors too).
    const [a, b] = [7919, 104729].map((p) => {
      const f32 = Tensor.from(
        new Float32Array(n * n).map((_, i) => ((i * p) % 1000) / 1000 - 0.5),
        [n, n],
      );
      const f16 = toF16(f32);
      f32.dispose();
      return f16;
    });
    const out = Tensor.empty([n, n]);
    const record = (): void =>
      runGemm({ mode: 'matmul', M: n, N: n, K: n, a: a.buffer, b: b.buffer, out: out.buffer, precision: 'f16' });
    const timeRow = async (name: string, note: (used: string) => string): Promise<void> => {
      record(); // compile
      resetUsedVariants();
      const ms = await gpuMedianMs(g, record, dry ? 3 : 7);
      const used = Object.entries(usedVariants())
        .map(([k, v]) => `${k.split('/')[0]} ${v}`)
        .join(', ');
      rows.push({ name, ms, value: (2 * n ** 3) / ms / 1e9, unit: 'TFLOP/s', note: note(used) });
    };
    tensorCoreChoice.force('off');
    await timeRow(`gemm f16 ${n}^3`, (used) => `${used}; f32 accumulation`);
    if (tc.state === 'passed') {
      // The tuned tiling, or the default one where the tuned table keeps this size off the tensor cores.
      tensorCoreChoice.force(null);
      const tuned = tensorCoreChoice.choose(g, gemmShapeClass('matmul', n, n, n, 'f16'), TENSOR_CORE_DEFAULT);
      if (!tuned.tiles) tensorCoreChoice.force(TENSOR_CORE_DEFAULT);
      await timeRow(
        `gemm f16 ${n}^3 tensor cores`,
        (used) => `${used}; ${tc.config.M}x${tc.config.N}x${tc.config.K} f16->f32`,
      );
    }
    tensorCoreChoice.force(null);
    for (const t of [a, b, out]) t.dispose();
  }
  if (tc.state !== 'passed')
    rows.push({ name: 'gemm f16 tensor cores', ms: 0, note: `skipped: ${'reason' in tc ? tc.reason : tc.state}` });
  write({ stage: 'gemm16', rows, tensorCores: tc }, g);
}

async function steps16(g: Gpu): Promise<void> {
  console.log(await applyTuneMode(g, tuneMode(g), () => []));
  const rows: BenchRow[] = [];
  const missing = noF16(g);
  if (missing)
    return write({ stage: 'steps16', rows: [{ name: 'ODC step f16', ms: 0, note: `skipped: ${missing}` }] }, g);
  const tc = await checkTensorCores();
  const cases: Case[] = dry ? [{ ...convnetCase(16), n: 256 }] : [RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE];
  const note = 'f16 GEMM operands, f32 accumulation and master weights, dynamic loss scaling';
  for (const c of cases) {
    for (const tensorCores of tc.state === 'passed' ? [false, true] : [false]) {
      setWorkingPrecision('f16');
      tensorCoreChoice.force(tensorCores ? null : 'off'); // with tensor cores: where the tuned table has them
      const { step, dispose } = await prepareStep(c);
      try {
        await step(); // compile
        const ms = await timeGpu(c.name, step, { iterations: dry ? 2 : 5 });
        const name = `${c.name} f16${tensorCores ? ' tensor cores' : ''}`;
        rows.push({ name, ms, value: (c.batch * 1000) / ms, unit: 'img/s', note });
      } finally {
        dispose();
        tensorCoreChoice.force(null);
        setWorkingPrecision('f32');
      }
    }
  }
  if (tc.state !== 'passed')
    rows.push({ name: 'ODC step f16 tensor cores', ms: 0, note: `skipped: ${'reason' in tc ? tc.reason : tc.state}` });
  write({ stage: 'steps16', rows }, g);
}

async function steps(g: Gpu): Promise<void> {
  console.log(await applyTuneMode(g, tuneMode(g), () => []));
  const cases: Case[] = dry ? [{ ...convnetCase(16), n: 256 }] : [RESNET18_CIFAR_CASE, RESNET50_IMAGENET_CASE];
  const rows: BenchRow[] = [];
  for (const c of cases) {
    const { step, dispose } = await prepareStep(c);
    try {
      await step(); // compile
      const ms = await timeGpu(c.name, step, { iterations: dry ? 2 : 5 });
      rows.push({ name: c.name, ms, value: (c.batch * 1000) / ms, unit: 'img/s', note: 'f32' });
    } finally {
      dispose();
    }
  }
  write({ stage: 'steps', rows }, g);
}

async function memory(g: Gpu): Promise<void> {
  console.log(await applyTuneMode(g, tuneMode(g), () => []));
  const size = dry ? { n: 4096, d: 32, k: 64, batch: 128, minCluster: 4 } : undefined;
  write({ stage: 'memory', rows: await runMemory({ quick: false }, size) }, g);
}

function readJson(file: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** One table: ours beside PyTorch's where bench/torch_baseline.py wrote a matching row, then quality. */
function table(): void {
  const lines = ['| stage | measurement | ours | PyTorch | note |', '|---|---|---:|---:|---|'];
  const torch = new Map<string, BenchRow>();
  for (const f of existsSync(out) ? readdirSync(out) : []) {
    if (!f.startsWith('torch-') || !f.endsWith('.json')) continue;
    for (const r of (readJson(join(out, f))?.rows as BenchRow[] | undefined) ?? []) torch.set(r.name, r);
  }
  const fmt = (r: BenchRow | undefined): string =>
    r ? `${r.ms.toFixed(3)} ms${r.value !== undefined ? `, ${r.value.toFixed(2)} ${r.unit ?? ''}` : ''}` : '';
  /** PyTorch's rows beside one of ours, labelled; the first one present is the percentage's base. */
  const peers = (key: string): Array<[string, BenchRow | undefined]> => {
    const gemm16 = /^gemm f16 (\S+)/.exec(key);
    if (gemm16) {
      const n = gemm16[1];
      const [f16, bf16, tf32] = [`gemm f16 ${n}`, `gemm bf16 ${n}`, `gemm f32 ${n} tf32 on`].map((k) => torch.get(k));
      return [
        ['f16', f16],
        ['bf16', bf16],
        ['tf32', tf32],
      ];
    }
    const step16 = /^(ODC step .*) f16( tensor cores)?$/.exec(key);
    if (step16) {
      const base = step16[1];
      return [
        ['tf32', torch.get(`${base} tf32`)],
        ['bf16 autocast', torch.get(`${base} bf16 autocast`)],
        ['f16 autocast', torch.get(`${base} f16 autocast`)],
      ];
    }
    return [
      ['', torch.get(key) ?? torch.get(`${key} tf32 off`)],
      ['tf32', torch.get(`${key} tf32 on`) ?? torch.get(`${key} tf32`)],
    ];
  };
  for (const s of ['check', 'tune', 'gemm', 'gemm16', 'steps', 'steps16', 'memory']) {
    const j = readJson(join(out, `${s}.json`));
    if (!j) {
      lines.push(`| ${s} | (not run: see stages.log) | | | |`);
      continue;
    }
    for (const r of (j.rows as BenchRow[]) ?? []) {
      const present = peers(r.name.replace(/ (tuned|default)$/, '')).filter(([, row]) => row !== undefined);
      const base = present[0]?.[1];
      const pct = base?.value && r.value ? ` (${((r.value / base.value) * 100).toFixed(0)}%)` : '';
      const theirs = present.map(([label, row]) => `${label ? `${label} ` : ''}${fmt(row)}`).join('; ');
      lines.push(`| ${s} | ${r.name} | ${fmt(r)}${pct} | ${theirs} | ${r.note ?? ''} |`);
    }
  }
  for (const f of (existsSync(out) ? readdirSync(out) : []).filter((f) => /^quality-.*\.json$/.test(f)).sort()) {
    type Quality = {
      seed?: number;
      epochs?: number;
      memoryNmi?: number | null;
      skipped?: string;
      eval?: { rows?: Array<{ name: string; values: Record<string, number> }> } | null;
    };
    const q = readJson(join(out, f)) as Quality | null;
    const values = q?.eval?.rows?.[0]?.values ?? {};
    const metrics = Object.entries(values)
      .map(([k, v]) => `${k} ${k.includes('NMI') || k.includes('ARI') ? v.toFixed(3) : `${(100 * v).toFixed(1)}%`}`)
      .join(', ');
    lines.push(
      `| quality | --preset mnist seed ${q?.seed ?? '?'}, ${q?.epochs ?? '?'} epochs | ${q?.skipped ?? `memory NMI ${q?.memoryNmi?.toFixed(3) ?? '?'}`} | | ${metrics} |`,
    );
  }
  const text = lines.join('\n') + '\n';
  writeFileSync(join(out, 'table.md'), text);
  console.log(text);
}

const STAGES: Record<string, (g: Gpu) => Promise<void>> = { check, tune, gemm, gemm16, steps, steps16, memory };

/** Writes 600 digits spread over the default MNIST source as IDX files and prints the `idx:` spec that loads them. */
async function dryData(): Promise<void> {
  const ds = await loadDataset('mnist');
  const n = 600;
  const dir = join(out, 'dry-data');
  mkdirSync(dir, { recursive: true });
  const header = (magic: number, dims: number[]): Buffer => {
    const h = Buffer.alloc(4 + 4 * dims.length);
    h.writeUInt32BE(magic, 0);
    dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
    return h;
  };
  const pixels = ds.height * ds.width * ds.channels;
  // Every (n_all / n)-th digit: the package stores the digits grouped by class.
  const pick = Array.from({ length: n }, (_, i) => Math.floor((i * ds.n) / n));
  const images = new Uint8Array(n * pixels);
  pick.forEach((j, i) => images.set(ds.images.subarray(j * pixels, (j + 1) * pixels), i * pixels));
  const labels = Uint8Array.from(pick, (j) => ds.labels?.[j] ?? 0);
  writeFileSync(join(dir, 'images.idx'), Buffer.concat([header(0x803, [n, ds.height, ds.width]), images]));
  writeFileSync(join(dir, 'labels.idx'), Buffer.concat([header(0x801, [n]), labels]));
  console.log(`idx:${join(dir, 'images.idx')},${join(dir, 'labels.idx')},10`);
}

if (stage === 'table') {
  table();
} else if (stage === 'dry-data') {
  await dryData();
} else {
  const run = STAGES[stage];
  if (!run) throw new Error(`unknown stage "${stage}" (${[...Object.keys(STAGES), 'table', 'dry-data'].join(', ')})`);
  const g = await initGpu();
  console.log(`${stage}: ${adapterKey(gpu())}${dry ? ' (dry run)' : ''}`);
  await run(g);
  await closeGpu();
  process.exit(process.exitCode ?? 0);
}
