/**
 * Index samplers (spec 3.3 and 7).
 *
 * UniformSampler: ODC's `sampling_replace=True`: each epoch draws n indices uniformly with replacement
 * from [0, n). The generator is seeded by (seed, epoch) alone, so any epoch can be regenerated after a
 * resume without replaying earlier ones. `batches` splits an epoch into consecutive batches (the last one
 * may be short: drop_last False).
 *
 * balancedEpoch: DeepCluster's sampler, uniform over the non-empty clusters.
 */
import { Rng } from '../util/rng.ts';

/** A 32-bit integer hash (splitmix32 finaliser). */
function mix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** A generator for stream `stream` of `seed`: distinct (seed, stream) pairs give unrelated streams. */
export function streamRng(seed: number, stream: number): Rng {
  const a = mix32(seed >>> 0);
  const b = mix32((a ^ mix32((stream >>> 0) ^ 0x5bd1e995)) >>> 0);
  return new Rng([a, b, mix32(b ^ 0x27d4eb2f), mix32(a + 0x165667b1) | 1]);
}

export class UniformSampler {
  constructor(
    readonly n: number,
    readonly seed: number,
  ) {
    if (!Number.isInteger(n) || n <= 0 || n > 0xffffffff)
      throw new RangeError(`UniformSampler: n must be a positive integer below 2^32, got ${n}`);
  }

  /** The n indices of epoch e, drawn uniformly with replacement (same (seed, e), same indices). */
  epoch(e: number): Uint32Array {
    if (!Number.isInteger(e) || e < 0)
      throw new RangeError(`UniformSampler.epoch: epoch must be a non-negative integer, got ${e}`);
    const rng = streamRng(this.seed, e);
    const out = new Uint32Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = rng.int(this.n);
    return out;
  }
}

/** Consecutive batches of batchSize (views into indices; the last one may be shorter). */
export function batches(indices: Uint32Array, batchSize: number): Uint32Array[] {
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  const out: Uint32Array[] = [];
  for (let i = 0; i < indices.length; i += batchSize)
    out.push(indices.subarray(i, Math.min(i + batchSize, indices.length)));
  return out;
}

/** Number of batches of an epoch of n with drop_last False. */
export function batchCount(n: number, batchSize: number): number {
  return Math.ceil(n / batchSize);
}

/**
 * The training batches of an epoch: `batches`, except that a last batch of a single image is dropped
 * (batch norm in training mode cannot normalise one image: PyTorch raises on it). Every other epoch
 * is split exactly as with drop_last False.
 */
export function trainingBatches(indices: Uint32Array, batchSize: number): Uint32Array[] {
  const all = batches(indices, batchSize);
  return all.length > 1 && all[all.length - 1].length === 1 ? all.slice(0, -1) : all;
}

/** Number of training batches of an epoch of n (trainingBatches: a last batch of one image is dropped). */
export function trainingBatchCount(n: number, batchSize: number): number {
  const count = batchCount(n, batchSize);
  return count > 1 && n % batchSize === 1 ? count - 1 : count;
}

/**
 * DeepCluster's class-balanced epoch: from every non-empty cluster of `labels` (values in [0, k)) take
 * floor(n / nonEmpty) + 1 member indices, without replacement when the cluster has more members than
 * that and with replacement otherwise (the original code's `replace=len(cluster) <= size`), then shuffle
 * all of them and keep the first n.
 */
export function balancedEpoch(labels: Uint32Array, k: number, n: number, rng: Rng): Uint32Array {
  if (!Number.isInteger(k) || k <= 0) throw new RangeError(`balancedEpoch: k must be a positive integer, got ${k}`);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`balancedEpoch: n must be a non-negative integer, got ${n}`);
  const counts = new Uint32Array(k + 1);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (l >= k) throw new RangeError(`balancedEpoch: label ${l} of sample ${i} is outside 0..${k - 1}`);
    counts[l + 1]++;
  }
  // counting sort: members of cluster c are order[start[c] .. start[c+1])
  const start = new Uint32Array(k + 1);
  for (let c = 0; c < k; c++) start[c + 1] = start[c] + counts[c + 1];
  const fillPos = start.slice(0, k);
  const order = new Uint32Array(labels.length);
  for (let i = 0; i < labels.length; i++) order[fillPos[labels[i]]++] = i;
  let nonEmpty = 0;
  for (let c = 0; c < k; c++) if (counts[c + 1] > 0) nonEmpty++;
  if (n === 0) return new Uint32Array(0);
  if (nonEmpty === 0) throw new RangeError('balancedEpoch: every cluster is empty');
  const per = Math.floor(n / nonEmpty) + 1;
  const all = new Uint32Array(per * nonEmpty);
  let o = 0;
  for (let c = 0; c < k; c++) {
    const size = counts[c + 1];
    if (size === 0) continue;
    const members = order.subarray(start[c], start[c + 1]);
    if (size <= per) {
      for (let j = 0; j < per; j++) all[o++] = members[rng.int(size)];
    } else {
      // partial Fisher-Yates on a copy: the first `per` of a random permutation
      const pool = members.slice();
      for (let j = 0; j < per; j++) {
        const r = j + rng.int(size - j);
        const t = pool[j];
        pool[j] = pool[r];
        pool[r] = t;
        all[o++] = pool[j];
      }
    }
  }
  for (let i = all.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.slice(0, n);
}
