/**
 * CPU float64 reference for one torch.optim.SGD step (dampening 0) on one parameter, in place.
 * `buf` is the momentum buffer: null before the first step (the step then returns the new buffer).
 */
export interface RefSgdOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
}

export function refSgdStep(
  param: Float64Array,
  grad: ArrayLike<number>,
  buf: Float64Array | null,
  o: RefSgdOptions,
): Float64Array | null {
  const gPrime = new Float64Array(param.length);
  for (let i = 0; i < param.length; i++) gPrime[i] = grad[i] + o.weightDecay * param[i];
  if (o.momentum === 0) {
    for (let i = 0; i < param.length; i++) param[i] -= o.lr * gPrime[i];
    return null;
  }
  const b = buf ?? Float64Array.from(gPrime);
  if (buf) for (let i = 0; i < b.length; i++) b[i] = o.momentum * b[i] + gPrime[i];
  for (let i = 0; i < param.length; i++) {
    const d = o.nesterov ? gPrime[i] + o.momentum * b[i] : b[i];
    param[i] -= o.lr * d;
  }
  return b;
}
