/**
 * Property-testing a k-means of your own with odc-webgpu/testing.
 *
 * `kmeans` below is a plain Lloyd's k-means with one deliberate bug: its assignment loop stops one
 * centroid short (`c < k - 1`), so the last cluster never gets a point. Tests on a few hand-picked data
 * sets could easily miss that; `checkClusteringImplementation` generates problems with duplicates, ties,
 * zero rows and clusters of very different sizes, finds a failure, and shrinks it to the smallest case.
 * The fixed version then passes the same checks.
 *
 *   bun examples/property-test-your-kmeans.ts
 *   deno run -A examples/property-test-your-kmeans.ts
 *   node dist/examples/property-test-your-kmeans.js      (after npm run build)
 */
import { pathToFileURL } from 'node:url';
import { checkClusteringImplementation, type ClusteringImplementation } from 'odc-webgpu/testing';

/** Squared L2 distance between row i of x and row c of centroids (both d wide). */
function distance2(x: Float32Array, i: number, centroids: Float32Array, c: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += (x[i * d + j] - centroids[c * d + j]) ** 2;
  return s;
}

/** Lloyd's k-means: seeded distinct rows as initial centroids, `iterations` rounds, then a final assignment. */
function lloyd(
  x: Float32Array,
  n: number,
  d: number,
  k: number,
  seed: number,
  assign: (i: number, centroids: Float32Array) => number,
): { labels: Uint32Array; centroids: Float32Array } {
  // k distinct rows, picked by a small seeded generator (a partial Fisher-Yates shuffle)
  let state = seed >>> 0 || 1;
  const next = (bound: number): number => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % bound;
  };
  const order = Array.from({ length: n }, (_, i) => i);
  for (let c = 0; c < k; c++) {
    const r = c + next(n - c);
    [order[c], order[r]] = [order[r], order[c]];
  }
  const centroids = new Float32Array(k * d);
  for (let c = 0; c < k; c++) centroids.set(x.subarray(order[c] * d, order[c] * d + d), c * d);
  const labels = new Uint32Array(n);
  for (let it = 0; it < 10; it++) {
    for (let i = 0; i < n; i++) labels[i] = assign(i, centroids);
    // plain means; an empty cluster keeps its centroid
    const sums = new Float64Array(k * d);
    const counts = new Float64Array(k);
    for (let i = 0; i < n; i++) {
      counts[labels[i]]++;
      for (let j = 0; j < d; j++) sums[labels[i] * d + j] += x[i * d + j];
    }
    for (let c = 0; c < k; c++)
      if (counts[c] > 0) for (let j = 0; j < d; j++) centroids[c * d + j] = sums[c * d + j] / counts[c];
  }
  for (let i = 0; i < n; i++) labels[i] = assign(i, centroids);
  return { labels, centroids };
}

/** The buggy version: the nearest-centroid loop skips the last centroid. */
export const buggyKMeans: ClusteringImplementation = {
  name: 'buggy k-means',
  cluster: (x, n, d, k, seed) =>
    lloyd(x, n, d, k, seed, (i, centroids) => {
      let best = 0;
      for (let c = 1; c < k - 1; c++)
        if (distance2(x, i, centroids, c, d) < distance2(x, i, centroids, best, d)) best = c; // BUG: k - 1
      return best;
    }),
};

/** The fixed version: every centroid is a candidate; strict < keeps ties on the lowest index. */
export const fixedKMeans: ClusteringImplementation = {
  name: 'fixed k-means',
  cluster: (x, n, d, k, seed) =>
    lloyd(x, n, d, k, seed, (i, centroids) => {
      let best = 0;
      for (let c = 1; c < k; c++) if (distance2(x, i, centroids, c, d) < distance2(x, i, centroids, best, d)) best = c;
      return best;
    }),
};

async function main(): Promise<void> {
  console.log('Checking the buggy k-means (expect a shrunk counterexample):\n');
  try {
    await checkClusteringImplementation(buggyKMeans, { numRuns: 100 });
    console.log('no failure found (unexpected)');
    process.exitCode = 1;
  } catch (err) {
    // fast-check's report: the smallest failing problem ([{n, d, data, k}, seed]) and the invariant it breaks
    console.log(
      (err as Error).message
        .split('\n')
        .filter((line) => !line.startsWith('    at '))
        .join('\n'),
    );
  }
  console.log('\nChecking the fixed k-means:');
  await checkClusteringImplementation(fixedKMeans, { numRuns: 100 });
  console.log('all invariants hold on 100 generated problems');
}

// run when executed (Bun and Deno set import.meta.main; Node compares the script path), not when imported by a test
const isMain =
  (import.meta as { main?: boolean }).main ?? import.meta.url === pathToFileURL(process.argv[1] ?? '').href;
if (isMain) await main();
