/**
 * Plain TypeScript reference of the ODC memory (float64, written from ODC-SPEC sections 2 and 5, not
 * from the kernels): the oracle the property tests compare the GPU memory against. Straight loops, no
 * cleverness; O(N K D) where the GPU tiles.
 */

/** x / (||x|| + 1e-10) in float64. */
export function refNormalize(x: ArrayLike<number>): Float64Array {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += x[j] * x[j];
  const inv = 1 / (Math.sqrt(s) + 1e-10);
  return Float64Array.from(x, (v) => v * inv);
}

export function refDotRow(a: ArrayLike<number>, ai: number, b: ArrayLike<number>, bi: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[ai * d + j] * b[bi * d + j];
  return s;
}

/** Scores x . c for every centroid (dot product), float64. */
export function refScores(x: ArrayLike<number>, centroids: ArrayLike<number>, k: number, d: number): Float64Array {
  const out = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[j] * centroids[c * d + j];
    out[c] = s;
  }
  return out;
}

/** argmax with ties to the lowest index, over the allowed entries (all if `allowed` is absent). */
export function refArgmax(scores: ArrayLike<number>, allowed?: (c: number) => boolean): number {
  let best = -1;
  for (let c = 0; c < scores.length; c++) {
    if (allowed && !allowed(c)) continue;
    if (best < 0 || scores[c] > scores[best]) best = c;
  }
  return best;
}

export function refHistogram(labels: ArrayLike<number>, k: number): number[] {
  const h = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) h[labels[i]]++;
  return h;
}

/** Plain means of rows by label; clusters without members keep `previous`. */
export function refMeans(
  x: ArrayLike<number>,
  labels: ArrayLike<number>,
  k: number,
  d: number,
  previous: ArrayLike<number>,
): Float64Array {
  const sum = new Float64Array(k * d);
  const cnt = new Float64Array(k);
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    cnt[c]++;
    for (let j = 0; j < d; j++) sum[c * d + j] += x[i * d + j];
  }
  const out = Float64Array.from(previous);
  for (let c = 0; c < k; c++) if (cnt[c] > 0) for (let j = 0; j < d; j++) out[c * d + j] = sum[c * d + j] / cnt[c];
  return out;
}

/** w_c = (n_c + eps)^-power normalised to sum 1. */
export function refWeights(hist: ArrayLike<number>, power = 0.5, eps = 1e-5): Float64Array {
  const w = Float64Array.from(hist, (h) => Math.pow(h + eps, -power));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / s);
}

/**
 * Weighted cross-entropy as PyTorch's CrossEntropyLoss(weight = w) with mean reduction:
 * sum_i w[y_i] CE_i / sum_i w[y_i] (invariant 13: unchanged when w is scaled).
 */
export function refWeightedCrossEntropy(
  logits: ArrayLike<number>,
  labels: ArrayLike<number>,
  w: ArrayLike<number>,
  k: number,
): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < labels.length; i++) {
    let m = -Infinity;
    for (let c = 0; c < k; c++) m = Math.max(m, logits[i * k + c]);
    let z = 0;
    for (let c = 0; c < k; c++) z += Math.exp(logits[i * k + c] - m);
    const ce = m + Math.log(z) - logits[i * k + labels[i]];
    num += w[labels[i]] * ce;
    den += w[labels[i]];
  }
  return num / den;
}

/** Sum of squared L2 distances of rows to their labelled centroid. */
export function refInertia(
  x: ArrayLike<number>,
  labels: ArrayLike<number>,
  centroids: ArrayLike<number>,
  d: number,
): number {
  let s = 0;
  for (let i = 0; i < labels.length; i++) {
    const c = labels[i];
    for (let j = 0; j < d; j++) {
      const v = x[i * d + j] - centroids[c * d + j];
      s += v * v;
    }
  }
  return s;
}

/** Squared L2 distances of one row to every centroid. */
export function refDistances(
  x: ArrayLike<number>,
  xi: number,
  centroids: ArrayLike<number>,
  k: number,
  d: number,
): Float64Array {
  const out = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      const v = x[xi * d + j] - centroids[c * d + j];
      s += v * v;
    }
    out[c] = s;
  }
  return out;
}

export interface RefUpdateResult {
  /** Per batch row: the new (re-normalised) feature and its new label. */
  rows: Float64Array[];
  newLabels: number[];
  /** Per batch row: the best score minus the runner-up (to skip near-ties in comparisons). */
  margins: number[];
  /** Per batch row: ||mix|| before re-normalisation (small = ill-conditioned, f32 error is amplified). */
  mixNorms: number[];
  changed: number;
}

/**
 * The ODC sample memory in float64: features [N, D], labels [N], centroids [K, D].
 * `update` follows spec 2.3 with the documented duplicate rule (last occurrence wins).
 */
export class RefMemory {
  constructor(
    readonly n: number,
    readonly d: number,
    readonly k: number,
    public features: Float64Array,
    public labels: number[],
    public centroids: Float64Array,
  ) {}

  row(i: number): Float64Array {
    return this.features.slice(i * this.d, (i + 1) * this.d);
  }

  /** Spec 2.3: gather old rows, mix with normalised fresh features, re-normalise, relabel, scatter. */
  update(indices: ArrayLike<number>, fresh: ArrayLike<number>, momentum: number): RefUpdateResult {
    const d = this.d;
    const rows: Float64Array[] = [];
    const newLabels: number[] = [];
    const margins: number[] = [];
    const mixNorms: number[] = [];
    let changed = 0;
    const old = Array.from(indices, (i) => this.row(i));
    const oldLabels = Array.from(indices, (i) => this.labels[i]);
    for (let b = 0; b < indices.length; b++) {
      const f = refNormalize(Array.from({ length: d }, (_, j) => fresh[b * d + j]));
      const mix = old[b].map((v, j) => (1 - momentum) * v + momentum * f[j]);
      const row = refNormalize(mix);
      mixNorms.push(Math.sqrt(mix.reduce((a, v) => a + v * v, 0)));
      const scores = refScores(row, this.centroids, this.k, d);
      const label = refArgmax(scores);
      let second = -Infinity;
      for (let c = 0; c < this.k; c++) if (c !== label) second = Math.max(second, scores[c]);
      rows.push(row);
      newLabels.push(label);
      margins.push(scores[label] - second);
      if (label !== oldLabels[b]) changed++;
    }
    for (let b = 0; b < indices.length; b++) {
      const i = indices[b];
      this.features.set(rows[b], i * d);
      this.labels[i] = newLabels[b];
    }
    return { rows, newLabels, margins, mixNorms, changed };
  }

  histogram(): number[] {
    return refHistogram(this.labels, this.k);
  }

  recomputeCentroids(): void {
    this.centroids = refMeans(this.features, this.labels, this.k, this.d, this.centroids);
  }

  /** The move step of spec 2.5: nearest allowed centroid (dot product) for each row, with its margin. */
  nearestAllowed(i: number, allowed: (c: number) => boolean): { label: number; margin: number; scores: Float64Array } {
    const scores = refScores(this.row(i), this.centroids, this.k, this.d);
    const label = refArgmax(scores, allowed);
    let second = -Infinity;
    for (let c = 0; c < this.k; c++) if (c !== label && allowed(c)) second = Math.max(second, scores[c]);
    return { label, margin: scores[label] - second, scores };
  }
}
