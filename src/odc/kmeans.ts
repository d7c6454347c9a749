/**
 * The k-means of ODC's initial clustering (spec 2.2) and of DeepCluster's per-epoch labelling: Lloyd
 * k-means over L2-normalised rows (distinct random points or greedy k-means++ as seeds, faiss-style
 * repair of empty clusters after every update, final nearest-centroid assignment). Seeded and
 * reproducible; nothing is read back to the host while it runs. It is built on the clustering primitives
 * of src/ops/clustering.ts; its own kernels (repair, k-means++ draws) are shaders/kmeans.wgsl.
 */
import { gpu } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { kmeans as kernels } from '../kernels/kmeans.ts';
import {
  centroidMeans,
  copyRows,
  forEachShard,
  gatherShardRows,
  l2Bias,
  nearest,
  perShardRows,
  rowSquaredNorms,
  sumInto,
  threads,
  type RowShards,
} from '../ops/clustering.ts';
import { normalizeRows } from '../ops/rows.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { Rng } from '../util/rng.ts';

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
 * Nothing is read back; results are reproducible for a given seed. A sharded x (RowShards) gives the same results
 * as one buffer, with either seeding: every row's assignment and distance is its own, the means are integer sums.
 */
export function kmeans(
  input: Tensor<'f32'> | RowShards,
  n: number,
  d: number,
  k: number,
  options: KMeansOptions = {},
): KMeansResult {
  const sharded = input instanceof Tensor || input.parts.length === 1 ? null : input;
  const x = input instanceof Tensor ? input : input.parts[0];
  expectDType(x, 'f32', 'kmeans');
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`kmeans: k must be a positive integer, got ${k}`);
  if (!sharded && x.size < n * d)
    throw new RangeError(`kmeans: features ${fmtShape(x.shape)} hold fewer than n*d = ${n}*${d} values`);
  if (k > n) throw new RangeError(`kmeans: k = ${k} clusters need at least k points, got n = ${n}`);
  const iterations = options.iterations ?? 20;
  const rng = new Rng(options.seed ?? 0);
  const centroids = Tensor.empty([k, d], 'f32');
  if ((options.init ?? 'random') === 'random') {
    const seeds = Tensor.from(distinctIndices(rng, n, k), [k], 'u32');
    if (sharded) gatherShardRows(sharded, seeds, centroids, k);
    else copyRows(x, seeds, centroids, k, d);
    seeds.dispose();
  } else {
    // a sharded x: the distances of each shard's rows land at their rows of the one d2 [n] (4 bytes a row fits one
    // binding far past what the features do), and each draw launches once per shard, the shard holding the drawn row
    // writing it: every d2 entry and every draw is that of one buffer, so the centers are too
    const shards: Array<[Tensor<'f32'>, number, number]> = [];
    if (sharded) forEachShard(sharded, (part, row0, rows) => shards.push([part, row0, rows]));
    else shards.push([x, 0, n]);
    const first = Tensor.from([rng.int(n)], [1], 'u32');
    if (sharded) gatherShardRows(sharded, first, centroids, 1);
    else copyRows(x, first, centroids, 1, d);
    // greedy k-means++ (as scikit-learn): 2 + floor(ln k) D^2-weighted candidates per center, keep the
    // one that lowers the potential sum_x min_c ||x - c||^2 most
    const trials = 2 + Math.floor(Math.log(k));
    const d2 = Tensor.empty([n], 'f32');
    const trial = Tensor.empty([n], 'f32');
    const cands = Tensor.empty([trials, d], 'f32');
    const pot = Tensor.empty([trials], 'f32');
    const none = Tensor.empty([1], 'u32'); // idx placeholder: the rows are x's own
    // d2[r] = min over the centers chosen so far of ||x[r] - center||^2 (running_min after the first)
    const distances = (center: number, centers: Tensor<'f32'>, out: Tensor<'f32'>, runningMin: boolean) => {
      for (const [part, row0, rows] of shards)
        dispatchKernel(kernels.tm_dist, {
          params: { n: rows, d, center, gather: false, running_min: runningMin, d2_row0: row0 },
          bindings: { x: part.buffer, idx: none.buffer, centers: centers.buffer, d2: out.buffer },
          workgroups: threads(rows),
        });
    };
    distances(0, centroids, d2, false);
    for (let j = 1; j < k; j++) {
      for (let l = 0; l < trials; l++) {
        const draw = rng.uniform();
        for (const [part, row0, rows] of shards)
          dispatchKernel(kernels.tm_pick, {
            params: { n, d, center: l, draw, gather: false, row0, row_count: rows },
            bindings: { x: part.buffer, idx: none.buffer, d2: d2.buffer, centers: cands.buffer },
            workgroups: [1],
          });
        gpu().copy(d2.buffer, 0, trial.buffer, 0, n * 4);
        distances(l, cands, trial, true);
        sumInto(trial, n, pot, l);
      }
      dispatchKernel(kernels.pp_choose, {
        params: { trials, d, center: j },
        bindings: { potential: pot.buffer, candidates: cands.buffer, centers: centroids.buffer },
        workgroups: [1],
      });
      distances(j, centroids, d2, true);
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
  if (sharded)
    perShardRows(sharded, [norms], (part, rows, [out]) => rowSquaredNorms(part, rows, d, out as Tensor<'f32'>));
  else rowSquaredNorms(x, n, d, norms);
  const assign = (slot: number) => {
    l2Bias(centroids, k, d, bias);
    if (sharded) {
      perShardRows(sharded, [labels, best], (part, rows, [l, sc]) =>
        nearest({ x: part, n: rows, d, centroids, k, bias, labels: l as Tensor<'u32'>, scores: sc as Tensor<'f32'> }),
      );
    } else nearest({ x, n, d, centroids, k, bias, labels, scores: best });
    sumInto(norms, n, inertia, slot, best);
  };
  for (let it = 0; it < iterations; it++) {
    assign(it);
    centroidMeans({ x: sharded ?? x, n, d, labels, k, out: centroids, counts });
    dispatchKernel(kernels.repair_empty, {
      params: { k, d, seed: rng.nextU32(), iteration: it },
      bindings: { counts: counts.buffer, centroids: centroids.buffer, stats: emptyStats.buffer },
      workgroups: [1],
    });
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
  // The memory's rule (ODC-SPEC: ||x|| + 1e-10, summed in order over each row), so DeepCluster and the
  // evaluation's k-means cluster exactly the rows an ODC memory would hold.
  const normalized = normalizeRows(raw, { epsilon: 'add', summation: 'serial' });
  const km = kmeans(normalized, n, d, k, options);
  try {
    return await km.labels.data();
  } finally {
    for (const t of [normalized, km.labels, km.centroids, km.inertia, km.emptyStats]) t.dispose();
  }
}
