/**
 * The cluster arithmetic behind the report, `odc clusters` and `odc assign`, on host arrays: centroids,
 * each image's similarity to its centroid and rank in its cluster, the members nearest each centroid, a new
 * feature's nearest centroid, and the cluster-vs-class matrix. Features are unit rows (cosine = dot product),
 * as ODC's memory holds them.
 */

/** Features of n images in one space, their cluster labels in 0..k-1. */
export interface ClusterSpace {
  n: number;
  dim: number;
  k: number;
  /** [n, dim] unit rows. */
  features: Float32Array;
  labels: Uint32Array;
}

/** A copy of x [rows, dim] with every row scaled to unit length (a zero row stays zero). */
export function unitRows(x: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[r * dim + j] ** 2;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) out[r * dim + j] = x[r * dim + j] * inv;
  }
  return out;
}

/** What the report's galleries and tables need of a cluster space: the labels and each image's similarity. */
export interface ClusterRanking {
  n: number;
  k: number;
  labels: Uint32Array;
  /** [n] cosine similarity of each image to its cluster's centroid (centroidSimilarities). */
  similarity: Float32Array;
}

/**
 * Adds the rows [row0, row0 + x.length / dim) of a space (x holds only those rows) to per-cluster sums [k, dim]:
 * called on consecutive chunks, the sums are those of the whole space.
 */
export function addClusterSums(
  sums: Float64Array,
  x: Float32Array,
  labels: ArrayLike<number>,
  row0: number,
  dim: number,
): void {
  const rows = x.length / dim;
  for (let r = 0; r < rows; r++) {
    const c = labels[row0 + r];
    for (let j = 0; j < dim; j++) sums[c * dim + j] += x[r * dim + j];
  }
}

/** [k, dim] unit-length centroids from per-cluster sums (an empty cluster's row is zero). */
export function centroidsFromSums(sums: Float64Array, dim: number): Float32Array {
  return unitRows(Float32Array.from(sums), dim);
}

/**
 * [k, dim] unit-length centroids: the mean of each cluster's members (as ODC's centroid recompute, spec 2.4),
 * normalised so a dot product is the cosine; an empty cluster's row is zero.
 */
export function clusterCentroids(space: ClusterSpace): Float32Array {
  const sums = new Float64Array(space.k * space.dim);
  addClusterSums(sums, space.features.subarray(0, space.n * space.dim), space.labels, 0, space.dim);
  return centroidsFromSums(sums, space.dim);
}

function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, dim: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += a[ai + j] * b[bi + j];
  return s;
}

/** Each image's cosine similarity to the centroid of its own cluster. */
export function centroidSimilarities(space: ClusterSpace, centroids: Float32Array): Float32Array {
  const out = new Float32Array(space.n);
  similaritiesInto(out, space.features.subarray(0, space.n * space.dim), space.labels, 0, centroids, space.dim);
  return out;
}

/** out[row0 + r] = the similarity of row r of x (rows row0.. of a space) to its cluster's centroid. */
export function similaritiesInto(
  out: Float32Array,
  x: Float32Array,
  labels: ArrayLike<number>,
  row0: number,
  centroids: Float32Array,
  dim: number,
): void {
  const rows = x.length / dim;
  for (let r = 0; r < rows; r++) out[row0 + r] = dot(x, r * dim, centroids, labels[row0 + r] * dim, dim);
}

/** The ranking of a space held on the host. */
export function clusterRanking(space: ClusterSpace): ClusterRanking {
  const { n, k, labels } = space;
  return { n, k, labels, similarity: centroidSimilarities(space, clusterCentroids(space)) };
}

/** Each cluster's members, most similar to the centroid first (ties by index). */
export function membersByRank(labels: ArrayLike<number>, similarity: ArrayLike<number>, k: number): Uint32Array[] {
  const members: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < labels.length; i++) members[labels[i]].push(i);
  return members.map((m) => Uint32Array.from(m.sort((a, b) => similarity[b] - similarity[a] || a - b)));
}

/** Each image's rank in its cluster by similarity to the centroid (1 = nearest). */
export function ranksInClusters(labels: ArrayLike<number>, similarity: ArrayLike<number>, k: number): Uint32Array {
  const ranks = new Uint32Array(labels.length);
  for (const members of membersByRank(labels, similarity, k)) members.forEach((i, r) => (ranks[i] = r + 1));
  return ranks;
}

/**
 * The nearest non-empty centroid of each row of x [rows, dim] (unit rows): label and cosine similarity.
 * `sizes` marks the empty clusters, which no image can join.
 */
export function nearestCentroids(
  x: Float32Array,
  dim: number,
  centroids: Float32Array,
  sizes: ArrayLike<number>,
): { labels: Uint32Array; similarity: Float32Array } {
  const rows = x.length / dim;
  const labels = new Uint32Array(rows);
  const similarity = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -1;
    let bestScore = -Infinity;
    for (let c = 0; c < sizes.length; c++) {
      if (sizes[c] === 0) continue;
      const s = dot(x, r * dim, centroids, c * dim, dim);
      if (s > bestScore) {
        bestScore = s;
        best = c;
      }
    }
    labels[r] = best;
    similarity[r] = bestScore;
  }
  return { labels, similarity };
}

/** [k, numClasses] counts: images of cluster c with true class y at c * numClasses + y. */
export function clusterClassMatrix(
  labels: ArrayLike<number>,
  trueLabels: ArrayLike<number>,
  k: number,
  numClasses: number,
): Uint32Array {
  if (labels.length !== trueLabels.length)
    throw new RangeError(`clusterClassMatrix: ${labels.length} cluster labels for ${trueLabels.length} true labels`);
  const m = new Uint32Array(k * numClasses);
  for (let i = 0; i < labels.length; i++) m[labels[i] * numClasses + trueLabels[i]]++;
  return m;
}

export interface ClusterClasses {
  /** Each cluster's most frequent class (-1 for an empty cluster; ties: the lower class). */
  majority: Int32Array;
  /** Share of the cluster's images in its majority class (0 for an empty cluster). */
  purity: Float64Array;
  /** Clusters ordered by majority class, then by purity (highest first): the heat map's row order. */
  order: number[];
}

/** Majority class, purity and the heat map's row order of a cluster-vs-class matrix. */
export function clusterClasses(matrix: Uint32Array, k: number, numClasses: number): ClusterClasses {
  const majority = new Int32Array(k).fill(-1);
  const purity = new Float64Array(k);
  for (let c = 0; c < k; c++) {
    let total = 0;
    let best = 0;
    for (let y = 0; y < numClasses; y++) {
      const v = matrix[c * numClasses + y];
      total += v;
      if (v > best) {
        best = v;
        majority[c] = y;
      }
    }
    purity[c] = total > 0 ? best / total : 0;
  }
  const order = Array.from({ length: k }, (_, c) => c).sort((a, b) => {
    const ma = majority[a] < 0 ? numClasses : majority[a];
    const mb = majority[b] < 0 ? numClasses : majority[b];
    return ma - mb || purity[b] - purity[a] || a - b;
  });
  return { majority, purity, order };
}

/**
 * The clusters a gallery shows: the `each` largest, the `each` smallest non-empty, and up to `others`
 * of the rest spread evenly over their size order; in descending size.
 */
export function galleryClusters(sizes: ArrayLike<number>, each: number, others: number): number[] {
  const bySize = Array.from({ length: sizes.length }, (_, c) => c)
    .filter((c) => sizes[c] > 0)
    .sort((a, b) => sizes[b] - sizes[a] || a - b);
  if (bySize.length <= 2 * each + others) return bySize;
  const middle = bySize.slice(each, bySize.length - each);
  const step = middle.length / others;
  const sampled = Array.from({ length: others }, (_, i) => middle[Math.floor(i * step)]);
  return [...bySize.slice(0, each), ...sampled, ...bySize.slice(bySize.length - each)];
}
