/**
 * CPU float64 reference for weightedCrossEntropy (src/ops/loss.ts): torch.chunk-style row chunks,
 * per-chunk weighted mean of cross-entropy, mean over the non-empty chunks.
 */
import { refArray, type RefArray } from './array.ts';

function chunkBounds(rows: number, chunks: number): Array<[number, number]> {
  const size = Math.max(1, Math.ceil(rows / chunks));
  const out: Array<[number, number]> = [];
  for (let lo = 0; lo < rows; lo += size) out.push([lo, Math.min(lo + size, rows)]);
  return out;
}

/** log(sum_k exp(x_k)) of row i, computed with the row maximum subtracted. */
function logSumExp(logits: RefArray, i: number): number {
  const k = logits.shape[1];
  let m = -Infinity;
  for (let j = 0; j < k; j++) m = Math.max(m, logits.data[i * k + j]);
  let s = 0;
  for (let j = 0; j < k; j++) s += Math.exp(logits.data[i * k + j] - m);
  return m + Math.log(s);
}

function weightOf(labels: ArrayLike<number>, weights: ArrayLike<number> | null, i: number): number {
  return weights ? weights[labels[i]] : 1;
}

/** The loss value. */
export function refWeightedCrossEntropy(
  logits: RefArray,
  labels: ArrayLike<number>,
  weights: ArrayLike<number> | null,
  chunks = 1,
): number {
  const [rows, k] = logits.shape;
  const bounds = chunkBounds(rows, chunks);
  let total = 0;
  for (const [lo, hi] of bounds) {
    let num = 0;
    let den = 0;
    for (let i = lo; i < hi; i++) {
      const w = weightOf(labels, weights, i);
      const ce = logSumExp(logits, i) - logits.data[i * k + labels[i]];
      num += w * ce;
      den += w;
    }
    total += num / den;
  }
  return total / bounds.length;
}

/** d loss / d logits, times the upstream scalar gradient `gOut`. */
export function refWeightedCrossEntropyGrad(
  logits: RefArray,
  labels: ArrayLike<number>,
  weights: ArrayLike<number> | null,
  chunks = 1,
  gOut = 1,
): RefArray {
  const [rows, k] = logits.shape;
  const grad = refArray([rows, k]);
  const bounds = chunkBounds(rows, chunks);
  for (const [lo, hi] of bounds) {
    let den = 0;
    for (let i = lo; i < hi; i++) den += weightOf(labels, weights, i);
    for (let i = lo; i < hi; i++) {
      const c = (gOut * weightOf(labels, weights, i)) / (den * bounds.length);
      const lse = logSumExp(logits, i);
      for (let j = 0; j < k; j++) {
        const softmax = Math.exp(logits.data[i * k + j] - lse);
        grad.data[i * k + j] = c * (softmax - (j === labels[i] ? 1 : 0));
      }
    }
  }
  return grad;
}
