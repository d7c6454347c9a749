/** Float64 reference of the f16 rounding the `--precision f16` copies use (IEEE binary16, nearest even). */
import { refMap, type RefArray } from './array.ts';

const F16_MAX = 65504;

/** x rounded to the nearest IEEE half (ties to even; subnormals kept; beyond the largest half: ±inf). */
export function roundF16(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = Math.max(Math.floor(Math.log2(a)), -14); // -14: the subnormal range shares the smallest exponent
  if (a < 2 ** e && e > -14) e--;
  const quantum = 2 ** (e - 10);
  const m = a / quantum;
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  const rounded = r * quantum;
  // Past the largest half, anything at or above halfway to the next (65520) becomes infinity.
  return Math.sign(x) * (rounded > F16_MAX ? Infinity : rounded);
}

/** Each element rounded to f16. */
export function refRoundF16(a: RefArray): RefArray {
  return refMap(a, roundF16);
}
