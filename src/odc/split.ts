/**
 * The 2-means splitter of ODC's small-cluster handling (spec 2.5), entirely on the GPU: the members of
 * the cluster being split are addressed through an index list into the memory bank (nothing is read
 * back). Per restart: k-means++ seeding (first seed a uniformly random member, second drawn with
 * probability proportional to the squared distance to the first), then `maxIter` Lloyd steps (fixed
 * count, no early stop: a converged Lloyd step is a no-op, so this matches sklearn's result up to its
 * tolerance), then a final assignment and its inertia. The restart with the lowest inertia is kept
 * (earlier restarts win ties). If a side comes out empty, a random half is used instead: floor(n/2)
 * random members stay (side 0), the rest move (side 1). Seeded through the caller's Rng: reproducible.
 */
import { Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { kmeans as kernels } from '../kernels/kmeans.ts';
import { centroidMeans, fillU32, sumInto, threads } from '../ops/clustering.ts';

export interface SplitOptions {
  /** Seeded restarts, the lowest inertia wins (sklearn's n_init; 2020-era sklearn used 10). */
  restarts?: number;
  /** Lloyd steps per restart (sklearn max_iter = 20 in ODC). */
  maxIter?: number;
}

export interface SplitResult {
  /** [n] u32: 0 = stays in the split cluster, 1 = moves to the recycled id. */
  side: Tensor<'u32'>;
  /** [1] u32: number of members with side 1 (always in [1, n - 1] for n >= 2). */
  count1: Tensor<'u32'>;
}

/**
 * Splits the n rows bank[idx[r]] (d wide) into two non-empty groups. Requires n >= 2.
 * Records GPU work only; the caller reads `count1` if it needs the size on the host.
 */
export function twoMeansSplit(
  bank: Tensor<'f32'>,
  d: number,
  idx: Tensor<'u32'>,
  n: number,
  rng: Rng,
  options: SplitOptions = {},
): SplitResult {
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`twoMeansSplit: need at least 2 members to split, got ${n}`);
  if (idx.size < n) throw new RangeError(`twoMeansSplit: index list holds ${idx.size} entries, fewer than n = ${n}`);
  const restarts = options.restarts ?? 3;
  const maxIter = options.maxIter ?? 20;
  if (!Number.isInteger(restarts) || restarts < 1)
    throw new RangeError(`twoMeansSplit: restarts must be >= 1, got ${restarts}`);
  const centers = Tensor.empty([2, d], 'f32');
  const side = Tensor.empty([n], 'u32');
  const dmin = Tensor.empty([n], 'f32');
  const bestSide = Tensor.empty([n], 'u32');
  const inertia = Tensor.empty([1], 'f32');
  const best = Tensor.from([3.4e38], [1], 'f32');
  const flag = Tensor.empty([1], 'u32');
  const count1 = Tensor.empty([1], 'u32');
  for (let r = 0; r < restarts; r++) {
    const first = rng.int(n);
    // k-means++ seeding of the two centers: a random member, then a D^2-weighted draw
    dispatchKernel(kernels.tm_center_from_row, {
      params: { d, member: first, center: 0 },
      bindings: { x: bank.buffer, idx: idx.buffer, centers: centers.buffer },
      workgroups: [1],
    });
    dispatchKernel(kernels.tm_dist, {
      params: { n, d, center: 0, gather: true, running_min: false, d2_row0: 0 },
      bindings: { x: bank.buffer, idx: idx.buffer, centers: centers.buffer, d2: dmin.buffer },
      workgroups: threads(n),
    });
    dispatchKernel(kernels.tm_pick, {
      params: { n, d, center: 1, draw: rng.uniform(), gather: true, row0: 0, row_count: bank.shape[0] },
      bindings: { x: bank.buffer, idx: idx.buffer, d2: dmin.buffer, centers: centers.buffer },
      workgroups: [1],
    });
    for (let it = 0; it <= maxIter; it++) {
      dispatchKernel(kernels.tm_assign, {
        params: { n, d },
        bindings: { x: bank.buffer, idx: idx.buffer, centers: centers.buffer, side: side.buffer, dmin: dmin.buffer },
        workgroups: threads(n),
      });
      if (it < maxIter) centroidMeans({ x: bank, n, d, idx, labels: side, k: 2, out: centers });
    }
    sumInto(dmin, n, inertia, 0);
    dispatchKernel(kernels.tm_keep_best, {
      bindings: { inertia: inertia.buffer, best: best.buffer, flag: flag.buffer },
      workgroups: [1],
    });
    dispatchKernel(kernels.tm_copy_if, {
      params: { n },
      bindings: { flag: flag.buffer, src: side.buffer, dst: bestSide.buffer },
      workgroups: threads(n),
    });
  }
  // Random-half fallback, used by the kernel only when one side is empty.
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const halves = new Uint32Array(n);
  for (let j = Math.floor(n / 2); j < n; j++) halves[order[j]] = 1;
  const halvesT = Tensor.from(halves, [n], 'u32');
  const countSideOne = () => {
    fillU32(count1, 0, 1);
    dispatchKernel(kernels.tm_count, {
      params: { n, slot: 0 },
      bindings: { side: bestSide.buffer, counts: count1.buffer },
      workgroups: threads(n),
    });
  };
  countSideOne();
  dispatchKernel(kernels.tm_fallback, {
    params: { n },
    bindings: { counts: count1.buffer, halves: halvesT.buffer, side: bestSide.buffer },
    workgroups: threads(n),
  });
  countSideOne();
  for (const t of [centers, side, dmin, inertia, best, flag, halvesT]) t.dispose();
  return { side: bestSide, count1 };
}
