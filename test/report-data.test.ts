/**
 * The data a report is built from, on host arrays, against brute-force computations: centroids,
 * similarities and ranks, the members nearest each centroid, nearest centroids of new features, the
 * cluster-vs-class matrix with majority and purity, the gallery choice, the log reader, the streamed
 * CSV/JSONL rows, and the HTML: one heat-map row per cluster, every chart's points drawn, nothing external.
 */
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { assert, RUNS } from './helpers.ts';
import {
  centroidSimilarities,
  clusterCentroids,
  clusterClasses,
  clusterClassMatrix,
  galleryClusters,
  membersByRank,
  nearestCentroids,
  ranksInClusters,
  unitRows,
  type ClusterSpace,
} from '../src/report/clusters.ts';
import { labelHistogram } from '../src/metrics/metrics.ts';
import { parseRunLog } from '../src/odc/run-log.ts';
import { writeAssignments } from '../src/report/assignments.ts';
import { renderReport, sizeBins } from '../src/report/html.ts';
import { buildGalleries, imageDataUri, shrinkBox, type RunReport } from '../src/report/build.ts';
import { decodePng } from '../src/data/png.ts';
import { Buffer } from 'node:buffer';
import { sizeBalance } from '../src/eval/run-eval.ts';
import { lineChart, MAX_SERIES_POINTS, thinPoints } from '../src/report/svg.ts';
import { commandFromArgv } from '../src/cli/args.ts';
import { Rng } from '../src/util/rng.ts';
import { headDataset, imageId, type ImageDataset } from '../src/data/dataset.ts';
import { subsetDataset } from '../src/data/training-data.ts';

/** A random space: n unit rows of dim, labels in 0..k-1 (some clusters may be empty). */
function randomSpace(seed: number, n: number, dim: number, k: number): ClusterSpace {
  const rng = new Rng(seed);
  const raw = Float32Array.from({ length: n * dim }, () => rng.range(-1, 1));
  return {
    n,
    dim,
    k,
    features: unitRows(raw, dim),
    labels: Uint32Array.from({ length: n }, () => Math.floor(rng.range(0, k))),
  };
}

/** Float64 brute force: each cluster's mean, normalised; each image's cosine to it by full norms. */
function bruteSimilarities(s: ClusterSpace): { centroids: number[][]; similarity: number[] } {
  const centroids = Array.from({ length: s.k }, (_, c) => {
    const sum = new Array<number>(s.dim).fill(0);
    for (let i = 0; i < s.n; i++)
      if (s.labels[i] === c) for (let j = 0; j < s.dim; j++) sum[j] += s.features[i * s.dim + j];
    return sum;
  });
  const cos = (a: number[], b: ArrayLike<number>): number => {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let j = 0; j < a.length; j++) {
      ab += a[j] * b[j];
      aa += a[j] * a[j];
      bb += b[j] * b[j];
    }
    return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
  };
  const similarity = Array.from({ length: s.n }, (_, i) =>
    cos(centroids[s.labels[i]], s.features.subarray(i * s.dim, (i + 1) * s.dim)),
  );
  return { centroids, similarity };
}

test('centroid similarities, ranks and nearest members match a float64 brute force', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1e6 }),
      fc.integer({ min: 1, max: 60 }),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 8 }),
      (seed, n, dim, k) => {
        const s = randomSpace(seed, n, dim, k);
        const similarity = centroidSimilarities(s, clusterCentroids(s));
        const brute = bruteSimilarities(s);
        for (let i = 0; i < n; i++)
          assert.ok(
            Math.abs(similarity[i] - brute.similarity[i]) < 1e-5,
            `image ${i}: ${similarity[i]} vs ${brute.similarity[i]}`,
          );
        const ranks = ranksInClusters(s.labels, similarity, k);
        const ranked = membersByRank(s.labels, similarity, k);
        for (let i = 0; i < n; i++) {
          // rank = 1 + the members strictly more similar, or as similar with a lower index
          const ahead = [...Array(n).keys()].filter(
            (j) =>
              s.labels[j] === s.labels[i] &&
              (similarity[j] > similarity[i] || (similarity[j] === similarity[i] && j < i)),
          ).length;
          assert.equal(ranks[i], ahead + 1);
          assert.equal(ranked[s.labels[i]][ranks[i] - 1], i);
        }
        assert.deepEqual(
          ranked.map((m) => m.length),
          Array.from(labelHistogram(s.labels, k)),
        );
      },
    ),
    { numRuns: RUNS * 4 },
  );
});

test('nearestCentroids picks the most similar non-empty centroid (brute force over every centroid)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1e6 }), fc.integer({ min: 1, max: 8 }), (seed, k) => {
      const s = randomSpace(seed, 40, 5, k);
      const centroids = clusterCentroids(s);
      const sizes = labelHistogram(s.labels, k);
      const queries = randomSpace(seed + 1, 15, 5, 1).features;
      const { labels, similarity } = nearestCentroids(queries, 5, centroids, sizes);
      const brute = bruteSimilarities(s).centroids;
      for (let r = 0; r < 15; r++) {
        const q = queries.subarray(r * 5, r * 5 + 5);
        const scores = brute.map((c, ci) =>
          sizes[ci] === 0 ? -Infinity : c.reduce((a, v, j) => a + v * q[j], 0) / Math.hypot(...c),
        );
        const best = scores.indexOf(Math.max(...scores));
        assert.ok(
          scores[labels[r]] >= scores[best] - 1e-6,
          `row ${r}: chose ${labels[r]} (${scores[labels[r]]}), best ${best} (${scores[best]})`,
        );
        assert.ok(sizes[labels[r]] > 0);
        assert.ok(Math.abs(similarity[r] - scores[best]) < 1e-5);
      }
    }),
    { numRuns: RUNS * 2 },
  );
});

test('cluster-vs-class matrix, majority, purity and heat-map order', () => {
  const labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 0];
  const truth = [1, 1, 0, 2, 2, 0, 0, 0, 1, 1];
  const m = clusterClassMatrix(labels, truth, 4, 3);
  // counted by hand: cluster 0 = {1,1,0,1}, cluster 1 = {2,2}, cluster 2 = {0,0,0,1}, cluster 3 empty
  assert.deepEqual(Array.from(m), [1, 3, 0, 0, 0, 2, 3, 1, 0, 0, 0, 0]);
  const { majority, purity, order } = clusterClasses(m, 4, 3);
  assert.deepEqual(Array.from(majority), [1, 2, 0, -1]);
  assert.deepEqual(Array.from(purity), [0.75, 1, 0.75, 0]);
  assert.deepEqual(order, [2, 0, 1, 3]);
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(5), fc.nat(3)), { minLength: 1, maxLength: 80 }), (pairs) => {
      const mm = clusterClassMatrix(
        pairs.map((p) => p[0]),
        pairs.map((p) => p[1]),
        6,
        4,
      );
      assert.equal(
        mm.reduce((a, b) => a + b, 0),
        pairs.length,
      );
      for (const [c, y] of pairs) assert.equal(mm[c * 4 + y], pairs.filter((p) => p[0] === c && p[1] === y).length);
      const sizes = labelHistogram(
        pairs.map((p) => p[0]),
        6,
      );
      for (let c = 0; c < 6; c++) assert.equal(sizes[c], pairs.filter((p) => p[0] === c).length);
    }),
    { numRuns: RUNS * 4 },
  );
});

test('galleries: the largest and smallest non-empty clusters and an even sample of the rest', () => {
  const sizes = [5, 0, 9, 1, 7, 3, 8, 2, 6, 4];
  // by size: 2 6 4 8 0 9 5 7 3; the middle 4 8 0 9 5 sampled at 0 and 2.5 -> 4, 0
  assert.deepEqual(galleryClusters(sizes, 2, 2), [2, 6, 4, 0, 7, 3]);
  assert.deepEqual(galleryClusters(sizes, 4, 20), [2, 6, 4, 8, 0, 9, 5, 7, 3]);
});

test('size balance is 1 for equal clusters and falls as one cluster takes over', () => {
  assert.equal(sizeBalance([5, 5, 5, 5]), 1);
  assert.ok(Math.abs(sizeBalance([20, 0, 0, 0])) < 1e-12);
  assert.ok(sizeBalance([10, 5, 3, 2]) < 1 && sizeBalance([10, 5, 3, 2]) > sizeBalance([17, 1, 1, 1]));
});

test('the log reader keeps the last of a repeated record and skips a cut line', () => {
  const lines = [
    { event: 'init', sizes: [3, 1], nmi: 0.5, min: 1, max: 3 },
    { epoch: 0, iteration: 2, loss: 2, headAccuracy: 0.1, changeRatio: 0.2, lr: 0.1, imagesPerSecond: 10 },
    { epoch: 0, iteration: 2, loss: 1.5, headAccuracy: 0.1, changeRatio: 0.2, lr: 0.1, imagesPerSecond: 10 },
    { event: 'epoch', epoch: 0, loss: 1.5, labelChurnNmi: 0.9, sizes: [2, 2] },
    { event: 'checkpoint', epoch: 1 },
  ].map((r) => JSON.stringify(r));
  const log = parseRunLog(`${lines.join('\n')}\n{"epoch": 1, "iter`);
  assert.equal(log.intervals.length, 1);
  assert.equal(log.intervals[0].loss, 1.5);
  assert.equal(log.epochs.length, 1);
  assert.equal(log.epochs[0].labelChurnNmi, 0.9);
  assert.deepEqual(log.init?.sizes, [3, 1]);
});

test('assignment rows stream to CSV (quoted ids) and JSON lines, and read back exactly', () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-assign-'));
  try {
    const ids = ['plain.png', 'with,comma.png', 'with "quote".png', 'x'.repeat(300)];
    const count = 3000; // more than one 64 KiB chunk
    const row = (i: number) => ({
      id: `${ids[i % 4]}#${i}`,
      label: i % 7,
      similarity: Math.cos(i),
      rank: 1 + (i % 11),
    });
    writeAssignments(join(dir, 'a.csv'), count, row);
    writeAssignments(join(dir, 'a.jsonl'), count, row);
    const jsonl = readFileSync(join(dir, 'a.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; label: number; similarity: number; rank: number });
    assert.equal(jsonl.length, count);
    // a minimal RFC 4180 reader (quoted fields with doubled quotes)
    const csvRows: string[][] = [];
    const text = readFileSync(join(dir, 'a.csv'), 'utf8');
    let field = '';
    let fields: string[] = [];
    let quoted = false;
    for (let p = 0; p < text.length; p++) {
      const ch = text[p];
      if (quoted) {
        if (ch === '"' && text[p + 1] === '"') ((field += '"'), p++);
        else if (ch === '"') quoted = false;
        else field += ch;
      } else if (ch === '"') quoted = true;
      else if (ch === ',') (fields.push(field), (field = ''));
      else if (ch === '\n') (fields.push(field), csvRows.push(fields), (fields = []), (field = ''));
      else field += ch;
    }
    assert.deepEqual(csvRows[0], ['id', 'label', 'similarity', 'rank']);
    assert.equal(csvRows.length, count + 1);
    for (let i = 0; i < count; i++) {
      const want = row(i);
      assert.deepEqual(csvRows[i + 1].slice(0, 2), [want.id, String(want.label)]);
      assert.equal(Number(csvRows[i + 1][3]), want.rank);
      assert.ok(Math.abs(Number(csvRows[i + 1][2]) - want.similarity) < 1e-6);
      assert.equal(jsonl[i].id, want.id);
      assert.ok(Math.abs(jsonl[i].similarity - want.similarity) < 1e-6);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The number of points a chart's paths draw (one M or L command each). */
function pathPoints(svg: string): number {
  return [...svg.matchAll(/<path class="series"[^>]* d="([^"]*)"/g)].reduce(
    (a, m) => a + (m[1].match(/[ML]/g)?.length ?? 0),
    0,
  );
}

test('the HTML: every chart draws its points, one heat-map row per cluster, galleries, nothing external', () => {
  const k = 6;
  const space = randomSpace(7, 60, 4, k);
  const ds: ImageDataset = {
    name: 'toy',
    n: 60,
    height: 4,
    width: 4,
    channels: 1,
    images: Uint8Array.from({ length: 60 * 16 }, (_, i) => (i * 37) % 256),
    labels: Int32Array.from({ length: 60 }, (_, i) => i % 3),
    numClasses: 3,
  };
  const sizes = Array.from(labelHistogram(space.labels, k));
  const matrix = clusterClassMatrix(space.labels, ds.labels!, k, 3);
  const run: RunReport = {
    name: 'toy-run',
    mode: 'odc',
    summary: 'ODC, toy',
    epochsPlanned: 3,
    log: parseRunLog(
      [
        JSON.stringify({ event: 'init', nmi: 0.3, min: 5, max: 15, sizes }),
        ...[1, 2, 3, 4].map((it) =>
          JSON.stringify({
            epoch: it > 2 ? 1 : 0,
            iteration: it,
            loss: 2 / it,
            headAccuracy: it / 10,
            changeRatio: 0.1,
            lr: 0.1,
            imagesPerSecond: 50,
            smallClusters: 1,
            minCluster: 4,
            maxCluster: 20,
          }),
        ),
        ...[0, 1].map((e) =>
          JSON.stringify({ event: 'epoch', epoch: e, loss: 1, nmi: 0.4, labelChurnNmi: 0.8 + e / 10, sizes }),
        ),
      ].join('\n'),
    ),
    k,
    sizes,
    galleries: buildGalleries(space, ds, { perCluster: 5, extremes: 1, others: 2 }),
    heat: { matrix, numClasses: 3, order: clusterClasses(matrix, k, 3).order },
    eval: { rows: [{ name: 'odc', values: { 'kNN top-1': 0.5 } }] },
  };
  const html = renderReport(run, []);
  const charts = [...html.matchAll(/<svg class="chart[^"]*" data-points="(\d+)"[\s\S]*?<\/svg>/g)];
  assert.ok(charts.length >= 9, `${charts.length} charts`);
  for (const [svg, points] of charts) {
    assert.ok(Number(points) > 0, `a chart without points: ${svg.slice(0, 200)}`);
    if (svg.includes('class="chart line"')) assert.equal(pathPoints(svg), Number(points));
    else assert.equal((svg.match(/<rect class="bar"/g) ?? []).length, Number(points));
  }
  assert.equal((html.match(/<g class="heat-row"/g) ?? []).length, k);
  const galleries = [
    ...html.matchAll(/<div class="gallery" data-cluster="(\d+)" data-size="(\d+)">([\s\S]*?)<\/div>/g),
  ];
  assert.equal(galleries.length, 4);
  for (const [, , size, body] of galleries)
    assert.equal((body.match(/<img /g) ?? []).length, Math.min(5, Number(size)));
  // self-contained: no URL other than data: URIs, no script
  assert.doesNotMatch(html, /(?:src|href)="(?!data:)/);
  assert.doesNotMatch(html, /<script|<link|@import|url\(/);
  assert.equal(sizeBins(20).length, 6);
});

test('long curves are thinned evenly to a bounded number of points, the last one kept', () => {
  const points = Array.from({ length: 10_001 }, (_, i) => [i, Math.sin(i)] as const);
  const kept = thinPoints(points);
  assert.ok(kept.length <= MAX_SERIES_POINTS + 1);
  assert.deepEqual(kept.at(-1), points.at(-1));
  assert.deepEqual(kept[0], points[0]);
  const svg = lineChart('long', 'iteration', [{ name: 'a', points }]);
  assert.equal(Number(/data-points="(\d+)"/.exec(svg)![1]), kept.length);
  assert.equal(pathPoints(svg), kept.length);
  assert.deepEqual(thinPoints(points.slice(0, 10)), points.slice(0, 10));
});

test('the report commands parse their flags, with defaults, and name a missing one', () => {
  assert.deepEqual(commandFromArgv(['report', '--run', 'runs/a', '--compare', 'runs/b', '--compare', 'runs/c']), {
    command: 'report',
    runDir: 'runs/a',
    compare: ['runs/b', 'runs/c'],
    out: undefined,
  });
  assert.deepEqual(commandFromArgv(['clusters', '--run', 'runs/a']), {
    command: 'clusters',
    runDir: 'runs/a',
    out: join('runs/a', 'clusters.csv'),
  });
  assert.deepEqual(commandFromArgv(['assign', '--run', 'r', '--data', 'folder:new', '--out', 'a.jsonl']), {
    command: 'assign',
    runDir: 'r',
    data: 'folder:new',
    out: 'a.jsonl',
  });
  assert.throws(() => commandFromArgv(['assign', '--run', 'r', '--out', 'a.csv']), /odc assign needs --data/);
  assert.throws(
    () => commandFromArgv(['report', '--run', 'r', '--compar', 'x']),
    /no flag --compar \(did you mean --compare\?\)/,
  );
  const train = commandFromArgv(['train', '--report', '--epochs', '1']);
  assert.ok(train.command === 'train' && train.report);
});

test("a subset keeps each image's identifier in its source; a head view keeps the first ones", () => {
  const ds: ImageDataset = {
    name: 'four',
    n: 4,
    height: 1,
    width: 1,
    channels: 1,
    images: Uint8Array.of(10, 11, 12, 13),
    labels: null,
    numClasses: null,
  };
  const picked = subsetDataset(ds, [3, 1]);
  assert.deepEqual(
    [0, 1].map((i) => imageId(picked, i)),
    ['3', '1'],
  );
  const files = { ...ds, ids: ['a.png', 'b.png', 'c.png', 'd.png'] };
  assert.deepEqual(
    [0, 1].map((i) => imageId(subsetDataset(files, [2, 0]), i)),
    ['c.png', 'a.png'],
  );
  assert.deepEqual(headDataset(files, 2).ids, ['a.png', 'b.png']);
  assert.equal(imageId(ds, 2), '2');
});

test('gallery thumbnails: box means of whole blocks, identity at factor 1, PNGs that decode to them', () => {
  const pixels = Uint8Array.from({ length: 5 * 4 * 3 }, (_, i) => (i * 53) % 256);
  assert.deepEqual(shrinkBox(pixels, 5, 4, 3, 1).data, pixels);
  const half = shrinkBox(pixels, 5, 4, 3, 2);
  assert.equal(half.height, 2);
  assert.equal(half.width, 2);
  for (let y = 0; y < 2; y++) {
    for (let x = 0; x < 2; x++) {
      for (let c = 0; c < 3; c++) {
        const at = (yy: number, xx: number) => pixels[(yy * 4 + xx) * 3 + c];
        const mean = (at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1)) / 4;
        assert.equal(half.data[(y * 2 + x) * 3 + c], Math.round(mean));
      }
    }
  }
  const ds: ImageDataset = {
    name: 'big',
    n: 1,
    height: 130,
    width: 100,
    channels: 3,
    images: Uint8Array.from({ length: 130 * 100 * 3 }, (_, i) => i % 251),
    labels: null,
    numClasses: null,
  };
  const uri = imageDataUri(ds, 0);
  const png = decodePng(Uint8Array.from(Buffer.from(uri.slice('data:image/png;base64,'.length), 'base64')));
  assert.deepEqual([png.width, png.height], [33, 43]);
  assert.deepEqual(png.data, shrinkBox(ds.images, 130, 100, 3, 3).data);
});
