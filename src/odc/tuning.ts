/**
 * What the autotuner (src/gpu/tuner.ts) times for ODC training, and the run directory's record of the
 * kernel variants a run used:
 * - `tuneCases(scale)`: one representative shape per (kernel, shape class): the GEMM of matmul and of each
 *   conv pass, and the nearest-centroid GEMM + argmax, at small and medium sizes (and large ones at
 *   scale 'full', for GPUs). Inputs are positive, so every variant's result can be checked against the
 *   default's within the f32 bound of its sum.
 * - `prepareRunVariants` / `recordRunVariants`: a run writes the variants it used to `variants.json` in
 *   its folder; a resume pins them, so it continues bit for bit whatever the tuned table says now.
 */
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Gpu } from '../gpu/device.ts';
import {
  applyTuneMode,
  adapterKey,
  cacheFile,
  loadCachedTable,
  saveCachedTable,
  tuneAll,
  tuneMode,
  TUNE_MARGIN,
  type TuneCase,
} from '../gpu/tuner.ts';
import {
  resetUsedVariants,
  setPinnedTable,
  usedVariants,
  variantFamilies,
  type VariantTable,
} from '../gpu/variants.ts';
import { gemmDefault, gemmShapeClass } from '../ops/gemm-variants.ts';
import { runGemm, type ConvParams, type GemmMode } from '../ops/matmul.ts';
import { convForwardGemm } from '../ops/conv.ts';
import { toF16 } from '../ops/precision.ts';
import { TENSOR_CORE_DEFAULT, tensorCoresEnabled } from '../ops/tensor-core-choice.ts';
import { checkTensorCores } from '../ops/tensor-cores.ts';
import type { Precision } from '../gpu/kernel.ts';
import { Tensor } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';
import { nearest, nearestShapeClass } from '../ops/clustering.ts';

/** The file in a run folder that records the kernel variants the run used. */
export const VARIANTS_FILE = 'variants.json';

const U = 2 ** -24;

function positive(rng: Rng, n: number): Tensor<'f32'> {
  return Tensor.from(
    new Float32Array(n).map(() => rng.range(0.25, 1)),
    [n],
  );
}

/** |c - r| <= 2 (k + 4) u |r| per element: both within (k + 4) u of the exact sum of positive terms. */
function withinSumBound(k: number): (c: Float32Array, r: Float32Array) => boolean {
  return (c, r) =>
    c.length === r.length && c.every((v, i) => Math.abs(v - r[i]) <= 2 * (k + 4) * U * Math.abs(r[i]) + 1e-30);
}

/** A square 3x3, padding-1, stride-1 convolution's geometry. */
function conv3x3(batch: number, hw: number, cin: number, cout: number): ConvParams {
  return { batch, H: hw, W: hw, Cin: cin, OH: hw, OW: hw, Cout: cout, KH: 3, KW: 3, stride: 1, pad: 1 };
}

/**
 * One GEMM tuning case. `precision` f16 reads f16 copies of the same positive operands (its own shape
 * class, `.../f16`); `kernel` 'tensor-cores' times the tensor-core choices of an f16 plain matmul or conv
 * forward (src/ops/tensor-core-choice.ts) instead of the GEMM variants. Every candidate of a case reads the
 * same operands and accumulates in f32, so the f32 sum bound holds between any two; the tensor cores'
 * accumulation order is the hardware's, so they get the self-check's per-term tolerance.
 */
function gemmCase(
  g: Gpu,
  mode: GemmMode,
  conv: ConvParams | null,
  size: number,
  precision: Precision = 'f32',
  kernel: 'gemm' | 'tensor-cores' = 'gemm',
): TuneCase {
  const c = conv ?? conv3x3(0, 0, 0, 0);
  const positions = c.batch * c.OH * c.OW;
  const [M, N, K] =
    mode === 'matmul'
      ? [size, size, size]
      : mode === 'conv_forward'
        ? [positions, c.Cout, 9 * c.Cin]
        : mode === 'conv_dgrad'
          ? [c.batch * c.H * c.W, c.Cin, 9 * c.Cout]
          : [9 * c.Cin, c.Cout, positions];
  const rng = new Rng(M + N + K);
  const aSize = mode === 'matmul' ? M * K : mode === 'conv_dgrad' ? positions * c.Cout : c.batch * c.H * c.W * c.Cin;
  const bSize = mode === 'matmul' ? K * N : mode === 'conv_wgrad' ? positions * c.Cout : 9 * c.Cin * c.Cout;
  const sources = [positive(rng, aSize), positive(rng, bSize)];
  const copies = precision === 'f16' ? sources.map(toF16) : [];
  const [a, b] = precision === 'f16' ? copies : sources;
  const out = Tensor.empty([M * N], 'f32');
  const phase = { ph: 0, pw: 0, t0h: 1, t0w: 1, Ht: c.H, Wt: c.W, KHp: 3, KWp: 3 }; // stride 1: one phase
  const tensorCores = kernel === 'tensor-cores';
  return {
    kernel,
    shapeClass: gemmShapeClass(mode, M, N, K, precision),
    fallback: tensorCores ? (tensorCoresEnabled() ? TENSOR_CORE_DEFAULT : 'off') : gemmDefault(g, N, M),
    record: () =>
      tensorCores && conv
        ? convForwardGemm(a.buffer, b.buffer, out.buffer, c, 'f16')
        : runGemm({
            mode,
            M,
            N,
            K,
            a: a.buffer,
            b: b.buffer,
            out: out.buffer,
            conv: conv ? (mode === 'conv_dgrad' ? { ...c, phase } : c) : undefined,
            precision,
          }),
    result: () => out.data(),
    agrees: tensorCores ? withinTensorCoreTolerance(K) : withinSumBound(K),
    dispose: () => {
      for (const t of [...sources, ...copies, out]) t.dispose();
    },
  };
}

/** |c - r| <= K·2^-12 (the tensor-core self-check's tolerance, relative to the result here). */
function withinTensorCoreTolerance(k: number): (c: Float32Array, r: Float32Array) => boolean {
  return (c, r) => c.length === r.length && c.every((v, i) => Math.abs(v - r[i]) <= k * 2 ** -12 * Math.abs(r[i]));
}

function nearestCase(g: Gpu, n: number, d: number, k: number): TuneCase {
  const rng = new Rng(n + d + k);
  const x = positive(rng, n * d);
  const centroids = positive(rng, k * d);
  const labels = Tensor.empty([n], 'u32');
  const scores = Tensor.empty([n], 'f32');
  return {
    kernel: 'nearest',
    shapeClass: nearestShapeClass(n, k, d),
    fallback: g.isCpuAdapter ? 'regs' : 'tiled',
    record: () => nearest({ x, n, d, centroids, k, labels, scores }),
    result: () => scores.data(), // the best score; labels may differ only on a near tie, which the scores show
    agrees: withinSumBound(d),
    dispose: () => {
      for (const t of [x, centroids, labels, scores]) t.dispose();
    },
  };
}

/**
 * The cases `odc tune` and ODC_TUNE=full time: 'small' and 'medium' shape classes (CPU adapters), also
 * 'large' ones ('full': GPUs), or only 'small' ones ('smoke': bench/gpu.sh's dry run).
 */
export function tuneCases(g: Gpu, scale: 'smoke' | 'small' | 'full' = g.isCpuAdapter ? 'small' : 'full'): TuneCase[] {
  const medium = scale !== 'smoke';
  const cases = [
    gemmCase(g, 'matmul', null, 128),
    ...(medium ? [gemmCase(g, 'matmul', null, 512)] : []),
    ...(['conv_forward', 'conv_dgrad', 'conv_wgrad'] as const).flatMap((mode) => [
      gemmCase(g, mode, conv3x3(2, 8, 16, 16), 0),
      ...(medium ? [gemmCase(g, mode, conv3x3(8, 16, 64, 64), 0)] : []),
    ]),
    nearestCase(g, 256, 32, 64),
    ...(medium ? [nearestCase(g, 512, 128, 1000)] : []),
  ];
  if (scale === 'full') {
    cases.push(gemmCase(g, 'matmul', null, 2048));
    for (const mode of ['conv_forward', 'conv_dgrad', 'conv_wgrad'] as const)
      cases.push(gemmCase(g, mode, conv3x3(32, 28, 128, 128), 0));
    cases.push(nearestCase(g, 65536, 256, 10000));
  }
  return g.features.f16 ? [...cases, ...f16Cases(g, scale)] : cases;
}

/**
 * Where the adapter has shader-f16: the GEMM cases again on f16 operands (the conv passes on GPUs only), and the tensor-core choice of the
 * f16 plain matmul and conv forward (its candidates run only where the self-check passed: elsewhere each is
 * reported skipped with the reason, and `off` is the one timed).
 */
function f16Cases(g: Gpu, scale: 'smoke' | 'small' | 'full'): TuneCase[] {
  const sizes = scale === 'smoke' ? [128] : scale === 'small' ? [128, 512] : [128, 512, 2048];
  const convs = [conv3x3(2, 8, 16, 16), ...(scale === 'smoke' ? [] : [conv3x3(8, 16, 64, 64)])];
  if (scale === 'full') convs.push(conv3x3(32, 28, 128, 128));
  // The f16 conv passes are tuned on GPUs only: on lavapipe their four smallest cases alone took bench/gpu.sh
  // --dry-run's tune stage from ~20 s to ~5 min (2 shared cores), for CPU timings that move 2x anyway.
  const convModes = scale === 'full' ? (['conv_forward', 'conv_dgrad', 'conv_wgrad'] as const) : [];
  return [
    ...sizes.map((n) => gemmCase(g, 'matmul', null, n, 'f16')),
    ...convModes.flatMap((mode) => convs.map((c) => gemmCase(g, mode, c, 0, 'f16'))),
    ...sizes.map((n) => gemmCase(g, 'matmul', null, n, 'f16', 'tensor-cores')),
    ...convs.map((c) => gemmCase(g, 'conv_forward', c, 0, 'f16', 'tensor-cores')),
  ];
}

interface RunVariants {
  adapter: string;
  table: VariantTable;
}

function readRunVariants(outDir: string): RunVariants | null {
  const file = join(outDir, VARIANTS_FILE);
  if (!existsSync(file)) return null;
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as RunVariants;
    if (typeof parsed.table !== 'object' || parsed.table === null) throw new Error('no "table" object');
    return parsed;
  } catch (err) {
    throw new Error(
      `${file} is damaged (${err instanceof Error ? err.message : String(err)}): delete it to resume with this machine's variants (results then differ by rounding)`,
    );
  }
}

/**
 * Before a run: a resume pins the variants its folder records (and says so when the adapter differs); a
 * fresh run applies ODC_TUNE. Returns the line to log.
 */
export async function prepareRunVariants(g: Gpu, outDir: string, resume: boolean): Promise<string> {
  resetUsedVariants();
  setPinnedTable({});
  const mode = tuneMode(g);
  const line = await applyTuneMode(g, mode, () => tuneCases(g));
  const recorded = resume ? readRunVariants(outDir) : null;
  if (!recorded) return line;
  setPinnedTable(recorded.table);
  const other =
    recorded.adapter !== adapterKey(g)
      ? `; recorded on ${recorded.adapter}, so results may differ by rounding where a variant cannot run here`
      : '';
  return `kernel variants: pinned to the run's ${VARIANTS_FILE}${other}`;
}

/** Writes the variants used so far (with those recorded before, for a resumed run) to the run's variants.json. */
export function recordRunVariants(g: Gpu, outDir: string): void {
  const file = join(outDir, VARIANTS_FILE);
  const before = existsSync(file) ? (readRunVariants(outDir)?.table ?? {}) : {};
  const record: RunVariants = { adapter: adapterKey(g), table: { ...before, ...usedVariants() } };
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
}

/** `odc info`'s part: ODC_TUNE, the cache, the variants this adapter cannot run, and the table in use. */
export function variantsInfo(g: Gpu): string {
  let mode: string;
  try {
    mode = tuneMode(g);
  } catch (err) {
    mode = `invalid (${err instanceof Error ? err.message : String(err)})`;
  }
  const cached = loadCachedTable(g);
  const lines = [`kernel variants: ODC_TUNE=${process.env.ODC_TUNE || '(unset)'} -> ${mode}`];
  lines.push(
    cached
      ? `  tuned table: ${cacheFile(g)} (${cached.date})`
      : `  tuned table: none cached for this adapter (${cacheFile(g)}); \`odc tune\` makes one`,
  );
  for (const [kernel, choice] of variantFamilies()) {
    const skipped = [...choice.family.variants]
      .map(([name, v]) => [name, choice.family.unsupported(v, g)] as const)
      .filter(([, r]) => r !== null);
    lines.push(
      `  ${kernel}: ${choice.family.variants.size} variants, ${choice.family.variants.size - skipped.length} run here`,
    );
    const byReason = new Map<string, string[]>();
    for (const [name, reason] of skipped) byReason.set(reason!, [...(byReason.get(reason!) ?? []), name]);
    for (const [reason, names] of byReason) lines.push(`    cannot run ${names.join(', ')}: ${reason}`);
  }
  const table = mode === 'off' ? {} : (cached?.table ?? {});
  lines.push('  table (kernel/shape class: variant; every other class uses the fixed default):');
  const keys = Object.keys(table).sort();
  if (keys.length === 0) lines.push('    (empty: the fixed defaults everywhere)');
  for (const key of keys) lines.push(`    ${key.padEnd(24)} ${table[key]}`);
  return lines.join('\n');
}

/** `odc tune`: tunes every case on this adapter, caches the table, and returns the report as text. */
export async function tuneAndSave(g: Gpu, repeats: number): Promise<string> {
  if (g.features.f16) await checkTensorCores(); // the tensor-core candidates run only once it passed
  const cases = tuneCases(g);
  try {
    const { table, reports } = await tuneAll(g, cases, repeats);
    const file = saveCachedTable(g, table, reports);
    const lines = [
      `tuned ${reports.length} cases on ${adapterKey(g)} (${repeats} timed rounds each, medians; the default is left only for a win over ${TUNE_MARGIN * 100}%)`,
    ];
    for (const r of reports) {
      const fastest = Object.entries(r.medians)
        .sort((a, b) => a[1] - b[1])
        .slice(0, 3)
        .map(([name, ms]) => `${name} ${ms.toFixed(3)} ms`)
        .join(', ');
      lines.push(`  ${r.key.padEnd(24)} ${r.choice.padEnd(28)} ${r.reason}; fastest: ${fastest}`);
      // Reasons that repeat across cases (an adapter limit, a missing feature) are said once per case, grouped.
      const byReason = new Map<string, string[]>();
      for (const [name, why] of Object.entries(r.skipped)) byReason.set(why, [...(byReason.get(why) ?? []), name]);
      for (const [why, names] of byReason) lines.push(`    skipped ${names.join(', ')}: ${why}`);
    }
    lines.push(`saved to ${file}; ODC_TUNE=cached (the default on GPUs) uses it`);
    return lines.join('\n');
  } finally {
    for (const c of cases) c.dispose();
  }
}
