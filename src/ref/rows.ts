/** CPU float64 reference for the row family (src/ops/rows.ts). */
import { refArray, type RefArray } from './array.ts';

function rowNorm(x: RefArray, i: number): number {
  const d = x.shape[1];
  let s = 0;
  for (let j = 0; j < d; j++) s += x.data[i * d + j] ** 2;
  return Math.sqrt(s);
}

export function refL2NormalizeRows(x: RefArray, eps = 1e-10): RefArray {
  const [b, d] = x.shape;
  const out = refArray([b, d]);
  for (let i = 0; i < b; i++) {
    const n = rowNorm(x, i);
    for (let j = 0; j < d; j++) out.data[i * d + j] = x.data[i * d + j] / (n + eps);
  }
  return out;
}

/** Vector-Jacobian product of refL2NormalizeRows: gradient wrt x for output gradient g (0/0 term taken as 0 at x = 0). */
export function refL2NormalizeRowsBackward(g: RefArray, x: RefArray, eps = 1e-10): RefArray {
  const [b, d] = x.shape;
  const out = refArray([b, d]);
  for (let i = 0; i < b; i++) {
    const n = rowNorm(x, i);
    let dot = 0;
    for (let j = 0; j < d; j++) dot += g.data[i * d + j] * x.data[i * d + j];
    for (let j = 0; j < d; j++) {
      const direct = g.data[i * d + j] / (n + eps);
      const through = n > 0 ? (x.data[i * d + j] / n) * (dot / (n + eps) ** 2) : 0;
      out.data[i * d + j] = direct - through;
    }
  }
  return out;
}

/** First index of the row maximum; NaN beats every number (first NaN wins). */
export function refArgmaxRows(x: RefArray): number[] {
  const [b, k] = x.shape;
  const out: number[] = [];
  for (let i = 0; i < b; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) {
      const v = x.data[i * k + j];
      const bv = x.data[i * k + best];
      if (Number.isNaN(bv)) break;
      if (Number.isNaN(v) || v > bv) best = j;
    }
    out.push(best);
  }
  return out;
}

/** out[b] = x[index[b]] (a zero row for an out-of-range index). */
export function refGatherRows(x: RefArray, index: ArrayLike<number>): RefArray {
  const [n, d] = x.shape;
  const out = refArray([index.length, d]);
  for (let b = 0; b < index.length; b++) {
    if (index[b] >= n) continue;
    for (let j = 0; j < d; j++) out.data[b * d + j] = x.data[index[b] * d + j];
  }
  return out;
}

/** Gradient of refGatherRows wrt x: rows of g added into their index rows. */
export function refGatherRowsBackward(g: RefArray, index: ArrayLike<number>, n: number): RefArray {
  const d = g.shape[1];
  const out = refArray([n, d]);
  for (let b = 0; b < index.length; b++) {
    if (index[b] >= n) continue;
    for (let j = 0; j < d; j++) out.data[index[b] * d + j] += g.data[b * d + j];
  }
  return out;
}

/** dst with dst[index[b]] = src[b] applied in order b = 0, 1, ... (so the last duplicate wins). */
export function refScatterRows(dst: RefArray, index: ArrayLike<number>, src: RefArray): RefArray {
  const [n, d] = dst.shape;
  const out = refArray([n, d], dst.data);
  for (let b = 0; b < index.length; b++) {
    if (index[b] >= n) continue;
    for (let j = 0; j < d; j++) out.data[index[b] * d + j] = src.data[b * d + j];
  }
  return out;
}

export function refCountEqual(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let c = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) c++;
  return c;
}
