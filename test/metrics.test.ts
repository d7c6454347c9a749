import { test } from 'node:test';
import fc from 'fast-check';
import { assert } from './helpers.ts';
import { linearSumAssignment } from '../src/metrics/hungarian.ts';
import {
  accuracy,
  ari,
  clusteringAccuracy,
  confusionMatrix,
  contingencyTable,
  matchClusters,
  purity,
} from '../src/metrics/metrics.ts';
import { nmi } from '../src/metrics/nmi.ts';
import { formatEvalTable, formatPercent } from '../src/eval/report.ts';
import { Rng } from '../src/util/rng.ts';

const PROPERTY_RUNS = 200; // host-only: cheap

// ---- brute-force references ---------------------------------------------------------------------

/** Best total over all partial one-to-one assignments that match min(rows, cols) pairs. */
function bruteAssignment(cost: ArrayLike<number>, rows: number, cols: number, maximize: boolean): number {
  const pairs = Math.min(rows, cols);
  const usedCols = new Uint8Array(cols);
  let best = maximize ? -Infinity : Infinity;
  const go = (r: number, matched: number, total: number): void => {
    if (r === rows) {
      if (matched === pairs) best = maximize ? Math.max(best, total) : Math.min(best, total);
      return;
    }
    if (rows - r - 1 >= pairs - matched) go(r + 1, matched, total); // leave row r unmatched
    for (let c = 0; c < cols; c++) {
      if (usedCols[c]) continue;
      usedCols[c] = 1;
      go(r + 1, matched + 1, total + cost[r * cols + c]);
      usedCols[c] = 0;
    }
  };
  go(0, 0, 0);
  return best;
}

/** ARI from pair counting over all O(n^2) pairs (an independent formula). */
function bruteAri(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let tn = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const sa = a[i] === a[j];
      const sb = b[i] === b[j];
      if (sa && sb) tp++;
      else if (!sa && sb) fp++;
      else if (sa && !sb) fn++;
      else tn++;
    }
  }
  if (fp === 0 && fn === 0) return 1;
  return (2 * (tp * tn - fn * fp)) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn));
}

/** Accuracy by trying every injective map from clusters to classes (tiny K, C). */
function bruteAccuracy(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  const c = contingencyTable(pred, truth);
  return bruteAssignment(c.table, c.rows, c.cols, true) / pred.length;
}

const labelsArb = (maxK: number, minLen = 1, maxLen = 40) =>
  fc
    .integer({ min: minLen, max: maxLen })
    .chain((n) =>
      fc.tuple(
        fc.array(fc.integer({ min: 0, max: maxK - 1 }), { minLength: n, maxLength: n }),
        fc.array(fc.integer({ min: 0, max: maxK - 1 }), { minLength: n, maxLength: n }),
      ),
    );

/** Relabels with an arbitrary injective map (shuffled, shifted, possibly negative ids). */
function relabel(labels: number[], seed: number): number[] {
  const rng = new Rng(seed);
  const ids = [...new Set(labels)];
  const targets = rng.shuffle(ids.map((_, i) => i * 7 - 13));
  const map = new Map(ids.map((v, i) => [v, targets[i]]));
  return labels.map((v) => map.get(v)!);
}

// ---- Hungarian ----------------------------------------------------------------------------------

test('linearSumAssignment: optimal on random (rectangular) matrices, vs brute force', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 6 }),
      fc.integer({ min: 0, max: 6 }),
      fc.integer(),
      fc.boolean(),
      fc.boolean(),
      (rows, cols, seed, maximize, integers) => {
        const rng = new Rng(seed);
        const cost = Array.from({ length: rows * cols }, () => (integers ? rng.int(5) : rng.range(-10, 10)));
        const res = linearSumAssignment(cost, rows, cols, { maximize });
        const pairs = Math.min(rows, cols);
        let matched = 0;
        let total = 0;
        res.rowToCol.forEach((c, r) => {
          if (c < 0) return;
          matched++;
          assert.equal(res.colToRow[c], r, 'colToRow is the inverse of rowToCol');
          total += cost[r * cols + c];
        });
        assert.equal(matched, pairs, 'every row of the smaller side is matched');
        assert.equal(new Set([...res.rowToCol].filter((c) => c >= 0)).size, matched, 'one-to-one');
        assert.ok(Math.abs(total - res.total) < 1e-9);
        const best = pairs === 0 ? 0 : bruteAssignment(cost, rows, cols, maximize);
        assert.ok(Math.abs(res.total - best) < 1e-9, `total ${res.total}, optimum ${best}`);
      },
    ),
    { numRuns: PROPERTY_RUNS },
  );
});

test('linearSumAssignment: hand-computed 3x3 and a 200x200 permutation', () => {
  // Classic example: min is 5 (0->1, 1->0, 2->2: 1 + 2 + 2).
  const res = linearSumAssignment([4, 1, 3, 2, 0, 5, 3, 2, 2], 3, 3);
  assert.deepEqual([...res.rowToCol], [1, 0, 2]);
  assert.equal(res.total, 5);
  // A hidden permutation with zero cost among costs >= 1 must be found exactly.
  const n = 200;
  const rng = new Rng(3);
  const perm = rng.shuffle([...Array(n).keys()]);
  const cost = new Float64Array(n * n);
  for (let i = 0; i < n * n; i++) cost[i] = 1 + rng.uniform();
  perm.forEach((c, r) => (cost[r * n + c] = 0));
  const big = linearSumAssignment(cost, n, n); // speed is bench material, not a test assertion
  assert.deepEqual([...big.rowToCol], perm);
  assert.throws(() => linearSumAssignment([1, Number.NaN], 1, 2), /must be finite/);
  assert.throws(() => linearSumAssignment([1, 2, 3], 2, 2), /3 entries for a 2 x 2 matrix/);
});

// ---- clustering accuracy ------------------------------------------------------------------------

test('clusteringAccuracy: hand-computed cases, including K != C', () => {
  assert.equal(clusteringAccuracy([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 0, 2]), 5 / 6);
  // 3 clusters, 2 classes: only two clusters can be matched.
  assert.equal(clusteringAccuracy([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1]), 4 / 6);
  // 2 clusters, 3 classes.
  assert.equal(clusteringAccuracy([5, 5, 5, 9, 9, 9], [0, 0, 1, 2, 2, 2]), 5 / 6);
  // The greedy (majority per cluster) answer is not one-to-one; the matching must be.
  assert.equal(clusteringAccuracy([0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]), 4 / 6);
  assert.equal(purity([0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 0, 1]), 5 / 6);
  const m = matchClusters([7, 7, 3, 3], [1, 1, 0, 0]);
  assert.deepEqual([...m.mapping.entries()].sort(), [
    [3, 0],
    [7, 1],
  ]);
  assert.equal(m.correct, 4);
  assert.equal(clusteringAccuracy([], []), 0);
  assert.throws(() => clusteringAccuracy([0, 1], [0]), /different lengths/);
  assert.throws(() => clusteringAccuracy([0, 0.5], [0, 1]), /non-integer label 0.5/);
});

test('clusteringAccuracy equals the brute-force best matching (tiny K, C)', () => {
  fc.assert(
    fc.property(labelsArb(5), ([pred, truth]) => {
      const acc = clusteringAccuracy(pred, truth);
      assert.ok(Math.abs(acc - bruteAccuracy(pred, truth)) < 1e-12);
      assert.ok(acc <= purity(pred, truth) + 1e-12, 'one-to-one matching never beats purity');
    }),
    { numRuns: PROPERTY_RUNS },
  );
});

test('clusteringAccuracy is invariant to relabelling, 1 for perfect clusterings', () => {
  fc.assert(
    fc.property(labelsArb(8, 1, 60), fc.integer(), ([pred, truth], seed) => {
      const acc = clusteringAccuracy(pred, truth);
      assert.ok(Math.abs(clusteringAccuracy(relabel(pred, seed), relabel(truth, seed + 1)) - acc) < 1e-12);
      assert.equal(clusteringAccuracy(relabel(truth, seed), truth), 1);
    }),
    { numRuns: PROPERTY_RUNS },
  );
});

// ---- ARI ----------------------------------------------------------------------------------------

test('ari: hand-computed values (scikit-learn documentation examples)', () => {
  const close = (x: number, y: number) => assert.ok(Math.abs(x - y) < 1e-12, `${x} vs ${y}`);
  close(ari([0, 0, 1, 1], [0, 0, 1, 1]), 1);
  close(ari([0, 0, 1, 1], [1, 1, 0, 0]), 1);
  close(ari([0, 0, 1, 2], [0, 0, 1, 1]), 4 / 7); // (1 - 1/3) / (3/2 - 1/3)
  close(ari([0, 0, 1, 1], [0, 1, 0, 1]), -0.5);
  close(ari([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]), 0.8 / 3.3);
  close(ari([0, 0, 0, 0], [0, 1, 2, 3]), 0); // one cluster vs singletons
  close(ari([3, 3, 3], [1, 1, 1]), 1); // both trivial and equal
  close(ari([0, 1, 2], [5, 6, 7]), 1); // both all singletons
  close(ari([4], [2]), 1);
  close(ari([], []), 1);
});

test('ari equals pair counting, is symmetric and relabelling-invariant', () => {
  fc.assert(
    fc.property(labelsArb(6, 1, 50), fc.integer(), ([a, b], seed) => {
      const v = ari(a, b);
      assert.ok(Math.abs(v - bruteAri(a, b)) < 1e-9, `ari ${v} vs pair counting ${bruteAri(a, b)}`);
      assert.ok(Math.abs(ari(b, a) - v) < 1e-12, 'symmetric');
      assert.ok(Math.abs(ari(relabel(a, seed), relabel(b, seed + 1)) - v) < 1e-12, 'relabelling');
      assert.ok(v <= 1 + 1e-12);
      assert.equal(ari(a, relabel(a, seed)), 1, 'perfect agreement');
      // NMI (src/metrics/nmi.ts) obeys the same invariances
      const m = nmi(a, b);
      assert.ok(Math.abs(nmi(relabel(a, seed), relabel(b, seed + 1)) - m) < 1e-12, 'nmi relabelling');
      assert.ok(Math.abs(nmi(b, a) - m) < 1e-12, 'nmi symmetric');
      assert.ok(Math.abs(nmi(a, relabel(a, seed)) - 1) < 1e-12, 'nmi perfect agreement');
    }),
    { numRuns: PROPERTY_RUNS },
  );
});

test('ari of independent random labelings is near 0; clustering accuracy near its chance level', () => {
  const rng = new Rng(42);
  const n = 5000;
  let sum = 0;
  const trials = 10;
  for (let t = 0; t < trials; t++) {
    const a = Array.from({ length: n }, () => rng.int(10));
    const b = Array.from({ length: n }, () => rng.int(10));
    const v = ari(a, b);
    assert.ok(Math.abs(v) < 0.01, `trial ${t}: ari ${v}`);
    assert.ok(nmi(a, b) < 0.02, `trial ${t}: nmi ${nmi(a, b)}`);
    sum += v;
    const acc = clusteringAccuracy(a, b);
    assert.ok(acc > 0.1 && acc < 0.14, `trial ${t}: accuracy ${acc} (chance 0.1 plus the matching's optimism)`);
  }
  assert.ok(Math.abs(sum / trials) < 0.003, `mean ari ${sum / trials}`);
});

// ---- classifier helpers and the report ----------------------------------------------------------

test('accuracy and confusionMatrix', () => {
  assert.equal(accuracy([0, 1, 2, 2], [0, 1, 1, 2]), 0.75);
  assert.deepEqual([...confusionMatrix([0, 1, 2, 2], [0, 1, 1, 2], 3)], [1, 0, 0, 0, 1, 1, 0, 0, 1]);
  assert.throws(() => confusionMatrix([3], [0], 3), /outside 0\.\.2/);
  const c = contingencyTable([2, 2, 9], [1, 0, 0]);
  assert.deepEqual([c.rows, c.cols, [...c.table], c.rowLabels, c.colLabels], [2, 2, [1, 1, 1, 0], [2, 9], [0, 1]]);
});

test('formatEvalTable aligns columns and formats numbers', () => {
  const table = formatEvalTable(
    [
      { name: 'ODC', values: { nmi: 0.51234, ari: 0.3, acc: 0.612, note: 'k=10' } },
      { name: 'random init', values: { nmi: 0.01, acc: null } },
    ],
    { digits: 3 },
  );
  const lines = table.split('\n');
  assert.equal(lines.length, 4);
  assert.match(lines[0], /^\| model\s+\|\s+nmi \|\s+ari \|\s+acc \| note \|$/);
  assert.match(lines[1], /^\|-+\|-+:\|-+:\|-+:\|-+\|$/);
  assert.match(lines[2], /^\| ODC\s+\| 0\.512 \| 0\.300 \| 0\.612 \| k=10 \|$/);
  assert.match(lines[3], /^\| random init \| 0\.010 \|\s+- \|\s+- \| -\s+\|$/);
  assert.equal(new Set(lines.map((l) => l.length)).size, 1, 'all rows have the same width');
  assert.equal(formatPercent(0.57704), '57.70%');
});
