/**
 * The property-testing kit (src/testing/, `odc-webgpu/testing`): the harness finds the deliberate bug of
 * examples/property-test-your-kmeans.ts and passes its fix and this project's GPU k-means; each invariant
 * predicate accepts a state built to satisfy it and names the violation in one built to break it.
 */
import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, setupGpu, RUNS } from './helpers.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { kmeans } from '../src/odc/index.ts';
import { memoryFromState } from '../src/odc/memory-records.ts';
import { Rng } from '../src/util/rng.ts';
import { refArgmax, refHistogram, refMeans, refNormalize, refScores, refWeights } from '../src/odc/reference.ts';
import {
  centroidsAreMeans,
  checkClusteringImplementation,
  checkMemoryImplementation,
  clusteringProblem,
  identical,
  labelsAreArgmax,
  labelsInRange,
  lossWeights,
  memoryState,
  memoryUpdateRows,
  movedOnlyToKeptClusters,
  noEmptyCluster,
  unitNormRows,
  type ClusteringImplementation,
  type MemoryImplementation,
  type MemoryState,
} from '../src/testing/index.ts';
import { buggyKMeans, fixedKMeans } from '../examples/property-test-your-kmeans.ts';

before(async () => {
  await setupGpu();
});

test('the harness finds the example k-means bug (the last centroid is never a candidate) and passes the fixed one', async () => {
  await assert.rejects(
    checkClusteringImplementation(buggyKMeans, { numRuns: 100 }),
    /buggy k-means breaks an invariant[\s\S]*Counterexample[\s\S]*5\.5 nearest centroid/,
  );
  await checkClusteringImplementation(fixedKMeans, { numRuns: 100 });
});

test("this project's GPU k-means satisfies the kit's invariants on normalised rows (nearest centroid, range, determinism)", async () => {
  const gpuKMeans: ClusteringImplementation = {
    name: 'GPU k-means',
    async cluster(x, n, d, k, seed) {
      const t = Tensor.from(x, [n, d]);
      const r = kmeans(t, n, d, k, { iterations: 5, seed });
      try {
        return { labels: await r.labels.data(), centroids: await r.centroids.data() };
      } finally {
        for (const tensor of [t, r.labels, r.centroids, r.inertia, r.emptyStats]) tensor.dispose();
      }
    },
  };
  await checkClusteringImplementation(gpuKMeans, {
    normalize: true,
    numRuns: RUNS,
    problems: clusteringProblem({ maxRows: 300, maxDim: 16, maxK: 12 }),
  });
});

test("this project's GPU OdcMemory satisfies the kit's memory invariants (update with repeats, relabel, centroid recompute)", async () => {
  const gpuMemory: MemoryImplementation = {
    name: 'OdcMemory',
    create(s: MemoryState, momentum: number) {
      const { n, d, k, minCluster } = s;
      const memory = memoryFromState(
        {
          format: 'odc-memory',
          version: 1,
          n,
          dim: d,
          k,
          momentum,
          minCluster,
          seed: 1,
          kmeansIterations: 20,
          splitRestarts: 2,
          splitMaxIter: 20,
          rng: new Rng(1).state(),
          lastBatchSize: 0,
        },
        {
          'memory.features': { data: s.features, shape: [n, d] },
          'memory.labels': { data: s.labels, shape: [n] },
          'memory.centroids': { data: s.centroids, shape: [k, d] },
          'memory.weights': { data: new Float32Array(k).fill(1 / k), shape: [k] },
        },
      );
      return {
        update(indices: number[], fresh: Float32Array) {
          const f = Tensor.from(fresh, [indices.length, d]);
          memory.update(indices, f);
          f.dispose();
        },
        recomputeCentroids: () => memory.recomputeCentroids(),
        read: async () => ({
          features: await memory.features.data(),
          labels: await memory.labels.data(),
          centroids: await memory.centroids.data(),
        }),
        dispose: () => memory.dispose(),
      };
    },
  };
  await checkMemoryImplementation(gpuMemory, { numRuns: RUNS });
});

/** A plain CPU memory (ODC-SPEC 2.3, 2.4); `firstWins` plants a bug: a row repeated in a batch keeps its first update. */
function cpuMemory(firstWins: boolean): MemoryImplementation {
  return {
    name: firstWins ? 'CPU memory, first repeat wins' : 'CPU memory',
    create(s: MemoryState, momentum: number) {
      const { d, k } = s;
      const features = Float32Array.from(s.features);
      const labels = Uint32Array.from(s.labels);
      let centroids = Float32Array.from(s.centroids);
      return {
        update(indices: number[], fresh: Float32Array) {
          const rows = indices.map((i, b) => {
            const f = refNormalize(fresh.subarray(b * d, (b + 1) * d));
            return refNormalize(
              Array.from({ length: d }, (_, j) => (1 - momentum) * features[i * d + j] + momentum * f[j]),
            );
          });
          const order = firstWins ? [...indices.keys()].reverse() : [...indices.keys()];
          for (const b of order) {
            features.set(rows[b], indices[b] * d);
            labels[indices[b]] = refArgmax(refScores(rows[b], centroids, k, d));
          }
        },
        recomputeCentroids() {
          centroids = Float32Array.from(refMeans(features, labels, k, d, centroids));
        },
        read: () => ({ features, labels, centroids }),
      };
    },
  };
}

test('the memory harness passes a plain CPU memory and finds a planted repeat bug (first occurrence wins)', async () => {
  await checkMemoryImplementation(cpuMemory(false), { numRuns: 40 });
  await assert.rejects(
    checkMemoryImplementation(cpuMemory(true), { numRuns: 100 }),
    /CPU memory, first repeat wins breaks an invariant[\s\S]*5\.4 memory update: row \d+/,
  );
});

test('each invariant holds on a consistent memory state and names what breaks in a damaged one', () => {
  fc.assert(
    fc.property(memoryState({ maxRows: 200, maxDim: 8, maxK: 10 }), (s) => {
      const { n, d, k, features, labels, centroids } = s;
      // consistent: hold
      assert.equal(labelsInRange(labels, k, n), null);
      assert.equal(unitNormRows(features, d), null);
      assert.equal(centroidsAreMeans(features, labels, centroids, k, d), null);
      assert.equal(identical('labels', labels, Uint32Array.from(labels)), null);
      const hist = refHistogram(labels, k);
      assert.equal(lossWeights(Float32Array.from(refWeights(hist)), hist), null);
      // damaged: each names its invariant
      const bad = Uint32Array.from(labels);
      bad[n - 1] = k;
      assert.match(labelsInRange(bad, k) ?? '', /^5\.1 .*row \d+ is \d+/);
      const scaled = Float32Array.from(features, (v, i) => (i < d ? v * 1.5 : v));
      if (scaled.subarray(0, d).some((v) => v !== 0)) assert.match(unitNormRows(scaled, d) ?? '', /^5\.2 .*row 0/);
      const moved = Float32Array.from(centroids);
      moved[labels[0] * d] += 0.5;
      assert.match(centroidsAreMeans(features, labels, moved, k, d) ?? '', /^5\.3 .*cluster/);
      if (hist.some((h) => h === 0)) assert.match(noEmptyCluster(labels, k) ?? '', /^5\.8 /);
      else assert.equal(noEmptyCluster(labels, k), null);
      const uniform = new Float32Array(k).fill(1 / k);
      if (new Set(hist).size > 1) assert.match(lossWeights(uniform, hist) ?? '', /^5\.12 /);
      const different = Uint32Array.from(labels, (l, i) => (i === 0 ? (l + 1) % k : l));
      assert.match(identical('labels', labels, different) ?? '', /^determinism: labels\[0\]/);
    }),
    { numRuns: 30 },
  );
});

test('memory update, relabel and move predicates against a float64 replay of ODC-SPEC 2.3 and 2.5', () => {
  fc.assert(
    fc.property(memoryState({ maxRows: 120, maxDim: 8, maxK: 8 }), fc.nat(), (s, pick) => {
      const { n, d, k, features, labels, centroids } = s;
      const batch = [pick % n, (pick * 7) % n, pick % n]; // a repeat: the last occurrence wins
      const fresh = Float32Array.from({ length: batch.length * d }, (_, i) => Math.sin(i + pick) + 0.1);
      const after = { features: Float32Array.from(features), labels: Uint32Array.from(labels) };
      for (let b = 0; b < batch.length; b++) {
        const i = batch[b];
        const f = fresh.subarray(b * d, (b + 1) * d);
        const fn = Math.hypot(...f) + 1e-10;
        const mix = Array.from({ length: d }, (_, j) => 0.5 * features[i * d + j] + (0.5 * f[j]) / fn);
        const mn = Math.hypot(...mix) + 1e-10;
        after.features.set(
          mix.map((v) => v / mn),
          i * d,
        );
        let best = 0;
        const score = (c: number) => mix.reduce((a, v, j) => a + (v / mn) * centroids[c * d + j], 0);
        for (let c = 1; c < k; c++) if (score(c) > score(best)) best = c;
        after.labels[i] = best;
      }
      const before = { features, labels };
      assert.equal(memoryUpdateRows(before, after, batch, fresh, 0.5, d), null);
      assert.equal(labelsAreArgmax(after.features, after.labels, centroids, k, d, { rows: batch }), null);
      const outside = batch.includes(0) ? null : 0;
      if (outside !== null) {
        const touched = {
          features: after.features,
          labels: Uint32Array.from(after.labels, (l, i) => (i === outside ? (l + 1) % k : l)),
        };
        if (k > 1) assert.match(memoryUpdateRows(before, touched, batch, fresh, 0.5, d) ?? '', /outside the batch/);
      }
      // moves: rows of small clusters to their best non-small cluster; a move into a small cluster is named
      const hist = refHistogram(labels, k);
      const small = (c: number) => hist[c] < s.minCluster;
      const kept = Array.from({ length: k }, (_, c) => c).filter((c) => !small(c));
      if (kept.length === 0) return;
      const movedLabels = Uint32Array.from(labels, (l) => (small(l) ? kept[0] : l));
      assert.equal(movedOnlyToKeptClusters(labels, movedLabels, k, s.minCluster), null);
      const smallOnes = Array.from({ length: k }, (_, c) => c).filter(small);
      const victim = labels.findIndex((l) => small(l));
      if (victim >= 0 && smallOnes.length > 0) {
        const wrong = Uint32Array.from(movedLabels);
        wrong[victim] = smallOnes[smallOnes.length - 1];
        assert.match(movedOnlyToKeptClusters(labels, wrong, k, s.minCluster) ?? '', /^5\.10 /);
      }
    }),
    { numRuns: 40 },
  );
});
