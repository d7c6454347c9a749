/** CPU float64 reference for the reductions (src/ops/reduce.ts). */
import { refArray, type RefArray } from './array.ts';

export function refSum(x: RefArray): number {
  let s = 0;
  for (const v of x.data) s += v;
  return s;
}

export function refMean(x: RefArray): number {
  return refSum(x) / x.data.length;
}

export function refSumAxis0(x: RefArray): RefArray {
  const [r, c] = x.shape;
  const out = refArray([c]);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out.data[j] += x.data[i * c + j];
  return out;
}
