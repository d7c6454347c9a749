/**
 * GPU clustering primitives (shaders/clustering.wgsl), the building blocks of k-means and the ODC memory:
 *
 * - `nearest`: fused tiled GEMM + row argmax (score = x . c + bias[c], ties to the lowest c). With
 *   bias = -||c||^2 / 2 it is the L2 nearest centroid, with no bias the ODC dot-product relabel, with a
 *   -3e38 bias a masked argmax. Never materialises the M x K score matrix, so it scales to K = 10,000.
 * - `centroidMeans`: deterministic segmented means by label (64-bit fixed-point integer atomics,
 *   scale 2^24, then one division per element): plain means, empty clusters keep their old row.
 * - `histogram`, `compactIndices` (ordered stream compaction), `sumInto` (fixed-order two-stage sum),
 *   `rowSquaredNorms`, `copyRows`, `fillU32`, and the centroid biases `l2Bias` / `maskBias`.
 *
 * Every result is independent of GPU scheduling: float sums run in a fixed order, atomics are integer.
 * None of these is recorded for autograd.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { VariantChoice } from '../gpu/variants.ts';
import { clustering } from '../kernels/clustering.ts';
import { Tensor } from '../tensor/tensor.ts';

/** Workgroups of a 1-D launch of `count` threads, 256 per workgroup, on grid(). */
export function threads(count: number): [number, number] {
  return grid(Math.ceil(count / 256));
}

/** A 1-element placeholder for a binding an entry point does not read in this launch. */
function placeholder(): Tensor<'u32'> {
  return Tensor.empty([1], 'u32');
}

/** Elements per workgroup of the compaction and sum kernels (256 threads x 16). */
export const CHUNK = 4096;

/** buf[0..n) = value. */
export function fillU32(buf: Tensor, value: number, n = buf.size): void {
  dispatchKernel(clustering.fill_u32, {
    params: { n, value: value >>> 0 },
    bindings: { out: buf.buffer },
    workgroups: threads(n),
  });
}

/** out[r, :] = src[idx[r], :] for r < n rows of d. */
export function copyRows(src: Tensor<'f32'>, idx: Tensor<'u32'>, out: Tensor<'f32'>, n: number, d: number): void {
  dispatchKernel(clustering.gather_rows, {
    params: { n, d },
    bindings: { idx: idx.buffer, src: src.buffer, out: out.buffer },
    workgroups: threads(n * d),
  });
}

/**
 * An [n, d] f32 matrix kept as row shards, each within one storage binding (the ODC memory past
 * maxStorageBufferBindingSize): parts[s] holds rows [s * rowsPerShard, min(n, (s + 1) * rowsPerShard)).
 */
export interface RowShards {
  parts: Tensor<'f32'>[];
  rowsPerShard: number;
  n: number;
  d: number;
}

/** Rows per shard of an [n, d] f32 matrix whose shards hold at most maxBytes each (a multiple of 64 rows when over 64). */
export function rowsPerShard(n: number, d: number, maxBytes: number): number {
  const fit = Math.floor(maxBytes / (4 * d));
  if (fit < 1)
    throw new RangeError(
      `A row of ${d} f32 values (${4 * d} bytes) is larger than one buffer binding (${maxBytes} bytes)`,
    );
  if (fit >= n) return n;
  return fit >= 64 ? fit - (fit % 64) : fit;
}

/** Calls fn for each shard, in shard order, with the shard, its first row and its row count. */
export function forEachShard(x: RowShards, fn: (part: Tensor<'f32'>, row0: number, rows: number) => void): void {
  x.parts.forEach((part, s) => fn(part, s * x.rowsPerShard, Math.min(x.rowsPerShard, x.n - s * x.rowsPerShard)));
}

/** out[r, :] = x[idx[r], :] for r < count rows gathered from a sharded matrix (one launch per shard; one plain gather for one shard). */
export function gatherShardRows(x: RowShards, idx: Tensor<'u32'>, out: Tensor<'f32'>, count: number): void {
  if (count === 0) return;
  if (x.parts.length === 1) return copyRows(x.parts[0], idx, out, count, x.d);
  forEachShard(x, (part, row0, rows) =>
    dispatchKernel(clustering.gather_rows_range, {
      params: { n: count, d: x.d, row0, row_count: rows },
      bindings: { idx: idx.buffer, src: part.buffer, out: out.buffer },
      workgroups: threads(count * x.d),
    }),
  );
}

/**
 * Per-row results of a sharded matrix: fn computes shard rows [0, rows) into fresh outputs, which are copied
 * to rows [row0, row0 + rows) of `outs` (u32 or f32 per row; row results do not depend on the other rows).
 */
export function perShardRows(
  x: RowShards,
  outs: Tensor[],
  fn: (part: Tensor<'f32'>, rows: number, partOuts: Tensor[]) => void,
): void {
  forEachShard(x, (part, row0, rows) => {
    const partOuts = outs.map((o) => Tensor.empty([rows], o.dtype));
    fn(part, rows, partOuts);
    partOuts.forEach((po, i) => {
      gpu().copy(po.buffer, 0, outs[i].buffer, row0 * 4, rows * 4);
      po.dispose();
    });
  });
}

/** out[r] = ||x[r]||^2 for n rows of d (summed in order over the row). */
export function rowSquaredNorms(x: Tensor<'f32'>, n: number, d: number, out: Tensor<'f32'>): void {
  dispatchKernel(clustering.row_norm2, {
    params: { n, d },
    bindings: { x: x.buffer, out: out.buffer },
    workgroups: threads(n),
  });
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
  if (groups > maxDim)
    throw new RangeError(
      `nearest: ${a.n} rows need ${groups} workgroups, over this device's ${maxDim}; assign in chunks`,
    );
  const target = variant === 'tiled' ? 264 : 8;
  const maxSplits = Math.ceil(a.k / colStep);
  let splits = Math.max(1, Math.min(chosen.splits ?? Math.ceil(target / groups), maxSplits));
  const perSplit = Math.ceil(Math.ceil(a.k / splits) / colStep) * colStep;
  splits = Math.ceil(a.k / perSplit);
  const tmp = placeholder();
  const partLabels = splits > 1 ? Tensor.empty([splits * a.n], 'u32') : a.labels;
  const sink = splits > 1 ? Tensor.empty([splits * a.n], 'f32') : (a.scores ?? Tensor.empty([1], 'f32'));
  dispatchKernel(variant === 'tiled' ? clustering.nearest : clustering.nearest_regs, {
    params: {
      n: a.n,
      d: a.d,
      k: a.k,
      split_size: perSplit,
      gather: a.idx !== undefined,
      has_bias: a.bias !== undefined,
      write_scores: a.scores !== undefined,
      partials: splits > 1,
    },
    bindings: {
      x: a.x.buffer,
      idx: (a.idx ?? tmp).buffer,
      centroids: a.centroids.buffer,
      bias: (a.bias ?? tmp).buffer,
      labels: partLabels.buffer,
      scores: sink.buffer,
    },
    workgroups: [groups, splits],
  });
  if (splits > 1) {
    const scoreOut = a.scores ?? Tensor.empty([1], 'f32');
    dispatchKernel(clustering.nearest_merge, {
      params: { n: a.n, splits, write_scores: a.scores !== undefined },
      bindings: {
        part_labels: partLabels.buffer,
        part_scores: sink.buffer,
        labels: a.labels.buffer,
        scores: scoreOut.buffer,
      },
      workgroups: threads(a.n),
    });
    partLabels.dispose();
    if (!a.scores) scoreOut.dispose();
    sink.dispose();
  } else if (!a.scores) sink.dispose();
  tmp.dispose();
}

/** bias[c] = -||c||^2 / 2. */
export function l2Bias(centroids: Tensor<'f32'>, k: number, d: number, bias: Tensor<'f32'>): void {
  dispatchKernel(clustering.l2_bias, {
    params: { k, d },
    bindings: { centroids: centroids.buffer, bias: bias.buffer },
    workgroups: threads(k),
  });
}

/** bias[c] = mask[c] ? -3e38 : 0. */
export function maskBias(mask: Tensor<'u32'>, k: number, bias: Tensor<'f32'>): void {
  dispatchKernel(clustering.mask_bias, {
    params: { k },
    bindings: { mask: mask.buffer, bias: bias.buffer },
    workgroups: threads(k),
  });
}

/** hist[c] = #{i < n : labels[i] == c} (u32 atomics; labels >= k are ignored). */
export function histogram(labels: Tensor<'u32'>, n: number, k: number, hist: Tensor<'u32'>): void {
  fillU32(hist, 0, k);
  dispatchKernel(clustering.histogram, {
    params: { n, k },
    bindings: { labels: labels.buffer, hist: hist.buffer },
    workgroups: threads(n),
  });
}

export interface MeansArgs {
  /** Rows [*, d]; row r is x[idx[r]] when idx is given. A sharded x (no idx) is summed shard by shard. */
  x: Tensor<'f32'> | RowShards;
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
  const tmp = placeholder();
  const listed = a.list !== undefined;
  const list = (a.list ?? tmp).buffer;
  const m = listed ? (a.listLength ?? a.list!.size) : a.k;
  dispatchKernel(clustering.acc_zero, {
    params: { n: m, d: a.d, listed },
    bindings: { list, acc: acc.buffer, counts: cnt.buffer },
    workgroups: threads(m * a.d),
  });
  // The sums are integers, so adding the shards one after another (in shard order) gives the one-pass result exactly.
  const parts: Array<[Tensor<'f32'>, number, number]> = [];
  if (a.x instanceof Tensor) parts.push([a.x, 0, a.n]);
  else if (a.idx)
    throw new RangeError('centroidMeans: gathered rows (idx) of a sharded matrix: gather them first (gatherShardRows)');
  else forEachShard(a.x, (part, row0, rows) => parts.push([part, row0, rows]));
  for (const [x, row0, rows] of parts) {
    dispatchKernel(clustering.acc_rows, {
      params: { n: rows, d: a.d, k: a.k, gather: a.idx !== undefined, label_offset: row0 },
      bindings: {
        x: x.buffer,
        idx: (a.idx ?? tmp).buffer,
        labels: a.labels.buffer,
        acc: acc.buffer,
        counts: cnt.buffer,
      },
      workgroups: threads(rows * a.d),
    });
  }
  dispatchKernel(clustering.acc_finalize, {
    params: { n: m, d: a.d, listed },
    bindings: { list, acc: acc.buffer, counts: cnt.buffer, out: a.out.buffer },
    workgroups: threads(m * a.d),
  });
  acc.dispose();
  if (!a.counts) cnt.dispose();
  tmp.dispose();
}

/**
 * Ordered stream compaction: out[0..count) = the indices i < n, ascending, with labels[i] == value
 * (when `mask` is absent) or mask[labels[i]] != 0. `count` must be the exact number of matches (the
 * caller knows it from the histogram); returns a new u32 tensor of max(count, 1) entries.
 */
export function compactIndices(
  labels: Tensor<'u32'>,
  n: number,
  k: number,
  count: number,
  sel: { value: number } | { mask: Tensor<'u32'> },
): Tensor<'u32'> {
  const chunks = Math.max(1, Math.ceil(n / CHUNK));
  const offs = Tensor.empty([chunks + 1], 'u32');
  const out = Tensor.empty([Math.max(count, 1)], 'u32');
  const tmp = placeholder();
  const mask = ('mask' in sel ? sel.mask : tmp).buffer;
  const params = { n, k, value: 'value' in sel ? sel.value : 0, by_mask: 'mask' in sel };
  dispatchKernel(clustering.compact_count, {
    params,
    bindings: { labels: labels.buffer, mask, counts: offs.buffer },
    workgroups: grid(chunks),
  });
  dispatchKernel(clustering.compact_scan, {
    params: { n: chunks },
    bindings: { counts: offs.buffer },
    workgroups: [1],
  });
  dispatchKernel(clustering.compact_write, {
    params,
    bindings: { labels: labels.buffer, mask, offsets: offs.buffer, out: out.buffer },
    workgroups: grid(chunks),
  });
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
  dispatchKernel(clustering.sum_partial, {
    params: { n, squared_distance: y !== undefined },
    bindings: { x: x.buffer, y: (y ?? x).buffer, partial: part.buffer },
    workgroups: grid(chunks),
  });
  dispatchKernel(clustering.sum_final, {
    params: { n: chunks, slot },
    bindings: { partial: part.buffer, out: out.buffer },
    workgroups: [1],
  });
  part.dispose();
}
