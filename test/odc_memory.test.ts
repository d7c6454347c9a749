/**
 * ODC memory (src/odc/memory.ts) against the plain-TS reference (src/odc/reference.ts): the invariants
 * of ODC-SPEC section 5 as fast-check properties on small random configurations, plus checkpoint
 * round-trips and parameter errors.
 */
import { test, before } from 'node:test';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, assertClose, setupGpu, RUNS } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { tidy } from '../src/tensor/scope.ts';
import { scale } from '../src/ops/elementwise.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { Rng } from '../src/util/rng.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { exportMemoryState, memoryFromState, memoryMeta } from '../src/odc/memory-records.ts';
import { handleSmallClusters } from '../src/odc/small-clusters.ts';
import { CheckpointError, decodeRecords, encodeRecords, readRecords, writeRecords } from '../src/odc/checkpoint-io.ts';
import {
  RefMemory,
  refArgmax,
  refHistogram,
  refMeans,
  refNormalize,
  refScores,
  refWeightedCrossEntropy,
} from '../src/odc/reference.ts';
import {
  centroidsAreMeans,
  expectHolds,
  labelsAreArgmax,
  labelsInRange,
  lossWeights,
  memoryStateFrom,
  memoryUpdateRows,
  movedOnlyToKeptClusters,
  noEmptyCluster,
  skewedLabels,
  unitNormRows,
  unitRows,
  type MemoryState,
} from '../src/testing/index.ts';

before(async () => {
  await setupGpu();
});

const TIE = 1e-5; // score margins below this are near-ties: f32 vs f64 may legitimately pick either

type State = MemoryState;

/** A memory holding exactly the given state (through the checkpoint path). */
function memoryFrom(s: State, momentum = 0.5, seed = 1): OdcMemory {
  const weights = new Float32Array(s.k).fill(1 / s.k);
  return memoryFromState(
    {
      format: 'odc-memory',
      version: 1,
      n: s.n,
      dim: s.d,
      k: s.k,
      momentum,
      minCluster: s.minCluster,
      seed,
      kmeansIterations: 20,
      splitRestarts: 2,
      splitMaxIter: 20,
      rng: new Rng(seed).state(),
      lastBatchSize: 0,
    },
    {
      'memory.features': { data: s.features, shape: [s.n, s.d] },
      'memory.labels': { data: s.labels, shape: [s.n] },
      'memory.centroids': { data: s.centroids, shape: [s.k, s.d] },
      'memory.weights': { data: weights, shape: [s.k] },
    },
  );
}

/** Random labels (or the given ones); centroids = means of members (empty ones: a random unit row). */
function randomState(rng: Rng, n: number, d: number, k: number, minCluster: number, labels?: Uint32Array): State {
  return memoryStateFrom(rng.nextU32(), n, d, k, minCluster, labels);
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function rowNorm(a: ArrayLike<number>, i: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[i * d + j] * a[i * d + j];
  return Math.sqrt(s);
}

const sizeArb = fc.record({
  n: fc.integer({ min: 50, max: 3000 }),
  d: fc.integer({ min: 2, max: 32 }),
  k: fc.integer({ min: 2, max: 40 }),
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
});

test('init: labels in range, no empty cluster, unit rows, centroids = member means (invariants 1-3)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 50, max: 600 }),
        d: fc.integer({ min: 2, max: 16 }),
        k: fc.integer({ min: 2, max: 12 }),
        seed: fc.nat(),
        frac: fc.double({ min: 0, max: 0.4, noNaN: true }),
      }),
      async ({ n, d, k, seed, frac }) => {
        const minCluster = Math.max(1, Math.floor((frac * n) / k));
        const rng = new Rng(seed);
        // raw neck outputs: post-ReLU, unnormalised, a few all-zero rows
        const raw = new Float32Array(n * d);
        for (let i = 0; i < n; i++)
          if (rng.uniform() > 0.03) for (let j = 0; j < d; j++) raw[i * d + j] = Math.max(0, 3 * rng.normal());
        const x = Tensor.from(raw, [n, d]);
        const memory = OdcMemory.create({ n, dim: d, k, minCluster, seed });
        const report = await memory.init(x);
        const feats = await memory.features.data();
        const labels = await memory.labels.data();
        const cents = await memory.centroids.data();
        // 1-3 through the kit's predicates (src/testing), plus what only this implementation promises
        expectHolds(
          labelsInRange(labels, k, n),
          noEmptyCluster(labels, k),
          unitNormRows(feats, d, { raw }),
          centroidsAreMeans(feats, labels, cents, k, d),
        );
        assert.deepEqual((await memory.stats()).total, n);
        for (let i = 0; i < n; i++) {
          const row = raw.subarray(i * d, (i + 1) * d);
          if (row.some((v) => v !== 0))
            assertClose(feats.subarray(i * d, (i + 1) * d), refNormalize(row), { rtol: 1e-6, atol: 1e-7 }, `row ${i}`);
        }
        for (let c = 0; c < k; c++) assert.ok(rowNorm(cents, c, d) <= 1 + 1e-6, `||centroid ${c}|| <= 1`);
        assert.ok(
          cents.every((v) => v >= 0),
          'centroids non-negative',
        );
        assert.ok(
          report.emptyAfter.every((e) => e === 0),
          'k-means repaired every empty cluster',
        );
        memory.dispose();
        x.dispose();
      },
    ),
    { numRuns: Math.max(3, Math.ceil(RUNS / 2)) },
  );
});

test('update: momentum rows, untouched rows bit-identical, labels = argmax vs the centroids, change count (invariants 4-6)', async () => {
  await fc.assert(
    fc.asyncProperty(
      sizeArb,
      fc.integer({ min: 1, max: 64 }),
      fc.boolean(),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.boolean(),
      async ({ n, d, k: k0, seed }, b, dupes, m0, halfMomentum) => {
        const k = Math.min(k0, n);
        const momentum = halfMomentum ? 0.5 : Math.fround(m0);
        const rng = new Rng(seed);
        const s = randomState(rng, n, d, k, 1);
        const memory = memoryFrom(s, momentum);
        const range = dupes ? Math.max(1, Math.floor(b / 3)) : n;
        const idx = Array.from({ length: b }, () => rng.int(Math.min(range, n)));
        const fresh = new Float32Array(b * d).map(() => rng.normal());
        if (b > 2) fresh.fill(0, 0, d); // an all-zero fresh feature
        const fT = Tensor.from(fresh, [b, d]);
        const before = await memory.labelsOf(idx).data();
        assert.deepEqual(
          [...before],
          idx.map((i) => s.labels[i]),
          'labelsOf = labels before the update',
        );
        memory.update(idx, fT);
        const feats = await memory.features.data();
        const labels = await memory.labels.data();
        const changed = (await memory.changeCount.data())[0];
        expectHolds(
          memoryUpdateRows(s, { features: feats, labels }, idx, fresh, momentum, d),
          labelsAreArgmax(feats, labels, s.centroids, k, d, { rows: idx, tieTolerance: TIE }),
        );
        const ref = new RefMemory(
          n,
          d,
          k,
          Float64Array.from(s.features),
          [...s.labels],
          Float64Array.from(s.centroids),
        );
        const r = ref.update(idx, fresh, momentum);
        const last = new Map<number, number>();
        idx.forEach((i, pos) => last.set(i, pos));
        for (const [i, pos] of last) {
          // f32 error of the re-normalised mix grows as 1/||mix|| (old and fresh nearly opposite)
          const atol = 2e-6 / Math.max(r.mixNorms[pos], 1e-6);
          if (atol < 0.1)
            assertClose(feats.subarray(i * d, (i + 1) * d), r.rows[pos], { rtol: 1e-5, atol }, `row ${i}`);
          // unit norm unless the mix is (nearly) zero, where the spec's +1e-10 in the denominator shows
          if (r.mixNorms[pos] > 1e-4) assert.ok(Math.abs(rowNorm(feats, i, d) - 1) < 2e-6, `row ${i} unit norm`);
          // the stored label is the argmax of the stored row against the centroids of that moment
          const scores = refScores(feats.subarray(i * d, (i + 1) * d), s.centroids, k, d);
          const best = refArgmax(scores);
          if (labels[i] !== best)
            assert.ok(scores[labels[i]] >= scores[best] - TIE, `label of ${i}: ${labels[i]} vs ${best}`);
        }
        const fb = bits(feats);
        const sb = bits(s.features);
        for (let i = 0; i < n; i++) {
          if (last.has(i)) continue;
          assert.equal(labels[i], s.labels[i], `label ${i} outside the batch`);
          for (let j = 0; j < d; j++)
            if (fb[i * d + j] !== sb[i * d + j]) assert.fail(`row ${i} outside the batch changed`);
        }
        const ties = r.margins.filter((mg, q) => mg <= TIE || r.mixNorms[q] < 1e-2).length;
        assert.ok(Math.abs(changed - r.changed) <= ties, `change count ${changed} vs ${r.changed}`);
        // the logged change ratio is changeCount / lastBatchSize: a fraction of this batch
        assert.equal(memory.lastBatchSize, b, 'change-ratio denominator');
        const ratio = changed / memory.lastBatchSize;
        assert.ok(ratio >= 0 && ratio <= 1);
        assert.equal((await memory.stats()).total, n, 'histogram sums to N');
        memory.dispose();
        fT.dispose();
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('full centroid recompute: plain means, empty clusters keep theirs, deterministic (invariant 7)', async () => {
  await fc.assert(
    fc.asyncProperty(sizeArb, fc.integer({ min: 1, max: 40 }), async ({ n, d, k: k0, seed }, used) => {
      const k = Math.min(k0, n);
      const rng = new Rng(seed);
      const labels = Uint32Array.from(
        { length: n },
        () => (rng.int(Math.min(used, k)) * Math.max(1, Math.floor(k / Math.min(used, k)))) % k,
      );
      const s = randomState(rng, n, d, k, 1, labels);
      s.centroids = unitRows(rng, k, d, { signed: true }); // stale centroids
      const memory = memoryFrom(s);
      memory.recomputeCentroids();
      const c1 = await memory.centroids.data();
      memory.recomputeCentroids();
      const c2 = await memory.centroids.data();
      assert.deepEqual(bits(c1), bits(c2), 'bit-identical on recompute');
      const hist = refHistogram(labels, k);
      const expected = refMeans(s.features, labels, k, d, s.centroids);
      assertClose(c1, expected, { rtol: 1e-5, atol: 1e-6 }, 'means');
      expectHolds(centroidsAreMeans(s.features, labels, c1, k, d, { previous: s.centroids }));
      for (let c = 0; c < k; c++) {
        if (hist[c] > 0) continue;
        for (let j = 0; j < d; j++)
          assert.equal(bits(c1)[c * d + j], bits(s.centroids)[c * d + j], `empty cluster ${c} kept its centroid`);
      }
      memory.dispose();
    }),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('small-cluster handling: no empty cluster, moves only to non-small clusters, largest split, centroids refreshed (invariants 8-11)', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        n: fc.integer({ min: 60, max: 1500 }),
        d: fc.integer({ min: 2, max: 16 }),
        k: fc.integer({ min: 3, max: 20 }),
        seed: fc.nat(),
        frac: fc.double({ min: 0.05, max: 0.5, noNaN: true }),
      }),
      async ({ n, d, k, seed, frac }) => {
        const minCluster = Math.max(2, Math.floor((frac * n) / k));
        const rng = new Rng(seed);
        const s = randomState(rng, n, d, k, minCluster, skewedLabels(rng, n, k, minCluster));
        const memory = memoryFrom(s, 0.5, seed);
        const report = await handleSmallClusters(memory, { trace: true });
        const labels = await memory.labels.data();
        const cents = await memory.centroids.data();
        const hist0 = refHistogram(s.labels, k);
        const small = hist0.flatMap((h, c) => (h < minCluster ? [c] : []));
        assert.deepEqual(report.small, small, 'small clusters');
        const isSmall = new Set(small);
        const after = report.labelsAfterMoves ?? new Uint32Array(0);
        const ref = new RefMemory(
          n,
          d,
          k,
          Float64Array.from(s.features),
          [...s.labels],
          Float64Array.from(s.centroids),
        );
        for (let i = 0; i < n; i++) {
          if (!isSmall.has(s.labels[i])) {
            assert.equal(after[i], s.labels[i], `sample ${i} of a kept cluster was not moved`);
            continue;
          }
          assert.ok(!isSmall.has(after[i]), `sample ${i} moved to small cluster ${after[i]}`); // 10
          const best = ref.nearestAllowed(i, (c) => !isSmall.has(c));
          if (best.margin > TIE) assert.equal(after[i], best.label, `sample ${i} goes to its nearest allowed centroid`);
          else assert.ok(best.scores[after[i]] >= best.scores[best.label] - TIE);
        }
        // replay the splits: each split the largest cluster of that moment (10), sizes consistent
        const h = refHistogram(after, k);
        assert.equal(report.splits.length, small.length);
        report.splits.forEach((sp, j) => {
          assert.equal(sp.dead, small[j]);
          assert.equal(h[sp.dead], 0, 'recycled id was empty');
          assert.equal(sp.big, refArgmax(h), `split ${j} took the largest cluster`);
          assert.equal(sp.bigSize, h[sp.big]);
          assert.ok(sp.moved >= 1 && sp.moved <= sp.bigSize - 1, 'both halves non-empty');
          h[sp.dead] = sp.moved;
          h[sp.big] -= sp.moved;
        });
        const hist = refHistogram(labels, k);
        assert.deepEqual(hist, h, 'histogram matches the replayed splits');
        assert.equal(
          hist.reduce((a, b) => a + b, 0),
          n,
        ); // 11
        expectHolds(noEmptyCluster(labels, k), movedOnlyToKeptClusters(s.labels, after, k, minCluster)); // 8, 10, 11
        // labels only flow from a split cluster to its recycled id
        const children = new Map<number, number[]>();
        for (const sp of report.splits) children.set(sp.big, [...(children.get(sp.big) ?? []), sp.dead]);
        const reach = (c: number, seen = new Set<number>()): Set<number> => {
          seen.add(c);
          for (const e of children.get(c) ?? []) if (!seen.has(e)) reach(e, seen);
          return seen;
        };
        for (let i = 0; i < n; i++)
          assert.ok(reach(after[i]).has(labels[i]), `sample ${i}: ${after[i]} -> ${labels[i]}`);
        // 9: split and recycled clusters hold the mean of their members; other centroids untouched
        const touched = new Set(report.splits.flatMap((sp) => [sp.big, sp.dead]));
        const means = refMeans(s.features, labels, k, d, s.centroids);
        for (let c = 0; c < k; c++) {
          const got = cents.subarray(c * d, (c + 1) * d);
          if (touched.has(c))
            assertClose(got, means.subarray(c * d, (c + 1) * d), { rtol: 1e-5, atol: 1e-6 }, `centroid ${c}`);
          else
            assert.deepEqual(
              bits(Float32Array.from(got)),
              bits(s.centroids.slice(c * d, (c + 1) * d)),
              `centroid ${c} untouched`,
            );
        }
        memory.dispose();
      },
    ),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('loss weights: ~ (n_c + 1e-5)^-p, sum 1, monotone; weighted CE invariant to scaling w (invariants 12, 13)', async () => {
  await fc.assert(
    fc.asyncProperty(sizeArb, fc.double({ min: 0, max: 2, noNaN: true }), async ({ n, d, k: k0, seed }, power) => {
      const k = Math.min(k0, n);
      const rng = new Rng(seed);
      const s = randomState(
        rng,
        n,
        d,
        k,
        1,
        Uint32Array.from({ length: n }, () => Math.min(k - 1, Math.floor(k * rng.uniform() ** 2))),
      );
      const memory = memoryFrom(s);
      const p = Math.fround(power);
      memory.updateWeights(p);
      const w = await memory.weights.data();
      const hist = refHistogram(s.labels, k);
      expectHolds(lossWeights(w, hist, p));
      // 13: the loss (GPU op and reference) does not change when w is scaled
      const b = Math.min(n, 16);
      const idx = Array.from({ length: b }, () => rng.int(n));
      const logits = new Float32Array(b * k).map(() => 2 * rng.normal());
      const y = memory.labelsOf(idx);
      const lt = Tensor.from(logits, [b, k]);
      const [l1, l2] = tidy(() => [
        weightedCrossEntropy(lt, y, memory.weights),
        weightedCrossEntropy(lt, y, scale(memory.weights, 37.5)),
      ]);
      const g1 = (await l1.data())[0];
      const g2 = (await l2.data())[0];
      const yl = idx.map((i) => s.labels[i]);
      const r1 = refWeightedCrossEntropy(logits, yl, w, k);
      const r2 = refWeightedCrossEntropy(
        logits,
        yl,
        Array.from(w, (v) => v * 37.5),
        k,
      );
      assert.ok(Math.abs(r1 - r2) <= 1e-12 * Math.abs(r1) + 1e-12, 'reference loss invariant');
      assert.ok(Math.abs(g1 - g2) <= 2e-6 * Math.abs(g1) + 1e-6, `GPU loss invariant ${g1} ${g2}`);
      assert.ok(Math.abs(g1 - r1) <= 1e-4 * Math.abs(r1) + 1e-5, `GPU loss ${g1} vs reference ${r1}`);
      for (const t of [y, lt, l1, l2]) t.dispose();
      memory.dispose();
    }),
    { numRuns: RUNS, includeErrorInReport: true },
  );
});

test('checkpoint records written and read back (writeRecords/readRecords) restore bit-exactly and the restored memory continues identically', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-mem-'));
  try {
    await fc.assert(
      fc.asyncProperty(sizeArb, async ({ n, d, k: k0, seed }) => {
        const k = Math.min(k0, n);
        const rng = new Rng(seed);
        const s = randomState(rng, n, d, k, 1);
        const a = memoryFrom(s, 0.5, seed);
        a.updateWeights();
        const path = join(dir, `m${seed}.odc`);
        const saved = await exportMemoryState(a);
        await writeRecords(path, saved.records, saved.meta);
        const file = await readRecords(path);
        const b = memoryFromState(file.meta, file.records);
        for (const name of ['features', 'labels', 'centroids', 'weights'] as const) {
          const x = await a[name].data();
          const y = await b[name].data();
          assert.deepEqual(new Uint32Array(y.buffer), new Uint32Array(x.buffer), name);
        }
        assert.deepEqual(memoryMeta(b), memoryMeta(a));
        const idx = Array.from({ length: 8 }, () => rng.int(n));
        const f = Tensor.from(
          new Float32Array(8 * d).map(() => rng.normal()),
          [8, d],
        );
        for (const m of [a, b]) {
          m.update(idx, f);
          m.recomputeCentroids();
        }
        assert.deepEqual(
          new Uint32Array((await b.features.data()).buffer),
          new Uint32Array((await a.features.data()).buffer),
        );
        assert.deepEqual(await b.labels.data(), await a.labels.data());
        assert.deepEqual(
          new Uint32Array((await b.centroids.data()).buffer),
          new Uint32Array((await a.centroids.data()).buffer),
        );
        for (const t of [a, b, f]) t.dispose();
      }),
      { numRuns: Math.max(2, Math.ceil(RUNS / 3)), includeErrorInReport: true },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('memoryFromState refuses a foreign, incomplete or mistyped state with an error naming the cause', async () => {
  const base = gpu().pool.liveCount;
  const a = memoryFrom(randomState(new Rng(3), 30, 4, 3, 1));
  const { meta, records } = await exportMemoryState(a);
  a.dispose();
  assert.throws(
    () => memoryFromState({ ...meta, format: 'odc-train' }, records),
    /memoryFromState: metadata is not an odc-memory v1 state/,
  );
  assert.throws(
    () => memoryFromState({ ...meta, rng: undefined }, records),
    /memoryFromState: metadata lacks the generator state "rng"/,
  );
  const { 'memory.labels': _labels, ...withoutLabels } = records;
  assert.throws(() => memoryFromState(meta, withoutLabels), /memoryFromState: record "memory.labels" is missing/);
  const mistyped = { ...records, 'memory.labels': { data: new Float32Array(30), shape: [30] } };
  assert.throws(
    () => memoryFromState(meta, mistyped),
    /record "memory.labels" must be a Uint32Array of 30 values, got Float32Array of 30/,
  );
  assert.equal(gpu().pool.liveCount, base, 'a refused state leaves no GPU buffers behind');
});

test('checkpoint-io: generic records with metadata; truncated or corrupt files give clear errors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-rec-'));
  try {
    const special = Float32Array.from([0, -0, Infinity, -Infinity, 1.5, 3e-42]);
    const nan = new Uint32Array([0x7fc00001]);
    special.set(new Float32Array(nan.buffer), 1);
    const records = {
      a: special,
      b: { data: Uint32Array.from([1, 2, 3, 4, 5, 6]), shape: [2, 3] },
      c: new Float64Array([Math.PI]),
      e: new Uint8Array(3),
      z: new Int32Array(0),
    };
    const bytes = encodeRecords(records, { step: 7, note: 'x' });
    const back = decodeRecords(bytes);
    assert.deepEqual(back.meta, { step: 7, note: 'x' });
    assert.deepEqual(
      new Uint32Array(back.records.get('a')!.data.buffer),
      new Uint32Array(special.buffer),
      'bit-exact incl. NaN payload and -0',
    );
    assert.deepEqual(back.records.get('b')!.shape, [2, 3]);
    assert.equal(back.records.get('z')!.data.length, 0);
    const path = join(dir, 'r.ckpt');
    await writeRecords(path, records, { step: 7 });
    assert.deepEqual(
      readFileSync(path).subarray(16),
      Buffer.from(encodeRecords(records, { step: 7 })).subarray(16),
      'file = encoding',
    );
    const whole = readFileSync(path);
    writeFileSync(path, whole.subarray(0, whole.length - 5));
    await assert.rejects(
      readRecords(path),
      (e: Error) => e instanceof CheckpointError && /truncated/.test(e.message) && e.message.includes(path),
    );
    const corrupt = Buffer.from(whole);
    const dataStart = Math.ceil((16 + corrupt.readUInt32LE(8)) / 8) * 8;
    corrupt[dataStart + 5] ^= 1; // inside record "a"
    writeFileSync(path, corrupt);
    await assert.rejects(readRecords(path), /corrupt \(CRC-32 mismatch\)/);
    writeFileSync(path, Buffer.from('hello world, not a checkpoint'));
    await assert.rejects(readRecords(path), /not an ODC record file/);
    await assert.rejects(readRecords(join(dir, 'missing')), /cannot read/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad parameters give clear errors before any GPU work; nothing leaks', async () => {
  assert.throws(
    () => OdcMemory.create({ n: 10, dim: 4, k: 11, minCluster: 1 }),
    /k = 11 clusters need at least k samples, got n = 10/,
  );
  assert.throws(() => OdcMemory.create({ n: 10, dim: 4, k: 2, minCluster: 0 }), /minCluster must be an integer >= 1/);
  assert.throws(
    () => OdcMemory.create({ n: 10, dim: 4, k: 2, minCluster: 1, momentum: 1.5 }),
    /momentum must be in \[0, 1\]/,
  );
  assert.throws(() => OdcMemory.create({ n: 10.5, dim: 4, k: 2, minCluster: 1 }), /n must be an integer/);
  const base = gpu().pool.liveCount;
  const rng = new Rng(5);
  const s = randomState(rng, 100, 6, 5, 3);
  const memory = memoryFrom(s);
  const wrongD = Tensor.from(new Float32Array(4 * 5), [4, 5]);
  const f = Tensor.from(new Float32Array(4 * 6).fill(1), [4, 6]);
  const dispatches = gpu().stats.dispatches;
  assert.throws(() => memory.update([0, 1, 2, 3], wrongD), /expected features \[B, 6\] \(memory dim 6\), got \[4, 5\]/);
  assert.throws(() => memory.update([0, 1, 2, 100], f), /index 100 at position 3 is out of range \[0, 100\)/);
  assert.throws(() => memory.update([0, 1, 2], f), /3 indices for 4 feature rows/);
  assert.throws(() => memory.labelsOf([-1]), /out of range/);
  await assert.rejects(memory.init(wrongD), /OdcMemory.init: expected features \[100, 6\]/);
  assert.equal(gpu().stats.dispatches, dispatches, 'no GPU work was recorded');
  // GPU-tensor indices cannot be checked on the host: the kernels skip and count them
  const badIdx = Tensor.from([0, 1, 2, 1000], [4], 'u32');
  memory.update(badIdx, f);
  await assert.rejects(memory.stats(), /1 out-of-range sample index/);
  memory.update([0, 1, 2, 3], f);
  memory.recomputeCentroids();
  await handleSmallClusters(memory);
  memory.updateWeights();
  memory.labelsOf([1, 2]).dispose();
  await memory.stats();
  for (const t of [memory, wrongD, f, badIdx]) t.dispose();
  assert.equal(gpu().pool.liveCount, base, 'no buffer leaked');
});
