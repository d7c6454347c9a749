import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, setupGpu, RUNS } from './helpers.ts';
import { knnAccuracy, knnSearch, knnVote } from '../src/eval/knn.ts';
import { normalizeRows } from '../src/ops/rows.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';
import { Rng } from '../src/util/rng.ts';

before(async () => {
  await setupGpu();
});

/** Gaussian blobs: `numClasses` random centres, points = centre + noise; f32-rounded values. */
function blobs(
  seed: number,
  n: number,
  d: number,
  numClasses: number,
  noise: number,
): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  const centres = Float64Array.from({ length: numClasses * d }, () => rng.normal());
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = rng.int(numClasses);
    for (let j = 0; j < d; j++) x[i * d + j] = centres[y[i] * d + j] + noise * rng.normal();
  }
  return { x, y };
}

// ---- float64 reference --------------------------------------------------------------------------

function refNormalize(x: ArrayLike<number>, n: number, d: number): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[i * d + j] ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < d; j++) out[i * d + j] = x[i * d + j] * inv;
  }
  return out;
}

function refCosine(train: Float64Array, test: Float64Array, i: number, j: number, d: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += test[i * d + t] * train[j * d + t];
  return s;
}

interface RefKnn {
  indices: number[][];
  sims: number[][];
  /** all similarities per test row (to judge GPU picks) */
  all: Float64Array[];
}

function refKnn(
  trainX: Float32Array,
  testX: Float32Array,
  ntr: number,
  nte: number,
  d: number,
  k: number,
  excludeSelf: boolean,
): RefKnn {
  const tr = refNormalize(trainX, ntr, d);
  const te = refNormalize(testX, nte, d);
  const indices: number[][] = [];
  const sims: number[][] = [];
  const all: Float64Array[] = [];
  for (let i = 0; i < nte; i++) {
    const row = new Float64Array(ntr);
    for (let j = 0; j < ntr; j++) row[j] = refCosine(tr, te, i, j, d);
    all.push(row);
    const order = [...row.keys()].filter((j) => !(excludeSelf && j === i)).sort((a, b) => row[b] - row[a] || a - b);
    indices.push(order.slice(0, k));
    sims.push(order.slice(0, k).map((j) => row[j]));
  }
  return { indices, sims, all };
}

function refVote(
  ref: RefKnn,
  trainY: Int32Array,
  numClasses: number,
  temperature: number,
): { pred: number[]; margin: number[] } {
  const pred: number[] = [];
  const margin: number[] = [];
  ref.indices.forEach((idx, i) => {
    const scores = new Float64Array(numClasses);
    idx.forEach((j, t) => (scores[trainY[j]] += Math.exp(ref.sims[i][t] / temperature)));
    const order = [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b);
    pred.push(order[0]);
    margin.push(numClasses > 1 ? (scores[order[0]] - scores[order[1]]) / scores[order[0]] : 1);
  });
  return { pred, margin };
}

/**
 * GPU neighbours agree with the f64 reference up to f32 rounding: at every rank, the neighbour the GPU
 * picked has (in f64) the reference's similarity for that rank, the GPU similarity is that value in f32,
 * no row repeats a neighbour, and excluded samples never appear.
 */
function checkNeighbours(
  got: { indices: Uint32Array; similarities: Float32Array },
  ref: RefKnn,
  k: number,
  excludeSelf: boolean,
): void {
  const tol = 2e-6;
  ref.indices.forEach((_, i) => {
    const seen = new Set<number>();
    for (let t = 0; t < k; t++) {
      const j = got.indices[i * k + t];
      assert.ok(j < ref.all[i].length, `row ${i} rank ${t}: index ${j} out of range`);
      assert.ok(!seen.has(j), `row ${i}: neighbour ${j} appears twice`);
      seen.add(j);
      if (excludeSelf) assert.notEqual(j, i, `row ${i}: the sample itself was not excluded`);
      const exact = ref.all[i][j];
      assert.ok(
        Math.abs(exact - ref.sims[i][t]) <= tol,
        `row ${i} rank ${t}: picked ${j} (sim ${exact}), reference picks ${ref.indices[i][t]} (sim ${ref.sims[i][t]})`,
      );
      assert.ok(
        Math.abs(got.similarities[i * k + t] - exact) <= tol,
        `row ${i} rank ${t}: similarity ${got.similarities[i * k + t]} vs ${exact}`,
      );
    }
  });
}

test('knnSearch matches the float64 reference (random shapes, chunked and not)', async () => {
  const base = gpu().pool.liveCount;
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 2, max: 150 }),
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 30 }),
      fc.integer({ min: 1, max: 8 }),
      fc.integer(),
      async (ntr, nte, d, kWanted, chunkRows, seed) => {
        const k = Math.min(kWanted, ntr);
        const a = blobs(seed, ntr, d, 3, 1);
        const b = blobs(seed + 1, nte, d, 3, 1);
        const train = Tensor.from(a.x, [ntr, d]);
        const testT = Tensor.from(b.x, [nte, d]);
        const ref = refKnn(a.x, b.x, ntr, nte, d, k, false);
        // Both top-k kernels (workgroup per row, invocation per row), whole and in chunks, agree exactly.
        const whole = await knnSearch(train, testT, { k, variant: 'workgroup' });
        const chunked = await knnSearch(train, testT, { k, chunkRows, variant: 'rows' });
        checkNeighbours(whole, ref, k, false);
        assert.deepEqual(chunked.indices, whole.indices, 'chunking / kernel variant changed the neighbours');
        assert.deepEqual(
          chunked.similarities,
          whole.similarities,
          'chunking / kernel variant changed the similarities',
        );
        train.dispose();
        testT.dispose();
      },
    ),
    { numRuns: RUNS },
  );
  assert.equal(gpu().pool.liveCount, base, 'knnSearch leaked buffers');
});

test('knnSearch onProgress: a call at each fifth of the test rows and at the end, rows done, the same neighbours', async () => {
  const [ntr, nte, d, k, chunkRows] = [60, 37, 8, 5, 3];
  const a = blobs(7, ntr, d, 3, 1);
  const b = blobs(8, nte, d, 3, 1);
  const train = Tensor.from(a.x, [ntr, d]);
  const testT = Tensor.from(b.x, [nte, d]);
  try {
    const calls: number[] = [];
    const watched = await knnSearch(train, testT, {
      k,
      chunkRows,
      onProgress: (done, rows) => {
        assert.equal(rows, nte);
        calls.push(done);
      },
    });
    const plain = await knnSearch(train, testT, { k, chunkRows });
    assert.deepEqual(watched, plain, 'reporting progress changed the neighbours');
    // Counts rise, end at every row, fall on chunk ends, and pass each fifth of the rows once.
    assert.equal(calls.at(-1), nte);
    calls.forEach((done, i) => {
      assert.ok(i === 0 || done > calls[i - 1], `counts rise: ${calls.join(', ')}`);
      assert.ok(done % chunkRows === 0 || done === nte, `${done} is not a chunk end`);
    });
    const fifth = Math.ceil(nte / 5);
    for (let j = 1; j * fifth < nte; j++)
      assert.equal(calls.filter((done) => done >= j * fifth && done < j * fifth + chunkRows).length, 1, `fifth ${j}`);
    assert.ok(calls.length <= 6, `${calls.length} calls: ${calls.join(', ')}`);
    const single: number[] = [];
    await knnSearch(train, testT, { k, onProgress: (done) => single.push(done) });
    assert.deepEqual(single, [nte], 'one chunk: one call, at the end');
  } finally {
    train.dispose();
    testT.dispose();
  }
});

test('knnAccuracy: weighted vote matches the reference on Gaussian blobs; k = 20, T = 0.07', async () => {
  const d = 32;
  const numClasses = 6;
  const tr = blobs(11, 600, d, numClasses, 1.2);
  // same centres for the test set: blobs(11, ...) draws centres first, so reuse the seed and take later rows
  const all = blobs(11, 800, d, numClasses, 1.2);
  const te = { x: all.x.slice(600 * d), y: all.y.slice(600) };
  const train = Tensor.from(tr.x, [600, d]);
  const testT = Tensor.from(te.x, [200, d]);
  const res = await knnAccuracy(train, tr.y, testT, te.y, { numClasses, chunkRows: 64 });
  const ref = refKnn(tr.x, te.x, 600, 200, d, 20, false);
  const rv = refVote(ref, tr.y, numClasses, 0.07);
  let refHits = 0;
  for (let i = 0; i < 200; i++) {
    if (rv.pred[i] === te.y[i]) refHits++;
    if (rv.margin[i] > 1e-4) assert.equal(res.predictions[i], rv.pred[i], `test row ${i}: prediction`);
  }
  assert.ok(Math.abs(res.top1 - refHits / 200) <= 0.01, `top1 ${res.top1} vs reference ${refHits / 200}`);
  assert.ok(res.top1 > 0.9, `blobs should be easy, got top1 ${res.top1}`);
  assert.ok(res.top5 >= res.top1);
  train.dispose();
  testT.dispose();
});

test('excludeSelf: leave-one-out on one set never returns the sample itself', async () => {
  const d = 16;
  const set = blobs(5, 130, d, 4, 0.8);
  // Duplicate a few rows so that a sample's best match (itself, sim 1) ties with its copy.
  set.x.copyWithin(0, 10 * d, 11 * d);
  set.y[0] = set.y[10];
  const t = Tensor.from(set.x, [130, d]);
  const k = 7;
  const got = await knnSearch(t, t, { k, excludeSelf: true, chunkRows: 50 });
  checkNeighbours(got, refKnn(set.x, set.x, 130, 130, d, k, true), k, true);
  for (const variant of ['workgroup', 'rows'] as const) {
    const other = await knnSearch(t, t, { k, excludeSelf: true, chunkRows: 64, variant });
    assert.deepEqual(other.indices, got.indices, `${variant}: neighbours`);
  }
  assert.equal(got.indices[0], 10, 'row 0 is a copy of row 10: its nearest other sample');
  assert.equal(got.indices[10 * k], 0, 'row 10 is a copy of row 0');
  const loo = await knnAccuracy(t, set.y, t, set.y, { numClasses: 4, k, excludeSelf: true });
  const withSelf = await knnAccuracy(t, set.y, t, set.y, { numClasses: 4, k: 1 });
  assert.equal(withSelf.top1, 1, 'k = 1 without exclusion finds each sample itself');
  assert.ok(loo.top1 > 0.8 && loo.top1 <= 1);
  t.dispose();
});

test('large k and exact ties: both kernels order equal similarities by index', async () => {
  const d = 8;
  const distinct = blobs(21, 6, d, 6, 1).x;
  const ntr = 240;
  // every train row is one of 6 vectors: similarities tie exactly within each group of 40
  const trX = new Float32Array(ntr * d);
  for (let i = 0; i < ntr; i++) trX.set(distinct.subarray((i % 6) * d, ((i % 6) + 1) * d), i * d);
  const teX = blobs(22, 9, d, 3, 1).x;
  const train = Tensor.from(trX, [ntr, d]);
  const testT = Tensor.from(teX, [9, d]);
  const ref = refKnn(trX, teX, ntr, 9, d, 200, false);
  for (const variant of ['workgroup', 'rows'] as const) {
    for (const k of [200, 57]) {
      const got = await knnSearch(train, testT, { k, variant });
      checkNeighbours(
        got,
        { ...ref, indices: ref.indices.map((r) => r.slice(0, k)), sims: ref.sims.map((r) => r.slice(0, k)) },
        k,
        false,
      );
      for (let i = 0; i < 9; i++) {
        assert.deepEqual(
          [...got.indices.subarray(i * k, (i + 1) * k)],
          ref.indices[i].slice(0, k),
          `${variant} k=${k} row ${i}: tie order`,
        );
      }
    }
  }
  train.dispose();
  testT.dispose();
});

test('knnVote: hand-computed weighted vote, ties to the lowest class', () => {
  // Row 0: neighbours of classes 2, 1, 1 with sims 0.9, 0.5, 0.5 at T = 1:
  // class 2 gets e^0.9 = 2.4596, class 1 gets 2 e^0.5 = 3.2974 -> predicts 1.
  // Row 1: one neighbour of class 0 and one of class 3, equal sims -> tie -> class 0.
  const neighbours = {
    k: 3,
    indices: Uint32Array.from([0, 1, 2, 3, 4, 5]),
    similarities: Float32Array.from([0.9, 0.5, 0.5, 0.2, 0.2, -5]),
  };
  const trainLabels = [2, 1, 1, 0, 3, 3];
  // row 1, third neighbour: class 3 with e^-5 breaks the tie for class 3 at T = 1
  const v = knnVote(neighbours, trainLabels, 4, 1, [1, 0]);
  assert.deepEqual([...v.predictions], [1, 3]);
  const tied = knnVote(
    {
      ...neighbours,
      k: 2,
      indices: Uint32Array.from([0, 1, 3, 4]),
      similarities: Float32Array.from([0.9, 0.5, 0.2, 0.2]),
    },
    trainLabels,
    4,
    1,
  );
  assert.deepEqual([...tied.predictions], [2, 0], 'row 0: e^0.9 > e^0.5; row 1: tie -> lowest class id');
  assert.deepEqual([...v.top5Hits], [1, 1]);
});

test("normalizeRows (the kNN's clamp rule) gives unit rows; zero rows stay zero", async () => {
  const x = Tensor.from([3, 4, 0, 0, 1, 1], [3, 2]);
  const n = normalizeRows(x, { epsilon: 'clamp' });
  const got = await n.data();
  const expected = [0.6, 0.8, 0, 0, Math.SQRT1_2, Math.SQRT1_2];
  got.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6, `${i}: ${v}`));
  x.dispose();
  n.dispose();
});

test('knnSearch rejects bad inputs with clear errors', async () => {
  const a = Tensor.from(new Float32Array(12), [4, 3]);
  const b = Tensor.from(new Float32Array(10), [5, 2]);
  const c = Tensor.from(new Float32Array(15), [5, 3]);
  await assert.rejects(knnSearch(a, b), /feature dimensions differ/);
  const empty = Tensor.empty([4, 0]);
  await assert.rejects(knnSearch(empty, empty, { k: 1 }), /have no dimensions/);
  empty.dispose();
  await assert.rejects(knnSearch(a, a, { k: 5 }), /k = 5 must be an integer in 1\.\.4/);
  await assert.rejects(knnSearch(a, a, { k: 4, excludeSelf: true }), /k = 4 must be an integer in 1\.\.3/);
  await assert.rejects(knnSearch(a, c, { k: 2, excludeSelf: true }), /excludeSelf needs the same set/);
  const labels4 = Int32Array.from([0, 1, 2, 3]);
  await assert.rejects(
    knnAccuracy(a, labels4, a, labels4, { numClasses: 3, k: 2 }),
    /train labels\[3\] = 3 is outside 0\.\.2/,
  );
  await assert.rejects(
    knnAccuracy(a, labels4, c, labels4, { numClasses: 4, k: 2 }),
    /4 test labels for 5 feature rows/,
  );
  for (const t of [a, b, c]) t.dispose();
});
