/**
 * Clustering and classification metrics on host label arrays (O(N) bookkeeping on small arrays; the
 * features never leave the GPU for these). Labels are any integers; they are relabelled densely here.
 *
 * - `contingencyTable(a, b)`: counts n[i][j] of samples with the i-th distinct label of a and the j-th of b.
 * - `ari(a, b)`: adjusted Rand index (Hubert & Arabie), symmetric, 1 for identical partitions, ~0 in
 *   expectation for independent ones; 1 by convention when both partitions are trivial and agree.
 * - `clusteringAccuracy(pred, truth)`: the best one-to-one matching of clusters to classes (Hungarian
 *   method on the contingency table, maximising matches); with K != C clusters and classes, only
 *   min(K, C) pairs are matched and the samples of unmatched clusters count as errors.
 * - `accuracy`, `confusionMatrix`: for classifiers whose outputs are already class ids.
 *
 * NMI lives in ./nmi.ts (arithmetic-mean normalisation, scikit-learn's default).
 */
import { linearSumAssignment } from './hungarian.ts';

export interface Contingency {
  /** Row-major counts, rows = distinct labels of a (ascending), cols = distinct labels of b (ascending). */
  table: Float64Array;
  rows: number;
  cols: number;
  /** The original label of each row / column. */
  rowLabels: number[];
  colLabels: number[];
  n: number;
}

function checkLabels(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  if (a.length !== b.length)
    throw new RangeError(`${what}: label arrays have different lengths (${a.length} and ${b.length})`);
  for (const [name, arr] of [
    ['first', a],
    ['second', b],
  ] as const) {
    for (let i = 0; i < arr.length; i++) {
      if (!Number.isInteger(arr[i]))
        throw new TypeError(`${what}: ${name} label array has a non-integer label ${arr[i]} at index ${i}`);
    }
  }
}

/** Dense codes 0..k-1 for the distinct labels (in ascending label order). */
function encode(labels: ArrayLike<number>): { codes: Int32Array; values: number[] } {
  const values = [...new Set(Array.from(labels))].sort((x, y) => x - y);
  const index = new Map<number, number>();
  values.forEach((v, i) => index.set(v, i));
  const codes = new Int32Array(labels.length);
  for (let i = 0; i < labels.length; i++) codes[i] = index.get(labels[i])!;
  return { codes, values };
}

/** The contingency table of two labelings of the same samples. */
export function contingencyTable(a: ArrayLike<number>, b: ArrayLike<number>): Contingency {
  checkLabels(a, b, 'contingencyTable');
  const ea = encode(a);
  const eb = encode(b);
  const rows = ea.values.length;
  const cols = eb.values.length;
  const table = new Float64Array(rows * cols);
  for (let i = 0; i < a.length; i++) table[ea.codes[i] * cols + eb.codes[i]]++;
  return { table, rows, cols, rowLabels: ea.values, colLabels: eb.values, n: a.length };
}

const comb2 = (x: number): number => (x * (x - 1)) / 2;

/** Adjusted Rand index of two labelings (symmetric). */
export function ari(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const c = contingencyTable(a, b);
  if (c.n < 2) return 1;
  let sumCells = 0;
  for (const x of c.table) sumCells += comb2(x);
  const rowSums = new Float64Array(c.rows);
  const colSums = new Float64Array(c.cols);
  for (let i = 0; i < c.rows; i++) {
    for (let j = 0; j < c.cols; j++) {
      rowSums[i] += c.table[i * c.cols + j];
      colSums[j] += c.table[i * c.cols + j];
    }
  }
  let sumRows = 0;
  for (const x of rowSums) sumRows += comb2(x);
  let sumCols = 0;
  for (const x of colSums) sumCols += comb2(x);
  const expected = (sumRows * sumCols) / comb2(c.n);
  const maxIndex = (sumRows + sumCols) / 2;
  const denom = maxIndex - expected;
  // denom = 0 only when both partitions are one cluster, or both all singletons: identical partitions.
  if (denom === 0) return 1;
  return (sumCells - expected) / denom;
}

export interface ClusterMatch {
  /** Fraction of samples whose cluster is matched to their class. */
  accuracy: number;
  /** Number of such samples. */
  correct: number;
  /** Cluster label -> matched class label (clusters left unmatched when K > C are absent). */
  mapping: Map<number, number>;
}

/** Best one-to-one matching of predicted clusters to true classes, maximising the matched samples. */
export function matchClusters(pred: ArrayLike<number>, truth: ArrayLike<number>): ClusterMatch {
  const c = contingencyTable(pred, truth);
  const mapping = new Map<number, number>();
  if (c.n === 0) return { accuracy: 0, correct: 0, mapping };
  const { rowToCol, total } = linearSumAssignment(c.table, c.rows, c.cols, { maximize: true });
  rowToCol.forEach((j, i) => {
    if (j >= 0) mapping.set(c.rowLabels[i], c.colLabels[j]);
  });
  return { accuracy: total / c.n, correct: total, mapping };
}

/** Unsupervised clustering accuracy (ACC): Hungarian-matched fraction of correctly clustered samples. */
export function clusteringAccuracy(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  return matchClusters(pred, truth).accuracy;
}

/** Fraction of positions where pred equals truth. */
export function accuracy(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  if (pred.length !== truth.length)
    throw new RangeError(`accuracy: ${pred.length} predictions for ${truth.length} labels`);
  if (pred.length === 0) return 0;
  let hits = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === truth[i]) hits++;
  return hits / pred.length;
}

/** The number of labels equal to each of 0..k-1 (cluster sizes). */
export function labelHistogram(labels: ArrayLike<number>, k: number): Uint32Array {
  const h = new Uint32Array(k);
  for (let i = 0; i < labels.length; i++) h[labels[i]]++;
  return h;
}

/** numClasses x numClasses counts, row = true class, column = predicted class. */
export function confusionMatrix(pred: ArrayLike<number>, truth: ArrayLike<number>, numClasses: number): Int32Array {
  if (pred.length !== truth.length)
    throw new RangeError(`confusionMatrix: ${pred.length} predictions for ${truth.length} labels`);
  const out = new Int32Array(numClasses * numClasses);
  for (let i = 0; i < pred.length; i++) {
    const t = truth[i];
    const p = pred[i];
    if (!Number.isInteger(t) || t < 0 || t >= numClasses || !Number.isInteger(p) || p < 0 || p >= numClasses) {
      throw new RangeError(
        `confusionMatrix: sample ${i} has truth ${t} / prediction ${p}, outside 0..${numClasses - 1}`,
      );
    }
    out[t * numClasses + p]++;
  }
  return out;
}

/** Cluster purity: each cluster votes for its majority class (not one-to-one, so K > C inflates it). */
export function purity(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  const c = contingencyTable(pred, truth);
  if (c.n === 0) return 0;
  let sum = 0;
  for (let i = 0; i < c.rows; i++) {
    let best = 0;
    for (let j = 0; j < c.cols; j++) best = Math.max(best, c.table[i * c.cols + j]);
    sum += best;
  }
  return sum / c.n;
}
