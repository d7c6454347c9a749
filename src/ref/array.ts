/**
 * The CPU reference backend: plain float64 arrays, written for clarity, used by the tests as the
 * independent oracle for every GPU op (forward and backward). Each op family has a file beside this one.
 */
export interface RefArray {
  shape: number[];
  data: Float64Array;
}

export function refArray(shape: number[], data?: ArrayLike<number>): RefArray {
  const size = shape.reduce((a, b) => a * b, 1);
  const out = new Float64Array(size);
  if (data) {
    if (data.length !== size) throw new RangeError(`refArray: ${data.length} values for shape [${shape}]`);
    out.set(data);
  }
  return { shape: shape.slice(), data: out };
}

export function refMap(a: RefArray, f: (v: number, i: number) => number): RefArray {
  return { shape: a.shape.slice(), data: a.data.map(f) };
}

export function refZip(a: RefArray, b: RefArray, f: (x: number, y: number) => number): RefArray {
  if (a.data.length !== b.data.length) throw new RangeError('refZip: sizes differ');
  return { shape: a.shape.slice(), data: a.data.map((x, i) => f(x, b.data[i])) };
}

/** Sum of a ⊙ b: turns any op into a scalar loss for finite-difference checks. */
export function refDot(a: RefArray, b: RefArray): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += a.data[i] * b.data[i];
  return s;
}

/**
 * Central finite differences of a scalar function at x (float64): d f / d x[i] for every i.
 * f must not keep references to its argument.
 */
export function finiteDifference(f: (x: RefArray) => number, x: RefArray, eps = 1e-6): RefArray {
  const grad = refArray(x.shape);
  const probe = { shape: x.shape, data: x.data.slice() };
  for (let i = 0; i < x.data.length; i++) {
    const v = x.data[i];
    probe.data[i] = v + eps;
    const up = f(probe);
    probe.data[i] = v - eps;
    const down = f(probe);
    probe.data[i] = v;
    grad.data[i] = (up - down) / (2 * eps);
  }
  return grad;
}
