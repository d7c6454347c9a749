/**
 * The autotuner: for each (kernel, shape class) it times the candidate variants on this adapter and keeps
 * the winner in the table of src/gpu/variants.ts, cached per adapter and driver in the user's cache
 * directory. Each candidate is first checked against the default's result on the same inputs (a variant
 * that is wrong on this adapter, e.g. a subgroup layout the driver does not follow, is rejected with its
 * reason), then all candidates are timed in interleaved rounds (GPU timestamp queries where the adapter
 * has them, else wall clock around a sync) and the decision rule `decideVariant` picks: the lowest median,
 * but the default is only left for a candidate whose median beats it by the margin.
 *
 * ODC_TUNE=off|cached|full: `off` uses the defaults, `cached` the cached table if there is one, `full`
 * tunes now and caches the result (`odc tune` does the same). Unset means `cached` on GPUs and `off` on
 * CPU adapters (lavapipe), whose timings move 2x from run to run: seeded results stay those of the
 * defaults there.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Gpu } from './device.ts';
import { setTunedTable, tableKey, variantFamilies, type VariantTable } from './variants.ts';

/** A default is left only for a candidate at least this much faster (5%: medians of noisy timings). */
export const TUNE_MARGIN = 0.05;

/** Version of the cache file's layout; a file of another version is ignored (and rewritten by the next tune). */
const CACHE_VERSION = 1;

export type TuneMode = 'off' | 'cached' | 'full';

/** ODC_TUNE's value, checked (unset: 'cached' on GPUs, 'off' on CPU adapters). */
export function tuneMode(g: Pick<Gpu, 'isCpuAdapter'>, value = process.env.ODC_TUNE): TuneMode {
  if (value === undefined || value === '') return g.isCpuAdapter ? 'off' : 'cached';
  if (value === 'off' || value === 'cached' || value === 'full') return value;
  throw new Error(
    `ODC_TUNE=${value} is not a tuning mode: use off (the fixed defaults), cached (the table \`odc tune\` saved) or full (tune now)`,
  );
}

/** The outcome of the decision rule for one (kernel, shape class). */
export interface Decision {
  choice: string;
  /** Median milliseconds per candidate that was timed. */
  medians: Record<string, number>;
  reason: string;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The decision rule: the candidate with the lowest median time wins, but the default stays unless the
 * winner's median is below (1 - margin) x the default's. A default that was not timed (it cannot run, or
 * it failed) loses to the fastest candidate. Candidates without samples are ignored.
 */
export function decideVariant(
  fallback: string,
  samples: Readonly<Record<string, readonly number[]>>,
  margin = TUNE_MARGIN,
): Decision {
  const medians: Record<string, number> = {};
  for (const [name, xs] of Object.entries(samples)) if (xs.length > 0) medians[name] = median(xs);
  const ranked = Object.keys(medians).sort((a, b) => medians[a] - medians[b]);
  if (ranked.length === 0) return { choice: fallback, medians, reason: 'no candidate was timed: the default stays' };
  const best = ranked[0];
  const base = medians[fallback];
  if (base === undefined)
    return { choice: best, medians, reason: `the default ${fallback} was not timed; ${best} is fastest` };
  if (best === fallback) return { choice: fallback, medians, reason: 'the default is fastest' };
  if (medians[best] < (1 - margin) * base) {
    return {
      choice: best,
      medians,
      reason: `${best} is ${((1 - medians[best] / base) * 100).toFixed(0)}% faster than the default`,
    };
  }
  return { choice: fallback, medians, reason: `${best} is within the ${margin * 100}% margin of the default` };
}

/** One thing to tune: a kernel's shape class, its candidates, and the work to time. */
export interface TuneCase {
  kernel: string;
  shapeClass: string;
  /** The family's default for the case's shape (a variant name). */
  fallback: string;
  /** Records the case's work once, under whatever variant the kernel's choice is forced to. */
  record(): void;
  /** The result of the last `record()`, for the comparison with the default's. */
  result(): Promise<Float32Array>;
  /** Whether a candidate's result is close enough to the default's (same sums, perhaps split differently). */
  agrees(candidate: Float32Array, reference: Float32Array): boolean;
  dispose(): void;
}

/** What tuning one case found: the decision, and why each other candidate was not timed. */
export interface CaseReport extends Decision {
  key: string;
  skipped: Record<string, string>;
}

/** Milliseconds of GPU work one `record()` takes: timestamp queries where offered, else wall clock around a sync. */
async function timeOnce(g: Gpu, record: () => void): Promise<number> {
  if (g.features.timestampQuery) {
    const kernels = await g.profile(record);
    return kernels.reduce((sum, k) => sum + k.ms, 0);
  }
  await g.sync();
  const t0 = performance.now();
  record();
  await g.sync();
  return performance.now() - t0;
}

/** Milliseconds one `record()` takes (tests pass forced timings). */
export type Timer = (record: () => void) => Promise<number>;

/**
 * Tunes one case: checks every candidate that runs here against the default's result, times the good ones
 * in `repeats` interleaved rounds (`time`: timestamp queries or wall clock), and decides.
 */
export async function tuneCase(
  g: Gpu,
  c: TuneCase,
  repeats: number,
  margin = TUNE_MARGIN,
  time: Timer = (record) => timeOnce(g, record),
): Promise<CaseReport> {
  const choice = variantFamilies().get(c.kernel);
  if (!choice) throw new Error(`tune: no variant family "${c.kernel}"`);
  const skipped: Record<string, string> = {};
  const good: string[] = [];
  try {
    choice.force(c.fallback);
    c.record();
    const reference = await c.result();
    for (const [name, v] of choice.family.variants) {
      const reason = choice.family.unsupported(v, g);
      if (reason !== null) {
        skipped[name] = reason;
        continue;
      }
      choice.force(name);
      c.record();
      if (!c.agrees(await c.result(), reference))
        skipped[name] = 'its result differs from the default variant on this adapter';
      else good.push(name);
    }
    const samples: Record<string, number[]> = Object.fromEntries(good.map((n) => [n, []]));
    for (let r = 0; r < repeats; r++) {
      for (const name of good) {
        choice.force(name);
        samples[name].push(await time(() => c.record()));
      }
    }
    return { key: tableKey(c.kernel, c.shapeClass), skipped, ...decideVariant(c.fallback, samples, margin) };
  } finally {
    choice.force(null);
  }
}

/** The cache directory: $ODC_CACHE_DIR, else the platform's user cache folder + odc-webgpu. */
export function cacheDir(): string {
  if (process.env.ODC_CACHE_DIR) return process.env.ODC_CACHE_DIR;
  if (process.platform === 'win32')
    return join(process.env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'odc-webgpu');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'odc-webgpu');
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'odc-webgpu');
}

/** The adapter and driver a table belongs to (the adapter's name carries the driver's version where the implementation reports it). */
export function adapterKey(g: Pick<Gpu, 'adapterName' | 'implementation'>): string {
  return `${g.adapterName} (${g.implementation})`;
}

/** The cache file of this adapter and driver: one per key, named by a readable slug and a hash. */
export function cacheFile(g: Pick<Gpu, 'adapterName' | 'implementation'>): string {
  const key = adapterKey(g);
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  const slug = key
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 48);
  return join(cacheDir(), `tune-${slug}-${h.toString(16).padStart(8, '0')}.json`);
}

export interface CachedTable {
  version: number;
  adapter: string;
  date: string;
  table: VariantTable;
  reports?: CaseReport[];
}

/** The cached table of this adapter and driver, or null when there is none (or it is unreadable or of another version). */
export function loadCachedTable(g: Pick<Gpu, 'adapterName' | 'implementation'>): CachedTable | null {
  const file = cacheFile(g);
  if (!existsSync(file)) return null;
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as CachedTable;
    if (parsed.version !== CACHE_VERSION || parsed.adapter !== adapterKey(g) || typeof parsed.table !== 'object')
      return null;
    return parsed;
  } catch {
    return null; // a damaged cache is only a lost measurement: the defaults run, the next tune rewrites it
  }
}

/** Writes the table to this adapter's cache file (temporary file + rename, so a reader never sees half of it). */
export function saveCachedTable(
  g: Pick<Gpu, 'adapterName' | 'implementation'>,
  table: VariantTable,
  reports: CaseReport[],
): string {
  const file = cacheFile(g);
  mkdirSync(cacheDir(), { recursive: true });
  const record: CachedTable = {
    version: CACHE_VERSION,
    adapter: adapterKey(g),
    date: new Date().toISOString(),
    table,
    reports,
  };
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
  return file;
}

/** Tunes every case, in order, and returns the table (only entries that leave the default) with the reports. */
export async function tuneAll(
  g: Gpu,
  cases: readonly TuneCase[],
  repeats: number,
  margin = TUNE_MARGIN,
): Promise<{ table: VariantTable; reports: CaseReport[] }> {
  const table: VariantTable = {};
  const reports: CaseReport[] = [];
  for (const c of cases) {
    const report = await tuneCase(g, c, repeats, margin);
    reports.push(report);
    if (report.choice !== c.fallback) table[report.key] = report.choice;
  }
  return { table, reports };
}

/**
 * Applies ODC_TUNE before a run: `off` clears the tuned table, `cached` loads this adapter's cache (if
 * any), `full` tunes with `cases()` and saves. Returns a line saying what was done.
 */
export async function applyTuneMode(g: Gpu, mode: TuneMode, cases: () => TuneCase[], repeats = 5): Promise<string> {
  if (mode === 'off') {
    setTunedTable({});
    return 'kernel variants: the fixed defaults (ODC_TUNE=off)';
  }
  if (mode === 'cached') {
    const cached = loadCachedTable(g);
    setTunedTable(cached?.table ?? {});
    return cached
      ? `kernel variants: tuned table of ${cached.date} (${cacheFile(g)})`
      : 'kernel variants: the fixed defaults (no tuned table cached for this adapter; `odc tune` makes one)';
  }
  const list = cases();
  try {
    const { table, reports } = await tuneAll(g, list, repeats);
    setTunedTable(table);
    return `kernel variants: tuned now (${reports.length} cases), saved to ${saveCachedTable(g, table, reports)}`;
  } finally {
    for (const c of list) c.dispose();
  }
}
