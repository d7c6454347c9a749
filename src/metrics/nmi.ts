/**
 * Normalized mutual information between two labelings of the same items (cluster ids need not match):
 * NMI = I(A; B) / ((H(A) + H(B)) / 2), natural logarithms, i.e. the "arithmetic" normalisation (the
 * default of scikit-learn's normalized_mutual_info_score). 1 for identical partitions up to renaming,
 * 0 for independent ones. Two single-cluster labelings give 1 (both have zero entropy and agree).
 */
export function nmi(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  if (n !== b.length) throw new RangeError(`nmi: labelings have different lengths (${n} and ${b.length})`);
  if (n === 0) throw new RangeError('nmi: empty labelings');
  const ia = new Map<number, number>();
  const ib = new Map<number, number>();
  const ra = new Int32Array(n);
  const rb = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let x = ia.get(a[i]);
    if (x === undefined) ia.set(a[i], (x = ia.size));
    ra[i] = x;
    let y = ib.get(b[i]);
    if (y === undefined) ib.set(b[i], (y = ib.size));
    rb[i] = y;
  }
  const ka = ia.size;
  const kb = ib.size;
  const joint = new Map<number, number>();
  const ca = new Float64Array(ka);
  const cb = new Float64Array(kb);
  for (let i = 0; i < n; i++) {
    ca[ra[i]]++;
    cb[rb[i]]++;
    const key = ra[i] * kb + rb[i];
    joint.set(key, (joint.get(key) ?? 0) + 1);
  }
  const entropy = (counts: Float64Array) => {
    let h = 0;
    for (const c of counts) if (c > 0) h -= (c / n) * Math.log(c / n);
    return h;
  };
  const ha = entropy(ca);
  const hb = entropy(cb);
  if (ha === 0 && hb === 0) return 1;
  let mi = 0;
  for (const [key, c] of joint) {
    const x = Math.floor(key / kb);
    const y = key % kb;
    mi += (c / n) * Math.log((c * n) / (ca[x] * cb[y]));
  }
  const denom = (ha + hb) / 2;
  return denom > 0 ? Math.max(0, Math.min(1, mi / denom)) : 0;
}
