/**
 * The report, `odc clusters`, `odc assign` and `odc eval` on real (tiny) runs: the label churn and cluster
 * sizes the loop logs match the labels captured at each epoch end; rewriting the report every epoch leaves
 * the run bit-identical; the cluster rows and new-image assignments match a float64 brute force from the
 * checkpoint's memory and the network's features; an unlabelled folder run evaluates and reports.
 */
import { before, test } from 'node:test';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import {
  assertSameCheckpoint,
  loggedResults,
  readLog,
  syntheticDataset,
  tinyConfig,
  tinyIdxConfig,
  writeIdxDataset,
} from './train-fixtures.ts';
import { train } from '../src/odc/trainer.ts';
import type { TrainConfig } from '../src/config/settings.ts';
import { nmi } from '../src/metrics/nmi.ts';
import { encodePng } from '../src/data/png.ts';
import { writeLiveReport, writeReport } from '../src/report/write.ts';
import { writeAssignment, writeClusters } from '../src/report/assignments.ts';
import { evaluateRun } from '../src/eval/run-eval.ts';
import { loadCheckpoint } from '../src/odc/checkpoint.ts';
import { buildModel } from '../src/odc/build.ts';
import { extractFeatures } from '../src/odc/extract.ts';
import { GpuAugmenter } from '../src/data/augment.ts';
import { augmentConfig } from '../src/data/training-data.ts';
import { loadImageFolder } from '../src/data/image-folder.ts';
import { Rng } from '../src/util/rng.ts';

before(async () => {
  await setupGpu();
});

const histogram = (labels: ArrayLike<number>, k: number): number[] => {
  const h = new Array<number>(k).fill(0);
  for (let i = 0; i < labels.length; i++) h[labels[i]]++;
  return h;
};

/** Parses `odc clusters` / `odc assign` CSV whose ids hold no comma or quote. */
function readCsv(path: string): Array<{ id: string; label: number; similarity: number; rank: number }> {
  const [header, ...rows] = readFileSync(path, 'utf8').trim().split('\n');
  assert.equal(header, 'id,label,similarity,rank');
  return rows.map((r) => {
    const [id, label, similarity, rank] = r.split(',');
    return { id, label: Number(label), similarity: Number(similarity), rank: Number(rank) };
  });
}

/** Float64 brute force: centroids = normalised member means of `features` by `labels`; cosine of each row to each. */
function bruteCentroids(features: Float32Array, labels: ArrayLike<number>, dim: number, k: number): Float64Array[] {
  const sums = Array.from({ length: k }, () => new Float64Array(dim));
  for (let i = 0; i < labels.length; i++) for (let j = 0; j < dim; j++) sums[labels[i]][j] += features[i * dim + j];
  return sums.map((s) => {
    const norm = Math.hypot(...s);
    return norm > 0 ? s.map((v) => v / norm) : s;
  });
}
function cosine(c: Float64Array, x: Float32Array, row: number, dim: number): number {
  let dot = 0;
  let xx = 0;
  for (let j = 0; j < dim; j++) {
    dot += c[j] * x[row * dim + j];
    xx += x[row * dim + j] ** 2;
  }
  return xx > 0 ? dot / Math.sqrt(xx) : 0;
}

/** The expected rank of each row: 1 + rows of its cluster with a higher similarity (ties by index). */
function bruteRanks(labels: number[], sims: number[]): number[] {
  return labels.map(
    (l, i) => 1 + labels.filter((m, j) => m === l && (sims[j] > sims[i] || (sims[j] === sims[i] && j < i))).length,
  );
}

test("the loop logs the initial sizes and each epoch's label churn and sizes; --report leaves the run bit-identical", async () => {
  const data = mkdtempSync(join(tmpdir(), 'odc-report-data-'));
  const withReport = mkdtempSync(join(tmpdir(), 'odc-report-run-'));
  const without = mkdtempSync(join(tmpdir(), 'odc-report-plain-'));
  try {
    const config = tinyIdxConfig(writeIdxDataset(data, syntheticDataset(96)), 3);
    const epochLabels: Uint32Array[] = [];
    let initial: Uint32Array | undefined;
    await train({
      config,
      outDir: withReport,
      quiet: true,
      onEpoch: async (_, session) => {
        initial ??= session.initialLabels;
        epochLabels.push(Uint32Array.from((await session.mode.epochLabels()).labels));
        await writeLiveReport(session);
      },
    });
    await train({ config, outDir: without, quiet: true });
    await assertSameCheckpoint(withReport, without);
    assert.deepEqual(loggedResults(withReport), loggedResults(without));

    const k = config.odc.k;
    const log = readLog(withReport);
    const init = log.find((r) => r.event === 'init')!;
    assert.ok(initial, 'a fresh ODC run keeps its initial labels');
    assert.deepEqual(init.sizes, histogram(initial, k));
    const epochs = log.filter((r) => r.event === 'epoch');
    assert.equal(epochs.length, 3);
    epochs.forEach((e, i) => {
      const previous = i === 0 ? initial! : epochLabels[i - 1];
      assert.equal(e.labelChurnNmi, nmi(epochLabels[i], previous));
      assert.deepEqual(e.sizes, histogram(epochLabels[i], k));
    });
    const html = readFileSync(join(withReport, 'report.html'), 'utf8');
    assert.equal((html.match(/<g class="heat-row"/g) ?? []).length, k);
    assert.ok(!existsSync(join(withReport, 'report.html.partial')));

    // odc clusters against a float64 brute force from the checkpoint's memory
    await writeClusters({ runDir: withReport, out: join(withReport, 'clusters.csv') });
    const rows = readCsv(join(withReport, 'clusters.csv'));
    const ckpt = await loadCheckpoint(withReport);
    const model = buildModel(ckpt.meta.config, 1, new Rng(0));
    const memory = ckpt.restore(model, null)!;
    const features = await memory.features.data();
    const labels = Array.from(await memory.labels.data());
    memory.dispose();
    model.dispose();
    const dim = config.model.featureDim;
    const centroids = bruteCentroids(features, labels, dim, k);
    const sims = labels.map((l, i) => cosine(centroids[l], features, i, dim));
    assert.equal(rows.length, 96);
    rows.forEach((r, i) => {
      assert.equal(r.id, String(i));
      assert.equal(r.label, labels[i]);
      assert.ok(Math.abs(r.similarity - sims[i]) < 1e-5, `row ${i}: ${r.similarity} vs ${sims[i]}`);
    });
    const ranks = bruteRanks(
      labels,
      rows.map((r) => r.similarity),
    );
    rows.forEach((r, i) => assert.equal(r.rank, ranks[i]));
  } finally {
    for (const d of [data, withReport, without]) rmSync(d, { recursive: true, force: true });
  }
});

test('DeepCluster: the live report (backbone features extracted each epoch) leaves the run bit-identical', async () => {
  const data = mkdtempSync(join(tmpdir(), 'odc-report-dc-data-'));
  const withReport = mkdtempSync(join(tmpdir(), 'odc-report-dc-'));
  const without = mkdtempSync(join(tmpdir(), 'odc-report-dc-plain-'));
  try {
    const config: TrainConfig = {
      ...tinyIdxConfig(writeIdxDataset(data, syntheticDataset(96)), 2),
      mode: 'deepcluster',
    };
    let reports = 0;
    await train({
      config,
      outDir: withReport,
      quiet: true,
      onEpoch: async (_, session) => {
        await writeLiveReport(session);
        reports++;
      },
    });
    await train({ config, outDir: without, quiet: true });
    assert.equal(reports, 2);
    await assertSameCheckpoint(withReport, without);
    assert.deepEqual(loggedResults(withReport), loggedResults(without));
    const epochs = readLog(withReport).filter((r) => r.event === 'epoch');
    assert.equal(epochs[0].labelChurnNmi, undefined, 'DeepCluster has no labels before its first epoch');
    assert.equal(typeof epochs[1].labelChurnNmi, 'number');
    const html = readFileSync(join(withReport, 'report.html'), 'utf8');
    assert.equal((html.match(/<g class="heat-row"/g) ?? []).length, config.odc.k);
  } finally {
    for (const d of [data, withReport, without]) rmSync(d, { recursive: true, force: true });
  }
});

/** A flat folder (no class sub-folders: no labels) of 8x8 gray bar images. */
function writeImageFolder(dir: string, n: number, seed: number): void {
  mkdirSync(dir, { recursive: true });
  const ds = syntheticDataset(n);
  const rng = new Rng(seed);
  for (let i = 0; i < n; i++) {
    const pixels = ds.images.slice(i * 64, (i + 1) * 64).map((v) => Math.min(255, v + Math.floor(rng.range(0, 20))));
    writeFileSync(join(dir, `img-${String(i).padStart(3, '0')}.png`), encodePng(8, 8, pixels, { colorType: 0 }));
  }
}

test('an unlabelled folder run: eval without labels, the report, clusters with file paths, assign against brute force', async () => {
  const root = mkdtempSync(join(tmpdir(), 'odc-report-folder-'));
  try {
    const images = join(root, 'images');
    const fresh = join(root, 'new');
    const run = join(root, 'run');
    writeImageFolder(images, 48, 1);
    writeImageFolder(fresh, 7, 2);
    const config = tinyConfig(
      'data.source=folder',
      `data.path=${images}`,
      'optim.epochs=2',
      'odc.k=4',
      'odc.minCluster=3',
    );
    await train({ config, outDir: run, quiet: true });

    const rows = await evaluateRun({ runDir: run, baseline: true, probeEpochs: 2 });
    const saved = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as { rows: typeof rows };
    assert.deepEqual(saved.rows, rows);
    const trained = rows[0].values;
    const agreement = trained['kNN agreement'] as number;
    assert.ok(agreement >= 0 && agreement <= 1);
    assert.equal(typeof rows[1].values['kNN agreement'], 'number');
    const ckpt = await loadCheckpoint(run);
    const model = buildModel(config, 1, new Rng(0));
    const memory = ckpt.restore(model, null)!;
    const memFeatures = await memory.features.data();
    const memLabels = Array.from(await memory.labels.data());
    memory.dispose();
    const sizes = histogram(memLabels, 4);
    assert.equal(trained['smallest cluster'], Math.min(...sizes));
    assert.equal(trained['largest cluster'], Math.max(...sizes));
    assert.equal(
      trained['label churn NMI'],
      readLog(run)
        .filter((r) => r.event === 'epoch')
        .at(-1)!.labelChurnNmi,
    );

    const report = await writeReport({ runDir: run, compare: [] });
    const html = readFileSync(report, 'utf8');
    assert.doesNotMatch(html, /heat-row/);
    assert.match(html, new RegExp(`alt="${join(images, 'img-')}\\d{3}\\.png"`));
    assert.match(html, /kNN agreement/);

    await writeClusters({ runDir: run, out: join(run, 'clusters.jsonl') });
    const clusterRows = readFileSync(join(run, 'clusters.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; label: number });
    assert.deepEqual(
      clusterRows.map((r) => r.id),
      Array.from({ length: 48 }, (_, i) => join(images, `img-${String(i).padStart(3, '0')}.png`)),
    );
    assert.deepEqual(
      clusterRows.map((r) => r.label),
      memLabels,
    );

    // odc assign: brute-force nearest centroid of the network's eval-mode features of the new images
    await writeAssignment({ runDir: run, data: `folder:${fresh}`, out: join(run, 'assign.csv') });
    const assigned = readCsv(join(run, 'assign.csv'));
    const newImages = loadImageFolder(fresh);
    const augmenter = new GpuAugmenter(newImages, augmentConfig(config, newImages));
    const f = extractFeatures(model, (x) => model.features(x), augmenter, config.model.featureDim, 16);
    const newFeatures = await f.data();
    f.dispose();
    augmenter.dispose();
    model.dispose();
    const dim = config.model.featureDim;
    const centroids = bruteCentroids(memFeatures, memLabels, dim, 4);
    assert.equal(assigned.length, 7);
    assigned.forEach((r, i) => {
      assert.equal(r.id, join(fresh, `img-${String(i).padStart(3, '0')}.png`));
      const scores = centroids.map((c, ci) => (sizes[ci] === 0 ? -Infinity : cosine(c, newFeatures, i, dim)));
      const best = Math.max(...scores);
      assert.ok(scores[r.label] >= best - 1e-5, `image ${i}: cluster ${r.label} (${scores[r.label]}), best ${best}`);
      assert.ok(Math.abs(r.similarity - best) < 1e-5);
    });
    const ranks = bruteRanks(
      assigned.map((r) => r.label),
      assigned.map((r) => r.similarity),
    );
    assigned.forEach((r, i) => assert.equal(r.rank, ranks[i]));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
