/**
 * fast-check arbitraries for clustering states: feature matrices with the awkward cases a clustering
 * implementation meets (duplicate rows, exact ties, all-zero rows, tiny and huge clusters), batches of
 * indices with repeats, label assignments with empty and small clusters, and whole ODC memory states.
 * Values are small integers or seeded blobs, so shrunk counterexamples stay readable.
 */
import fc from 'fast-check';
import { Rng } from '../util/rng.ts';
import { refMeans, refNormalize } from '../odc/reference.ts';

/** n rows of d features, row-major. */
export interface FeatureMatrix {
  n: number;
  d: number;
  data: Float32Array;
}

/** A clustering problem: a feature matrix and a cluster count k (1 <= k <= n). */
export interface ClusteringProblem extends FeatureMatrix {
  k: number;
}

export interface FeatureMatrixOptions {
  minRows?: number;
  maxRows?: number;
  minDim?: number;
  maxDim?: number;
}

/**
 * Rows from a small integer grid (-2..2, scaled by 0.5): duplicates, exact ties and all-zero rows are
 * common, and a shrunk case is a handful of short rows of small numbers.
 */
function gridMatrix(o: Required<FeatureMatrixOptions>): fc.Arbitrary<FeatureMatrix> {
  return fc
    .record({ n: fc.integer({ min: o.minRows, max: o.maxRows }), d: fc.integer({ min: o.minDim, max: o.maxDim }) })
    .chain(({ n, d }) =>
      fc
        .array(fc.integer({ min: -2, max: 2 }), { minLength: n * d, maxLength: n * d })
        .map((v) => ({ n, d, data: Float32Array.from(v, (x) => x / 2) })),
    );
}

/**
 * Seeded Gaussian blobs of very different sizes (a few points to most of the data), some rows repeated
 * exactly and a few all-zero rows.
 */
function blobMatrix(o: Required<FeatureMatrixOptions>): fc.Arbitrary<FeatureMatrix> {
  return fc
    .record({
      n: fc.integer({ min: o.minRows, max: o.maxRows }),
      d: fc.integer({ min: o.minDim, max: o.maxDim }),
      blobs: fc.integer({ min: 1, max: 8 }),
      spread: fc.constantFrom(0, 0.01, 0.3),
      duplicates: fc.double({ min: 0, max: 0.5, noNaN: true }),
      zeros: fc.double({ min: 0, max: 0.1, noNaN: true }),
      seed: fc.nat(),
    })
    .map(({ n, d, blobs, spread, duplicates, zeros, seed }) => {
      const rng = new Rng(seed);
      const centres = Array.from({ length: blobs }, () => Array.from({ length: d }, () => 2 * rng.normal()));
      // blob b gets a share ~ 4^-b: the first is huge, the last tiny
      const shares = centres.map((_, b) => 4 ** -b);
      const total = shares.reduce((a, b) => a + b, 0);
      const data = new Float32Array(n * d);
      for (let i = 0; i < n; i++) {
        if (rng.uniform() < zeros) continue;
        if (i > 0 && rng.uniform() < duplicates) {
          data.copyWithin(i * d, rng.int(i) * d, rng.int(i) * d + d);
          continue;
        }
        let u = rng.uniform() * total;
        let b = 0;
        while (b < blobs - 1 && u >= shares[b]) u -= shares[b++];
        for (let j = 0; j < d; j++) data[i * d + j] = centres[b][j] + spread * rng.normal();
      }
      return { n, d, data };
    });
}

/** Feature matrices: integer-grid rows (ties, duplicates, zero rows) or blobs of very different sizes. */
export function featureMatrix(options: FeatureMatrixOptions = {}): fc.Arbitrary<FeatureMatrix> {
  const o = { minRows: 1, maxRows: 64, minDim: 1, maxDim: 8, ...options };
  return fc.oneof(gridMatrix(o), blobMatrix(o));
}

/** A feature matrix with a cluster count k in [1, min(n, maxK)]. */
export function clusteringProblem(
  options: FeatureMatrixOptions & { maxK?: number } = {},
): fc.Arbitrary<ClusteringProblem> {
  const maxK = options.maxK ?? 8;
  return featureMatrix(options).chain((m) =>
    fc.integer({ min: 1, max: Math.min(m.n, maxK) }).map((k) => ({ ...m, k })),
  );
}

/** Feature rows L2-normalised (x / (||x|| + 1e-10)), as the ODC memory holds them; zero rows stay zero. */
export function normalizedRows(m: FeatureMatrix): Float32Array {
  const out = new Float32Array(m.n * m.d);
  for (let i = 0; i < m.n; i++) out.set(refNormalize(m.data.subarray(i * m.d, (i + 1) * m.d)), i * m.d);
  return out;
}

/**
 * A batch of row indices into n rows: 1..maxSize entries, often with repeats (a sampler with replacement,
 * or a batch drawn from a few rows).
 */
export function batchIndices(n: number, options: { maxSize?: number } = {}): fc.Arbitrary<number[]> {
  const maxLength = options.maxSize ?? 64;
  const any = fc.array(fc.integer({ min: 0, max: n - 1 }), { minLength: 1, maxLength });
  const few = fc
    .integer({ min: 0, max: n - 1 })
    .chain((hi) => fc.array(fc.integer({ min: 0, max: hi }), { minLength: 1, maxLength }));
  return fc.oneof(any, few);
}

/**
 * Labels of n rows in [0, k): uniform, or skewed so that some clusters are small (< minCluster) or empty
 * and one is huge.
 */
export function labelAssignment(
  n: number,
  k: number,
  options: { minCluster?: number } = {},
): fc.Arbitrary<Uint32Array> {
  const minCluster = options.minCluster ?? 1;
  return fc.record({ seed: fc.nat(), skewed: fc.boolean() }).map(({ seed, skewed }) => {
    const rng = new Rng(seed);
    if (!skewed) return Uint32Array.from({ length: n }, () => rng.int(k));
    return skewedLabels(rng, n, k, minCluster);
  });
}

/** Labels where some clusters are small (< minCluster, possibly empty) and the rest share the remainder. */
export function skewedLabels(rng: Rng, n: number, k: number, minCluster: number): Uint32Array {
  const labels = new Uint32Array(n);
  const small: number[] = [];
  const big: number[] = [];
  for (let c = 0; c < k; c++) (rng.uniform() < 0.4 && c !== 0 ? small : big).push(c);
  let pos = 0;
  for (const c of small) {
    const size = rng.int(minCluster);
    for (let q = 0; q < size && pos < n; q++) labels[pos++] = c;
  }
  const weights = big.map(() => 0.2 + rng.uniform());
  const total = weights.reduce((a, b) => a + b, 0);
  while (pos < n) {
    let u = rng.uniform() * total;
    let j = 0;
    while (j < big.length - 1 && u >= weights[j]) u -= weights[j++];
    labels[pos++] = big[j];
  }
  const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  return Uint32Array.from(order, (i) => labels[i]);
}

/** The state of an ODC memory (ODC-SPEC 2.1): unit-norm features, labels and centroids = member means. */
export interface MemoryState {
  n: number;
  d: number;
  k: number;
  minCluster: number;
  /** [n, d] unit rows (a few all-zero rows, as after a final ReLU). */
  features: Float32Array;
  /** [n] labels in [0, k). */
  labels: Uint32Array;
  /** [k, d] plain means of the members (an empty cluster: a random unit row). */
  centroids: Float32Array;
}

/**
 * Random unit rows, non-negative like a post-ReLU neck unless `signed`; with `zeros`, about 3% all-zero rows.
 * Seeded, for building states inside a property.
 */
export function unitRows(
  rng: Rng,
  n: number,
  d: number,
  opts: { signed?: boolean; zeros?: boolean } = {},
): Float32Array {
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    if (opts.zeros && rng.uniform() < 0.03) continue;
    const v = Array.from({ length: d }, () => (opts.signed ? rng.normal() : Math.max(0, rng.normal()) + 1e-3));
    out.set(refNormalize(v), i * d);
  }
  return out;
}

/** A memory state of n rows from a seed, with the given labels (default uniform): centroids are member means. */
export function memoryStateFrom(
  seed: number,
  n: number,
  d: number,
  k: number,
  minCluster: number,
  labels?: Uint32Array,
): MemoryState {
  const rng = new Rng(seed);
  const features = unitRows(rng, n, d, { zeros: true });
  const lab = labels ?? Uint32Array.from({ length: n }, () => rng.int(k));
  const fallback = unitRows(rng, k, d);
  const centroids = Float32Array.from(refMeans(features, lab, k, d, fallback));
  return { n, d, k, minCluster, features, labels: lab, centroids };
}

export interface MemoryStateOptions {
  minRows?: number;
  maxRows?: number;
  maxDim?: number;
  maxK?: number;
  /** Skew the labels so that some clusters are small or empty (default: either). */
  skewed?: boolean;
}

/** ODC memory states: sizes, K, minCluster, unit features with zero rows, uniform or skewed labels. */
export function memoryState(options: MemoryStateOptions = {}): fc.Arbitrary<MemoryState> {
  const { minRows = 20, maxRows = 600, maxDim = 16, maxK = 20 } = options;
  return fc
    .record({
      n: fc.integer({ min: Math.max(2, minRows), max: maxRows }),
      d: fc.integer({ min: 2, max: maxDim }),
      k: fc.integer({ min: 2, max: maxK }),
      frac: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
      skewed: options.skewed === undefined ? fc.boolean() : fc.constant(options.skewed),
      seed: fc.nat(),
    })
    .map(({ n, d, k: k0, frac, skewed, seed }) => {
      const k = Math.min(k0, n);
      const minCluster = Math.max(1, Math.floor((frac * n) / k));
      const labels = skewed ? skewedLabels(new Rng(seed + 1), n, k, minCluster) : undefined;
      return memoryStateFrom(seed, n, d, k, minCluster, labels);
    });
}
