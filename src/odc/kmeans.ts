/**
 * GPU clustering primitives and the initial k-means of ODC (spec 2.2), all WGSL
 * (shaders/kmeans.wgsl, shaders/odc_memory.wgsl):
 *
 * - `nearest`: fused tiled GEMM + row argmax (score = x . c + bias[c], ties to the lowest c). With
 *   bias = -||c||^2 / 2 it is the L2 nearest centroid, with no bias the ODC dot-product relabel, with a
 *   -3e38 bias a masked argmax. Never materialises the M x K score matrix, so it scales to K = 10,000.
 * - `centroidMeans`: deterministic segmented means by label (64-bit fixed-point integer atomics,
 *   scale 2^24, then one division per element): plain means, empty clusters keep their old row.
 * - `histogram`, `compactIndices` (ordered stream compaction), `sumInto` (fixed-order two-stage sum).
 * - `kmeans`: Lloyd k-means over L2-normalised rows (distinct random points as seeds, faiss-style
 *   repair of empty clusters after every update, final nearest-centroid assignment). Seeded and
 *   reproducible; nothing is read back to the host while it runs.
 *
 * Every result is independent of GPU scheduling: float sums run in a fixed order, atomics are integer.
 */
import { gpu, grid } from '../gpu/device.ts';
import { params, type Params } from '../gpu/params.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';
import { VariantChoice } from '../gpu/variants.ts';

/** Fields of the uniform block shared by the ODC kernel families (see `struct P` in the WGSL). */
export interface KernelParams {
  n?: number;
  d?: number;
  k?: number;
  flags?: number;
  a?: number;
  b?: number;
  c?: number;
  e?: number;
  f0?: number;
  f1?: number;
  f2?: number;
  f3?: number;
}

function pack(o: KernelParams): Params {
  return params()
    .u32(o.n ?? 0, o.d ?? 0, o.k ?? 0, o.flags ?? 0, o.a ?? 0, o.b ?? 0, o.c ?? 0, o.e ?? 0)
    .f32(o.f0 ?? 0, o.f1 ?? 0, o.f2 ?? 0, o.f3 ?? 0);
}

export type Bind = [Tensor, 'read' | 'rw'];

/** Launches one kernel of shaders/<family>.wgsl. `threads` = total 1-D invocations (256 per workgroup). */
export function launch(family: 'odc_memory' | 'kmeans', entry: string, p: KernelParams, bindings: Bind[], workgroups: number | 'one'): void {
  gpu().dispatch({
    kernel: { family, entry },
    params: pack(p),
    bindings: bindings.map(([t, access]) => ({ buffer: t.buffer, access })),
    workgroups: workgroups === 'one' ? [1] : grid(workgroups),
  });
}

/** Workgroups for `count` threads of 256. */
export function wg(count: number): number {
  return Math.ceil(count / 256);
}

/** A 1-element placeholder for a binding an entry point does not use in this launch. */
function dummy(): Tensor<'u32'> {
  return Tensor.empty([1], 'u32');
}

/** Elements per workgroup of the compaction and sum kernels (256 threads x 16). */
export const CHUNK = 4096;

/** dst[r] = src[r] / (||src[r]|| + 1e-10) for n rows of d (dst may be another tensor of the same size). */
export function normalizeRowsInto(src: Tensor<'f32'>, dst: Tensor<'f32'>, n: number, d: number): void {
  launch('odc_memory', 'normalize_rows', { n, d }, [[src, 'read'], [dst, 'rw']], wg(n));
}

/** buf[0..n) = value. */
export function fillU32(buf: Tensor, value: number, n = buf.size): void {
  launch('odc_memory', 'fill_u32', { n, a: value >>> 0 }, [[buf, 'rw']], wg(n));
}

export interface NearestArgs {
  /** Rows [*, d]; row r is x[idx[r]] when idx is given. */
  x: Tensor<'f32'>;
  /** Number of rows to assign. */
  n: number;
  d: number;
  idx?: Tensor<'u32'>;
  /** Centroids [k, d]. */
  centroids: Tensor<'f32'>;
  k: number;
  /** Added to every score of centroid c (L2: -||c||^2/2; masked: -3e38). */
  bias?: Tensor<'f32'>;
  /** Output argmax [n]. */
  labels: Tensor<'u32'>;
  /** Output max score [n]. */
  scores?: Tensor<'f32'>;
}

/** A nearest-centroid kernel variant: the body, and optionally a forced number of centroid splits (tests). */
export interface NearestVariant {
  body: 'tiled' | 'regs';
  splits?: number;
}

/**
 * The nearest-centroid variants, in the one per-adapter variant choice (src/gpu/variants.ts): 'regs' (no
 * workgroup memory; the default on CPU adapters) and 'tiled' (64x64 tiles in workgroup memory; GPUs').
 */
export const nearestChoice = new VariantChoice<NearestVariant>({
  kernel: 'nearest',
  variants: new Map<string, NearestVariant>([
    ['regs', { body: 'regs' }],
    ['tiled', { body: 'tiled' }],
  ]),
  unsupported: () => null,
});

/** The shape class a nearest-centroid assignment of n rows against k centroids of d is tuned for (by its work, as the GEMM's). */
export function nearestShapeClass(n: number, k: number, d: number): string {
  const work = Math.log2(Math.max(1, n) * Math.max(1, k) * Math.max(1, d));
  return work < 24 ? 'small' : work < 30 ? 'medium' : 'large';
}

/**
 * Fused GEMM + row argmax: labels[r] = argmax_c x_r . c + bias[c], ties to the lowest c.
 * When there are few rows (a 512-row batch against K = 10,000), the centroids are split into ranges
 * handled by separate workgroups, whose per-range winners a merge kernel combines (earlier range on
 * ties), so the GPU stays busy; results are identical for any split count.
 */
export function nearest(a: NearestArgs): void {
  if (a.n === 0) return;
  const chosen = nearestChoice.choose(gpu(), nearestShapeClass(a.n, a.k, a.d), gpu().isCpuAdapter ? 'regs' : 'tiled');
  const variant = chosen.body;
  const rowsPerGroup = variant === 'tiled' ? 64 : 256;
  const colStep = variant === 'tiled' ? 64 : 4;
  const groups = Math.ceil(a.n / rowsPerGroup);
  const maxDim = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (groups > maxDim) throw new RangeError(`nearest: ${a.n} rows need ${groups} workgroups, over this device's ${maxDim}; assign in chunks`);
  const target = variant === 'tiled' ? 264 : 8;
  const maxSplits = Math.ceil(a.k / colStep);
  let splits = Math.max(1, Math.min(chosen.splits ?? Math.ceil(target / groups), maxSplits));
  const perSplit = Math.ceil(Math.ceil(a.k / splits) / colStep) * colStep;
  splits = Math.ceil(a.k / perSplit);
  const tmp = dummy();
  const flags = (a.idx ? 1 : 0) | (a.bias ? 2 : 0) | (a.scores ? 4 : 0) | (splits > 1 ? 8 : 0);
  const partLabels = splits > 1 ? Tensor.empty([splits * a.n], 'u32') : a.labels;
  const sink = splits > 1 ? Tensor.empty([splits * a.n], 'f32') : (a.scores ?? Tensor.empty([1], 'f32'));
  gpu().dispatch({
    kernel: { family: 'kmeans', entry: variant === 'tiled' ? 'nearest' : 'nearest_regs' },
    params: pack({ n: a.n, d: a.d, k: a.k, flags, a: perSplit }),
    bindings: [a.x, a.idx ?? tmp, a.centroids, a.bias ?? tmp, partLabels, sink].map((t, i) => ({ buffer: t.buffer, access: i < 4 ? 'read' : 'rw' })),
    workgroups: [groups, splits],
  });
  if (splits > 1) {
    const scoreOut = a.scores ?? Tensor.empty([1], 'f32');
    launch('kmeans', 'nearest_merge', { n: a.n, k: splits, flags: a.scores ? 4 : 0 }, [[partLabels, 'read'], [sink, 'read'], [a.labels, 'rw'], [scoreOut, 'rw']], wg(a.n));
    partLabels.dispose();
    if (!a.scores) scoreOut.dispose();
    sink.dispose();
  } else if (!a.scores) sink.dispose();
  tmp.dispose();
}

/** bias[c] = -||c||^2 / 2. */
export function l2Bias(centroids: Tensor<'f32'>, k: number, d: number, bias: Tensor<'f32'>): void {
  launch('kmeans', 'l2_bias', { k, d }, [[centroids, 'read'], [bias, 'rw']], wg(k));
}

/** bias[c] = mask[c] ? -3e38 : 0. */
export function maskBias(mask: Tensor<'u32'>, k: number, bias: Tensor<'f32'>): void {
  launch('kmeans', 'mask_bias', { k }, [[mask, 'read'], [bias, 'rw']], wg(k));
}

/** hist[c] = #{i < n : labels[i] == c} (u32 atomics; labels >= k are ignored). */
export function histogram(labels: Tensor<'u32'>, n: number, k: number, hist: Tensor<'u32'>): void {
  fillU32(hist, 0, k);
  launch('odc_memory', 'histogram', { n, k }, [[labels, 'read'], [hist, 'rw']], wg(n));
}

export interface MeansArgs {
  /** Rows [*, d]; row r is x[idx[r]] when idx is given. */
  x: Tensor<'f32'>;
  n: number;
  d: number;
  idx?: Tensor<'u32'>;
  /** Label of row r (indexed by r, not by idx[r]). */
  labels: Tensor<'u32'>;
  k: number;
  /** [k, d]: rows of non-empty clusters (listed ones only, if `list`) are overwritten with the mean. */
  out: Tensor<'f32'>;
  /** Only these clusters are zeroed and written (the rows must still cover every label that occurs). */
  list?: Tensor<'u32'>;
  listLength?: number;
  /** Optional: receives the member counts [k] (only the listed ones are valid when `list` is used). */
  counts?: Tensor<'u32'>;
}

/**
 * Plain means of rows grouped by label, deterministic: every element is summed as a 64-bit fixed-point
 * integer (scale 2^24, two u32 words, integer atomics, order independent), then divided by the count.
 * Rows must have entries of magnitude <= ~1 (unit-norm rows and their means), which the ODC memory has.
 */
export function centroidMeans(a: MeansArgs): void {
  const acc = Tensor.empty([2 * a.k * a.d], 'u32');
  const cnt = a.counts ?? Tensor.empty([a.k], 'u32');
  const tmp = dummy();
  const listed = a.list !== undefined;
  const m = listed ? (a.listLength ?? a.list!.size) : a.k;
  launch('odc_memory', 'acc_zero', { n: m, d: a.d, flags: listed ? 1 : 0 }, [[a.list ?? tmp, 'read'], [acc, 'rw'], [cnt, 'rw']], wg(m * a.d));
  launch(
    'odc_memory',
    'acc_rows',
    { n: a.n, d: a.d, k: a.k, flags: a.idx ? 1 : 0 },
    [[a.x, 'read'], [a.idx ?? tmp, 'read'], [a.labels, 'read'], [acc, 'rw'], [cnt, 'rw']],
    wg(a.n * a.d),
  );
  launch('odc_memory', 'acc_finalize', { n: m, d: a.d, flags: listed ? 1 : 0 }, [[a.list ?? tmp, 'read'], [acc, 'read'], [cnt, 'read'], [a.out, 'rw']], wg(m * a.d));
  acc.dispose();
  if (!a.counts) cnt.dispose();
  tmp.dispose();
}

/**
 * Ordered stream compaction: out[0..count) = the indices i < n, ascending, with labels[i] == value
 * (when `mask` is absent) or mask[labels[i]] != 0. `count` must be the exact number of matches (the
 * caller knows it from the histogram); returns a new u32 tensor of max(count, 1) entries.
 */
export function compactIndices(labels: Tensor<'u32'>, n: number, k: number, count: number, sel: { value: number } | { mask: Tensor<'u32'> }): Tensor<'u32'> {
  const chunks = Math.max(1, Math.ceil(n / CHUNK));
  const offs = Tensor.empty([chunks + 1], 'u32');
  const out = Tensor.empty([Math.max(count, 1)], 'u32');
  const tmp = dummy();
  const mask = 'mask' in sel ? sel.mask : tmp;
  const p: KernelParams = { n, k, flags: 'mask' in sel ? 1 : 0, a: 'value' in sel ? sel.value : 0 };
  launch('odc_memory', 'compact_count', p, [[labels, 'read'], [mask, 'read'], [offs, 'rw']], chunks);
  launch('odc_memory', 'compact_scan', { n: chunks }, [[offs, 'rw']], 'one');
  launch('odc_memory', 'compact_write', p, [[labels, 'read'], [mask, 'read'], [offs, 'read'], [out, 'rw']], chunks);
  offs.dispose();
  tmp.dispose();
  return out;
}

/**
 * out[slot] = sum over i < n of x[i] (or of max(x[i] - 2 y[i], 0) when y is given: squared distances
 * from ||x||^2 and the L2 score). Fixed summation order (16 per thread, trees of 256): deterministic.
 */
export function sumInto(x: Tensor<'f32'>, n: number, out: Tensor<'f32'>, slot: number, y?: Tensor<'f32'>): void {
  const chunks = Math.max(1, Math.ceil(n / CHUNK));
  const part = Tensor.empty([chunks], 'f32');
  launch('odc_memory', 'sum_partial', { n, flags: y ? 1 : 0 }, [[x, 'read'], [y ?? x, 'read'], [part, 'rw']], chunks);
  launch('odc_memory', 'sum_final', { n: chunks, a: slot }, [[part, 'read'], [out, 'rw']], 'one');
  part.dispose();
}

/** k distinct integers in [0, n), in draw order (Floyd's algorithm), from a seeded generator. */
export function distinctIndices(rng: Rng, n: number, k: number): Uint32Array {
  if (k > n) throw new RangeError(`distinctIndices: cannot draw ${k} distinct values from ${n}`);
  const chosen = new Set<number>();
  const out = new Uint32Array(k);
  let w = 0;
  for (let j = n - k; j < n; j++) {
    const t = rng.int(j + 1);
    const v = chosen.has(t) ? j : t;
    chosen.add(v);
    out[w++] = v;
  }
  return out;
}

export interface KMeansOptions {
  /** Lloyd iterations (faiss niter; ODC uses 20). */
  iterations?: number;
  seed?: number;
  /**
   * Seeding: 'random' = k distinct random rows (faiss; what ODC's initial clustering uses, the
   * default), 'kmeans++' = greedy D^2-weighted seeding as scikit-learn (per center 2 + ln k candidate
   * draws, each a one-workgroup pass over n: meant for small k, e.g. when blob recovery must not hinge
   * on the local minima of random seeding).
   */
  init?: 'random' | 'kmeans++';
}

export interface KMeansResult {
  /** [k, d] final centroids (plain means, after the last repair). */
  centroids: Tensor<'f32'>;
  /** [n] nearest final centroid (L2), the clustering's labels. */
  labels: Tensor<'u32'>;
  /**
   * [iterations + 1]: inertia (sum of squared L2 distances to the assigned centroid) measured at each
   * assignment step; the last entry is the final assignment.
   */
  inertia: Tensor<'f32'>;
  /** [2 * iterations]: empty clusters before / after the repair of each iteration. */
  emptyStats: Tensor<'u32'>;
}

/**
 * Lloyd k-means on the GPU over n rows of d (expected L2-normalised, entries in [-1, 1]).
 * Init: k distinct random rows (or k-means++, see `init`). Each iteration: L2 assignment (fused GEMM + argmax), inertia, plain
 * means (empty clusters keep their centroid), then faiss-style repair of empty clusters (split a
 * cluster drawn with probability ~ size - 1, +-1/1024 perturbation). Finally one more assignment.
 * Nothing is read back; results are reproducible for a given seed.
 */
export function kmeans(x: Tensor<'f32'>, n: number, d: number, k: number, options: KMeansOptions = {}): KMeansResult {
  expectDType(x, 'f32', 'kmeans');
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`kmeans: k must be a positive integer, got ${k}`);
  if (x.size < n * d) throw new RangeError(`kmeans: features ${fmtShape(x.shape)} hold fewer than n*d = ${n}*${d} values`);
  if (k > n) throw new RangeError(`kmeans: k = ${k} clusters need at least k points, got n = ${n}`);
  const iterations = options.iterations ?? 20;
  const rng = new Rng(options.seed ?? 0);
  const centroids = Tensor.empty([k, d], 'f32');
  if ((options.init ?? 'random') === 'random') {
    const seeds = Tensor.from(distinctIndices(rng, n, k), [k], 'u32');
    launch('odc_memory', 'gather_rows', { n: k, d }, [[seeds, 'read'], [x, 'read'], [centroids, 'rw']], wg(k * d));
    seeds.dispose();
  } else {
    const first = Tensor.from([rng.int(n)], [1], 'u32');
    launch('odc_memory', 'gather_rows', { n: 1, d }, [[first, 'read'], [x, 'read'], [centroids, 'rw']], wg(d));
    // greedy k-means++ (as scikit-learn): 2 + floor(ln k) D^2-weighted candidates per center, keep the
    // one that lowers the potential sum_x min_c ||x - c||^2 most
    const trials = 2 + Math.floor(Math.log(k));
    const d2 = Tensor.empty([n], 'f32');
    const trial = Tensor.empty([n], 'f32');
    const cands = Tensor.empty([trials, d], 'f32');
    const pot = Tensor.empty([trials], 'f32');
    const none = Tensor.empty([1], 'u32');
    launch('kmeans', 'tm_dist', { n, d, flags: 0, b: 0 }, [[x, 'read'], [none, 'read'], [centroids, 'read'], [d2, 'rw']], wg(n));
    for (let j = 1; j < k; j++) {
      for (let l = 0; l < trials; l++) {
        launch('kmeans', 'tm_pick', { n, d, b: l, f0: rng.uniform() }, [[x, 'read'], [none, 'read'], [d2, 'read'], [cands, 'rw']], 'one');
        gpu().copy(d2.buffer, 0, trial.buffer, 0, n * 4);
        launch('kmeans', 'tm_dist', { n, d, flags: 2, b: l }, [[x, 'read'], [none, 'read'], [cands, 'read'], [trial, 'rw']], wg(n));
        sumInto(trial, n, pot, l);
      }
      launch('kmeans', 'pp_choose', { k: trials, d, b: j }, [[pot, 'read'], [cands, 'read'], [centroids, 'rw']], 'one');
      launch('kmeans', 'tm_dist', { n, d, flags: 2, b: j }, [[x, 'read'], [none, 'read'], [centroids, 'read'], [d2, 'rw']], wg(n));
    }
    for (const t of [first, d2, trial, cands, pot, none]) t.dispose();
  }
  const labels = Tensor.empty([n], 'u32');
  const best = Tensor.empty([n], 'f32');
  const norms = Tensor.empty([n], 'f32');
  const bias = Tensor.empty([k], 'f32');
  const counts = Tensor.empty([k], 'u32');
  const inertia = Tensor.empty([iterations + 1], 'f32');
  const emptyStats = Tensor.empty([Math.max(2 * iterations, 1)], 'u32');
  launch('odc_memory', 'row_norm2', { n, d }, [[x, 'read'], [norms, 'rw']], wg(n));
  const assign = (slot: number) => {
    l2Bias(centroids, k, d, bias);
    nearest({ x, n, d, centroids, k, bias, labels, scores: best });
    sumInto(norms, n, inertia, slot, best);
  };
  for (let it = 0; it < iterations; it++) {
    assign(it);
    centroidMeans({ x, n, d, labels, k, out: centroids, counts });
    launch('kmeans', 'repair_empty', { k, d, a: rng.nextU32(), b: it }, [[counts, 'rw'], [centroids, 'rw'], [emptyStats, 'rw']], 'one');
  }
  assign(iterations);
  for (const t of [best, norms, bias, counts]) t.dispose();
  return { centroids, labels, inertia, emptyStats };
}

/**
 * Labels of a k-means over the L2-normalised rows of raw features [N, D] (DeepCluster's clustering step
 * and the evaluation's k-means): everything but the labels is released.
 */
export async function kmeansLabels(raw: Tensor<'f32'>, k: number, options: KMeansOptions = {}): Promise<Uint32Array> {
  const [n, d] = raw.shape;
  const normalized = Tensor.empty([n, d], 'f32');
  normalizeRowsInto(raw, normalized, n, d);
  const km = kmeans(normalized, n, d, k, options);
  try {
    return await km.labels.data();
  } finally {
    for (const t of [normalized, km.labels, km.centroids, km.inertia, km.emptyStats]) t.dispose();
  }
}
