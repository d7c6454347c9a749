/**
 * The invariants of ODC-SPEC section 5 as reusable predicates over plain arrays (read a GPU tensor with
 * `await t.data()` first). Each returns null when the invariant holds, else one message naming the
 * invariant (its ODC-SPEC number), the row or cluster, and what was expected and found. `expectHolds`
 * turns messages into a thrown Error, for node:test, fast-check properties or any test runner.
 * Comparisons are against float64 recomputations (src/odc/reference.ts), with stated tolerances.
 */
import {
  refArgmax,
  refDistances,
  refHistogram,
  refMeans,
  refNormalize,
  refScores,
  refWeights,
} from '../odc/reference.ts';

/** null when the invariant holds, else a message saying which one failed and how. */
export type Violation = string | null;

export interface Tolerance {
  rtol: number;
  atol: number;
}

const MEANS_TOLERANCE: Tolerance = { rtol: 1e-5, atol: 1e-6 };

/** Throws an Error whose message lists every violation given (nulls are ignored). */
export function expectHolds(...verdicts: Violation[]): void {
  const failed = verdicts.filter((v): v is string => v !== null);
  if (failed.length > 0) throw new Error(failed.join('\n'));
}

function rowNorm(a: ArrayLike<number>, i: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[i * d + j] * a[i * d + j];
  return Math.sqrt(s);
}

function bitsOf(a: ArrayLike<number>, i: number): number {
  return new Uint32Array(Float32Array.of(a[i]).buffer)[0];
}

function fmt(values: ArrayLike<number>, at: number, count: number): string {
  return `[${Array.from({ length: count }, (_, j) => Number(values[at + j]).toPrecision(6)).join(', ')}]`;
}

/** 5.1: `labels` has n entries, each an integer in [0, k). */
export function labelsInRange(labels: ArrayLike<number>, k: number, n = labels.length): Violation {
  if (labels.length !== n) return `5.1 labels in range: ${labels.length} labels for ${n} rows`;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (!Number.isInteger(l) || l < 0 || l >= k)
      return `5.1 labels in range: label of row ${i} is ${l}, not an integer in [0, ${k})`;
  }
  return null;
}

/** 5.6, 5.11: the label histogram sums to n (every row has exactly one cluster). */
export function histogramSumsTo(labels: ArrayLike<number>, k: number, n: number): Violation {
  const inRange = labelsInRange(labels, k);
  if (inRange) return inRange;
  const total = refHistogram(labels, k).reduce((a, b) => a + b, 0);
  return total === n ? null : `5.6 histogram: cluster sizes sum to ${total}, expected N = ${n}`;
}

/**
 * 5.8, 5.11: no cluster is empty. Not ">= minCluster": an unbalanced 2-means split may leave a cluster
 * under minCluster (ODC-SPEC 5.8), so no predicate asserts that.
 */
export function noEmptyCluster(labels: ArrayLike<number>, k: number): Violation {
  const hist = refHistogram(labels, k);
  const empty = hist.flatMap((h, c) => (h === 0 ? [c] : []));
  return empty.length === 0
    ? null
    : `5.8 no empty cluster: cluster${empty.length > 1 ? 's' : ''} ${empty.slice(0, 8).join(', ')} ha${empty.length > 1 ? 've' : 's'} no member (histogram [${hist.join(', ')}])`;
}

/**
 * 5.2 (and the rows 5.4 writes): every row has L2 norm 1 within `tolerance`, except all-zero rows, which
 * must stay exactly zero. With `raw`, a row must be zero exactly when its raw feature was.
 */
export function unitNormRows(
  features: ArrayLike<number>,
  d: number,
  options: { tolerance?: number; raw?: ArrayLike<number> } = {},
): Violation {
  const tolerance = options.tolerance ?? 2e-6;
  const n = Math.floor(features.length / d);
  for (let i = 0; i < n; i++) {
    const norm = rowNorm(features, i, d);
    const rawZero = options.raw ? rowNorm(options.raw, i, d) === 0 : norm === 0;
    if (rawZero) {
      if (norm !== 0)
        return `5.2 unit rows: row ${i} comes from an all-zero feature but has norm ${norm}, expected the zero vector`;
      continue;
    }
    // the spec's x / (||x|| + 1e-10) shows on rows of tiny raw norm
    const rawNorm = options.raw ? rowNorm(options.raw, i, d) : 1;
    const expected = options.raw ? rawNorm / (rawNorm + 1e-10) : 1;
    if (!(Math.abs(norm - expected) <= tolerance))
      return `5.2 unit rows: row ${i} has norm ${norm}, expected ${expected} (tolerance ${tolerance})`;
  }
  return null;
}

/**
 * 5.3, 5.7, 5.9: the centroid of every non-empty cluster is the plain (unnormalised) mean of its members'
 * features. With `previous`, an empty cluster must keep its previous centroid bit for bit (5.7); `clusters`
 * restricts the check to some clusters (5.9: the split and recycled ones).
 */
export function centroidsAreMeans(
  features: ArrayLike<number>,
  labels: ArrayLike<number>,
  centroids: ArrayLike<number>,
  k: number,
  d: number,
  options: { previous?: ArrayLike<number>; clusters?: Iterable<number>; tolerance?: Tolerance } = {},
): Violation {
  const tol = options.tolerance ?? MEANS_TOLERANCE;
  const hist = refHistogram(labels, k);
  const means = refMeans(features, labels, k, d, options.previous ?? centroids);
  const clusters = options.clusters ? [...options.clusters] : Array.from({ length: k }, (_, c) => c);
  for (const c of clusters) {
    if (hist[c] === 0) {
      if (!options.previous) continue;
      for (let j = 0; j < d; j++) {
        if (bitsOf(centroids, c * d + j) !== bitsOf(options.previous, c * d + j)) {
          return `5.7 centroids: empty cluster ${c} changed its centroid to ${fmt(centroids, c * d, d)}, expected it to keep ${fmt(options.previous, c * d, d)}`;
        }
      }
      continue;
    }
    for (let j = 0; j < d; j++) {
      const e = means[c * d + j];
      const a = centroids[c * d + j];
      if (!(Math.abs(a - e) <= tol.atol + tol.rtol * Math.abs(e))) {
        return `5.3 centroids are plain means: cluster ${c} (${hist[c]} members) has centroid ${fmt(centroids, c * d, d)}, the mean of its members is ${fmt(means, c * d, d)}`;
      }
    }
  }
  return null;
}

/**
 * 5.5: each checked row's label is argmax_c (centroid[c] . feature) with ties to the lowest index. Scores
 * within `tieTolerance` of the best (f32 against float64 rounding) may pick either; with tieTolerance 0 an
 * exact tie must go to the lowest index. `rows` restricts the check (a batch); default every row.
 */
export function labelsAreArgmax(
  features: ArrayLike<number>,
  labels: ArrayLike<number>,
  centroids: ArrayLike<number>,
  k: number,
  d: number,
  options: { rows?: Iterable<number>; tieTolerance?: number } = {},
): Violation {
  const tie = options.tieTolerance ?? 1e-5;
  const rows = options.rows ?? Array.from({ length: labels.length }, (_, i) => i);
  for (const i of rows) {
    const scores = refScores(
      Array.from({ length: d }, (_, j) => features[i * d + j]),
      centroids,
      k,
      d,
    );
    const best = refArgmax(scores);
    const l = labels[i];
    if (l !== best && !(tie > 0 && scores[l] >= scores[best] - tie)) {
      return `5.5 relabel = argmax: row ${i} has label ${l} (score ${scores[l]}), the highest score is cluster ${best}'s (${scores[best]}; ties go to the lowest index)`;
    }
  }
  return null;
}

/**
 * k-means assignment (the L2 form of 5.5, for k-means implementations): each row's label is its nearest
 * centroid in squared L2 distance, ties to the lowest index; distances within `tieTolerance` may pick either.
 */
export function labelsAreNearest(
  x: ArrayLike<number>,
  labels: ArrayLike<number>,
  centroids: ArrayLike<number>,
  k: number,
  d: number,
  options: { tieTolerance?: number } = {},
): Violation {
  const tie = options.tieTolerance ?? 1e-5;
  for (let i = 0; i < labels.length; i++) {
    const dist = refDistances(x, i, centroids, k, d);
    const best = refArgmax(dist.map((v) => -v));
    const l = labels[i];
    if (l !== best && !(tie > 0 && dist[l] <= dist[best] + tie)) {
      return `5.5 nearest centroid: row ${i} ${fmt(x, i * d, d)} has label ${l} at squared distance ${dist[l]}, but centroid ${best} ${fmt(centroids, best * d, d)} is nearer (${dist[best]}; ties go to the lowest index)`;
    }
  }
  return null;
}

export interface MemoryRows {
  /** [n, d] memory features. */
  features: ArrayLike<number>;
  /** [n] memory labels. */
  labels: ArrayLike<number>;
}

/**
 * 5.4 and the "outside B" half of 5.5: after update(indices, fresh) with momentum m, each row in the batch
 * equals normalize((1 - m) old + m normalize(fresh)) (a row repeated in the batch: its last occurrence
 * wins, ODC-SPEC 6), and every row and label outside the batch is bit-identical to before.
 */
export function memoryUpdateRows(
  before: MemoryRows,
  after: MemoryRows,
  indices: ArrayLike<number>,
  fresh: ArrayLike<number>,
  momentum: number,
  d: number,
  options: { tolerance?: Tolerance } = {},
): Violation {
  const tol = options.tolerance ?? { rtol: 1e-5, atol: 2e-6 };
  const last = new Map<number, number>();
  for (let b = 0; b < indices.length; b++) last.set(indices[b], b);
  for (const [i, b] of last) {
    const f = refNormalize(Array.from({ length: d }, (_, j) => fresh[b * d + j]));
    const mix = Array.from({ length: d }, (_, j) => (1 - momentum) * before.features[i * d + j] + momentum * f[j]);
    const mixNorm = Math.sqrt(mix.reduce((a, v) => a + v * v, 0));
    // the f32 error of the re-normalised mix grows as 1 / ||mix|| (old and fresh nearly opposite)
    const atol = tol.atol / Math.max(mixNorm, 1e-6);
    if (atol >= 0.1) continue;
    const expected = refNormalize(mix);
    for (let j = 0; j < d; j++) {
      if (!(Math.abs(after.features[i * d + j] - expected[j]) <= atol + tol.rtol * Math.abs(expected[j]))) {
        return `5.4 memory update: row ${i} (batch position ${b}) is ${fmt(after.features, i * d, d)}, expected normalize(${1 - momentum} old + ${momentum} normalize(fresh)) = ${fmt(expected, 0, d)}`;
      }
    }
  }
  const n = Math.floor(before.features.length / d);
  for (let i = 0; i < n; i++) {
    if (last.has(i)) continue;
    if (after.labels[i] !== before.labels[i])
      return `5.5 memory update: label of row ${i}, outside the batch, changed from ${before.labels[i]} to ${after.labels[i]}`;
    for (let j = 0; j < d; j++) {
      if (bitsOf(after.features, i * d + j) !== bitsOf(before.features, i * d + j))
        return `5.4 memory update: row ${i}, outside the batch, changed`;
    }
  }
  return null;
}

/**
 * 5.10 (first half): rows of clusters that were small (< minCluster) at the start of small-cluster handling
 * moved only to clusters that were not small then; rows of other clusters did not move.
 */
export function movedOnlyToKeptClusters(
  labelsBefore: ArrayLike<number>,
  labelsAfterMoves: ArrayLike<number>,
  k: number,
  minCluster: number,
): Violation {
  const hist = refHistogram(labelsBefore, k);
  for (let i = 0; i < labelsBefore.length; i++) {
    const from = labelsBefore[i];
    const to = labelsAfterMoves[i];
    if (hist[from] >= minCluster) {
      if (to !== from)
        return `5.10 moves: row ${i} of cluster ${from} (${hist[from]} members, not small) moved to ${to}`;
    } else if (hist[to] < minCluster) {
      return `5.10 moves: row ${i} of small cluster ${from} moved to cluster ${to}, which was small too (${hist[to]} < minCluster ${minCluster})`;
    }
  }
  return null;
}

/**
 * 5.12: loss weights are >= 0, sum to 1 and are proportional to (n_c + 1e-5)^-power (ODC: power 0.5), so a
 * cluster with more members never weighs more than one with fewer.
 */
export function lossWeights(
  weights: ArrayLike<number>,
  hist: ArrayLike<number>,
  power = 0.5,
  tolerance: Tolerance = { rtol: 3e-5, atol: 1e-9 },
): Violation {
  if (weights.length !== hist.length) return `5.12 loss weights: ${weights.length} weights for ${hist.length} clusters`;
  const expected = refWeights(hist, power, 1e-5);
  let total = 0;
  for (let c = 0; c < weights.length; c++) {
    if (!(weights[c] >= 0)) return `5.12 loss weights: w[${c}] = ${weights[c]} is negative or not a number`;
    total += weights[c];
    if (!(Math.abs(weights[c] - expected[c]) <= tolerance.atol + tolerance.rtol * expected[c])) {
      return `5.12 loss weights: w[${c}] = ${weights[c]} for ${hist[c]} members, expected ${expected[c]} ((n + 1e-5)^-${power}, normalised)`;
    }
  }
  if (!(Math.abs(total - 1) <= 1e-5)) return `5.12 loss weights: they sum to ${total}, expected 1`;
  for (let a = 0; a < weights.length; a++) {
    for (let c = 0; c < weights.length; c++) {
      if (hist[a] > hist[c] && weights[a] > weights[c] * (1 + 1e-6))
        return `5.12 loss weights: cluster ${a} (${hist[a]} members) weighs ${weights[a]} > cluster ${c} (${hist[c]} members, ${weights[c]})`;
    }
  }
  return null;
}

/** Determinism: two runs with the same seed give bit-identical values (Object.is: -0 differs from 0, NaN equals NaN). */
export function identical(what: string, first: ArrayLike<number>, second: ArrayLike<number>): Violation {
  if (first.length !== second.length)
    return `determinism: ${what} has ${first.length} values in the first run, ${second.length} in the second`;
  for (let i = 0; i < first.length; i++) {
    if (!Object.is(first[i], second[i])) {
      return `determinism: ${what}[${i}] is ${first[i]} in the first run and ${second[i]} in the second (same seed)`;
    }
  }
  return null;
}
