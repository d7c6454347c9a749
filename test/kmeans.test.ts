/**
 * GPU clustering (src/odc/kmeans.ts, src/odc/split.ts) against the plain-TS reference: k-means never
 * leaves an empty cluster after its repair step, its inertia does not increase, final labels are the
 * nearest centroids, runs are reproducible; the 2-means splitter; blob recovery (NMI); NMI itself.
 */
import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, setupGpu, RUNS } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { kmeans, distinctIndices } from '../src/odc/kmeans.ts';
import { nearest, compactIndices, nearestChoice } from '../src/ops/clustering.ts';
import { twoMeansSplit } from '../src/odc/split.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { nmi } from '../src/metrics/nmi.ts';
import { refArgmax, refDistances, refInertia, refNormalize } from '../src/odc/reference.ts';

before(async () => {
  await setupGpu();
});

const TIE = 1e-5;

/** n unit rows; with `distinct` > 0 only that many different rows (duplicates force empty clusters). */
function data(rng: Rng, n: number, d: number, distinct = 0): Float32Array {
  const base = distinct > 0 ? distinct : n;
  const rows = Array.from({ length: base }, () => refNormalize(Array.from({ length: d }, () => rng.normal())));
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) out.set(rows[distinct > 0 ? rng.int(base) : i], i * d);
  return out;
}

test('k-means: repairs every empty cluster, inertia never increases, final labels are the nearest centroids, reproducible', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 50, max: 3000 }),
        d: fc.integer({ min: 2, max: 32 }),
        k: fc.integer({ min: 2, max: 40 }),
        seed: fc.nat(),
        dup: fc.boolean(),
        iters: fc.integer({ min: 1, max: 20 }),
      }),
      async ({ n, d, k: k0, seed, dup, iters }) => {
        const k = Math.min(k0, n);
        const rng = new Rng(seed);
        const host = data(rng, n, d, dup ? Math.max(2, Math.floor(k / 2)) : 0);
        const x = Tensor.from(host, [n, d]);
        const r = kmeans(x, n, d, k, { iterations: iters, seed });
        const inertia = await r.inertia.data();
        const empties = await r.emptyStats.data();
        const labels = await r.labels.data();
        const cents = await r.centroids.data();
        for (let t = 0; t < iters; t++)
          assert.equal(empties[2 * t + 1], 0, `iteration ${t} left ${empties[2 * t + 1]} empty cluster(s)`);
        for (let t = 0; t + 1 < inertia.length; t++) {
          // Lloyd never raises inertia; the faiss split perturbation of a repair may raise each point's
          // squared distance by at most (1/1024)^2 ||c||^2 < 1e-6; plus f32 rounding of ||x||^2 - 2 x.c + ||c||^2
          const tol = 1e-5 * inertia[t] + 2e-6 * n;
          assert.ok(inertia[t + 1] <= inertia[t] + tol, `inertia rose at ${t}: ${inertia[t]} -> ${inertia[t + 1]}`);
        }
        const refI = refInertia(host, labels, cents, d);
        assert.ok(
          Math.abs(inertia[iters] - refI) <= 1e-4 * refI + 1e-5 * n,
          `final inertia ${inertia[iters]} vs reference ${refI}`,
        );
        for (let i = 0; i < n; i++) {
          const dist = refDistances(host, i, cents, k, d);
          const best = refArgmax(dist.map((v) => -v));
          if (labels[i] !== best)
            assert.ok(
              dist[labels[i]] <= dist[best] + TIE,
              `sample ${i}: label ${labels[i]} (${dist[labels[i]]}) vs nearest ${best} (${dist[best]})`,
            );
        }
        const again = kmeans(x, n, d, k, { iterations: iters, seed });
        assert.deepEqual(await again.labels.data(), labels, 'same seed, same labels');
        assert.deepEqual(
          new Uint32Array((await again.centroids.data()).buffer),
          new Uint32Array(cents.buffer),
          'same seed, bit-identical centroids',
        );
        for (const t of [x, ...Object.values(r), ...Object.values(again)]) t.dispose();
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('nearest (fused GEMM + argmax; tiled and register variants, any centroid split) = reference argmax, ties to the lowest index', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 300 }),
      fc.nat(),
      fc.constantFrom<'tiled' | 'regs'>('tiled', 'regs'),
      fc.integer({ min: 1, max: 9 }),
      async (m, d, k, seed, variant, splits) => {
        nearestChoice.force({ body: variant, splits });
        const rng = new Rng(seed);
        const x = new Float32Array(m * d).map(() => rng.normal());
        const c = new Float32Array(k * d).map(() => rng.normal());
        if (k > 2) c.copyWithin(2 * d, 0, d); // centroid 2 duplicates centroid 0: exact tie, 0 must win
        const xt = Tensor.from(x, [m, d]);
        const ct = Tensor.from(c, [k, d]);
        const lab = Tensor.empty([m], 'u32');
        const sc = Tensor.empty([m], 'f32');
        nearest({ x: xt, n: m, d, centroids: ct, k, labels: lab, scores: sc });
        const labels = await lab.data();
        const scores = await sc.data();
        for (let i = 0; i < m; i++) {
          const s = Array.from({ length: k }, (_, j) => {
            let v = 0;
            for (let q = 0; q < d; q++) v += x[i * d + q] * c[j * d + q];
            return v;
          });
          const best = refArgmax(s);
          if (k > 2) assert.notEqual(labels[i], 2, 'exact tie with centroid 0 goes to the lower index');
          if (labels[i] !== best) assert.ok(s[labels[i]] >= s[best] - TIE * (1 + Math.abs(s[best])), `row ${i}`);
          assert.ok(Math.abs(scores[i] - s[labels[i]]) <= 1e-4 * (1 + Math.abs(s[labels[i]])), `score of row ${i}`);
        }
        nearestChoice.force(null);
        for (const t of [xt, ct, lab, sc]) t.dispose();
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('2-means split: both sides non-empty, separates two blobs exactly, random-half fallback, ordered compaction', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 800 }),
      fc.integer({ min: 2, max: 16 }),
      fc.nat(),
      fc.constantFrom('random', 'identical', 'blobs'),
      async (n, d, seed, mode) => {
        const rng = new Rng(seed);
        const total = n + 37;
        const host = mode === 'identical' ? data(rng, total, d, 1) : data(rng, total, d);
        const labelsHost = new Uint32Array(total);
        const members = distinctIndices(rng, total, n).sort((p, q) => p - q);
        for (const i of members) labelsHost[i] = 1;
        // blobs: members split into two tight groups around two far-apart directions
        const group = members.map((_, j) => (j === 0 ? 0 : j === 1 ? 1 : rng.int(2)));
        if (mode === 'blobs') {
          const centers = [
            refNormalize(Array.from({ length: d }, (_, j) => (j === 0 ? 1 : 0.05 * rng.normal()))),
            refNormalize(Array.from({ length: d }, (_, j) => (j === 1 ? 1 : 0.05 * rng.normal()))),
          ];
          members.forEach((i, j) =>
            host.set(refNormalize(Array.from(centers[group[j]], (v) => v + 0.01 * rng.normal())), i * d),
          );
        }
        const x = Tensor.from(host, [total, d]);
        const lab = Tensor.from(labelsHost, [total], 'u32');
        const idx = compactIndices(lab, total, 2, n, { value: 1 });
        assert.deepEqual([...(await idx.data())], [...members], 'compaction keeps ascending order');
        const { side, count1 } = twoMeansSplit(x, d, idx, n, rng, { restarts: 2, maxIter: 20 });
        const s = await side.data();
        const c1 = (await count1.data())[0];
        assert.equal(
          c1,
          s.reduce((a, v) => a + v, 0),
        );
        assert.ok(c1 >= 1 && c1 <= n - 1, `sides ${n - c1} / ${c1}`);
        if (mode === 'identical') assert.equal(c1, n - Math.floor(n / 2), 'identical points: random-half fallback');
        if (mode === 'blobs') assert.ok(nmi(s, group) > 1 - 1e-9, 'the two blobs are separated');
        for (const t of [x, lab, idx, side, count1]) t.dispose();
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

/** k well-separated blobs of `per` points on the unit sphere (non-negative, like ReLU features). */
function blobs(rng: Rng, k: number, per: number, d: number): { x: Float32Array; truth: number[] } {
  const centers: Float64Array[] = [];
  while (centers.length < k) {
    const c = refNormalize(Array.from({ length: d }, () => Math.abs(rng.normal())));
    if (centers.every((o) => o.reduce((a, v, j) => a + (v - c[j]) ** 2, 0) > 0.4)) centers.push(c);
  }
  const x = new Float32Array(k * per * d);
  const truth: number[] = [];
  for (let b = 0; b < k; b++) {
    for (let q = 0; q < per; q++) {
      const i = b * per + q;
      const scale = 1 + 4 * rng.uniform(); // raw rows have different norms; the direction is the blob's
      const v = Array.from({ length: d }, (_, j) => Math.max(0, centers[b][j] + 0.004 * rng.normal()) * scale);
      x.set(v, i * d);
      truth.push(b);
    }
  }
  return { x, truth };
}

test('GPU k-means (k-means++ seeding) recovers well-separated blobs: NMI >= 0.99; so does OdcMemory.init with it', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 8 }),
      fc.integer({ min: 40, max: 120 }),
      fc.integer({ min: 8, max: 32 }),
      fc.nat(),
      async (k, per, d, seed) => {
        const rng = new Rng(seed);
        const { x, truth } = blobs(rng, k, per, d);
        const n = k * per;
        const normalised = new Float32Array(n * d);
        for (let i = 0; i < n; i++) normalised.set(refNormalize(x.subarray(i * d, (i + 1) * d)), i * d);
        const xt = Tensor.from(normalised, [n, d]);
        const r = kmeans(xt, n, d, k, { iterations: 20, seed, init: 'kmeans++' });
        const score = nmi(await r.labels.data(), truth);
        assert.ok(score >= 0.99, `k-means NMI ${score.toFixed(4)} (k ${k}, ${per} per blob, d ${d})`);
        const raw = Tensor.from(x, [n, d]); // unnormalised rows: init normalises them
        const memory = OdcMemory.create({
          n,
          dim: d,
          k,
          minCluster: Math.floor(per / 4),
          seed,
          kmeansInit: 'kmeans++',
        });
        await memory.init(raw);
        const s2 = nmi(await memory.labels.data(), truth);
        assert.ok(s2 >= 0.99, `init NMI ${s2.toFixed(4)}`);
        for (const t of [xt, raw, memory, ...Object.values(r)]) t.dispose();
      },
    ),
    { numRuns: Math.max(3, Math.ceil(RUNS / 2)), includeErrorInReport: true },
  );
});

test('nmi: 1 for a renamed partition, ~0 for independent ones, symmetric', () => {
  const a = [0, 0, 1, 1, 2, 2, 2];
  assert.ok(Math.abs(nmi(a, [5, 5, 3, 3, 9, 9, 9]) - 1) < 1e-12);
  assert.equal(nmi([0, 0, 0], [1, 1, 1]), 1);
  const rng = new Rng(3);
  const u = Array.from({ length: 20000 }, () => rng.int(4));
  const v = Array.from({ length: 20000 }, () => rng.int(5));
  assert.ok(nmi(u, v) < 0.002);
  const b = [0, 1, 1, 1, 2, 0, 2];
  assert.ok(Math.abs(nmi(a, b) - nmi(b, a)) < 1e-12);
  // a hand-computed case: A = [0,0,1,1], B = [0,0,0,1]: I = 1.5 ln2 - 0.75 ln3, H(A) = ln 2, H(B) = 2 ln2 - 0.75 ln3
  const mi = 1.5 * Math.log(2) - 0.75 * Math.log(3);
  const expected = mi / ((Math.log(2) + 2 * Math.log(2) - 0.75 * Math.log(3)) / 2);
  assert.ok(Math.abs(nmi([0, 0, 1, 1], [0, 0, 0, 1]) - expected) < 1e-12);
  assert.throws(() => nmi([1], [1, 2]), /different lengths/);
});

test('k-means rejects bad sizes before any GPU work', () => {
  const x = Tensor.from(new Float32Array(20), [10, 2]);
  const before = gpu().stats.dispatches;
  assert.throws(() => kmeans(x, 10, 2, 11), /k = 11 clusters need at least k points, got n = 10/);
  assert.throws(() => kmeans(x, 10, 2, 0), /k must be a positive integer/);
  assert.throws(() => kmeans(x, 20, 2, 3), /hold fewer than n\*d/);
  assert.equal(gpu().stats.dispatches, before);
  x.dispose();
});
