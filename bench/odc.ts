/**
 * ODC memory costs: per-iteration memory update + relabel, full centroid recompute, small-cluster
 * handling, loss weights, and the 20-iteration initial k-means.
 *   npx tsx bench/odc.ts [--quick | --full]
 * Full size is ImageNet's (N = 1,281,167, D = 256, K = 10,000, batch 512: 1.3 GB of memory features).
 * --quick (implied on CPU adapters such as lavapipe) runs a scaled-down memory, N = 20,000, D = 128,
 * K = 200, batch 512; every row names its sizes.
 */
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { handleSmallClusters } from '../src/odc/small-clusters.ts';
import { kmeans } from '../src/odc/kmeans.ts';
import { runIfMain, timeGpu, type BenchOptions, type BenchRow } from './common.ts';

/** Memory sizes of one run (bench/gpu-stages.ts passes its own). */
export interface Size {
  n: number;
  d: number;
  k: number;
  batch: number;
  minCluster: number;
}

function randomFeatures(rng: Rng, rows: number, d: number): Tensor<'f32'> {
  const data = new Float32Array(rows * d);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, rng.normal());
  return Tensor.from(data, [rows, d]);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

export async function run(options: BenchOptions, override?: Size): Promise<BenchRow[]> {
  const size: Size =
    override ??
    (options.quick
      ? { n: 20_000, d: 128, k: 200, batch: 512, minCluster: 15 }
      : { n: 1_281_167, d: 256, k: 10_000, batch: 512, minCluster: 20 });
  const { n, d, k, batch } = size;
  const tag = `N=${n} D=${d} K=${k}`;
  const note = n === 1_281_167 ? 'ImageNet scale' : 'scaled down';
  const rng = new Rng(1);
  const rows: BenchRow[] = [];
  const raw = randomFeatures(rng, n, d);

  const memory = OdcMemory.create({ n, dim: d, k, minCluster: size.minCluster, seed: 7 });
  const t0 = performance.now();
  await memory.init(raw);
  await gpu().sync();
  rows.push({
    name: `memory.init (normalise, k-means, small pass), ${tag}`,
    ms: performance.now() - t0,
    note: `${note}; one run, includes kernel compilation`,
  });
  raw.dispose();

  // The initial k-means alone (20 iterations + final assignment) over the normalised memory features.
  const kmFlops = 2 * n * k * d * 21;
  const kmMs = await timeGpu(
    `kmeans ${tag}`,
    () => {
      const r = kmeans(memory.features, n, d, k, { iterations: 20, seed: 3 });
      for (const t of Object.values(r)) t.dispose();
    },
    { iterations: 1 },
  );
  rows.push({
    name: `initial k-means 20 it, ${tag}`,
    ms: kmMs,
    value: kmFlops / kmMs / 1e6,
    unit: 'GFLOP/s',
    note: `${note}; assignment GEMM flops`,
  });

  const idx = Tensor.from(
    Uint32Array.from({ length: batch }, () => rng.int(n)),
    [batch],
    'u32',
  );
  const feats = randomFeatures(rng, batch, d);
  const upFlops = 2 * batch * k * d;
  const upMs = await timeGpu('update', () => memory.update(idx, feats), { iterations: 20 });
  rows.push({
    name: `update + relabel B=${batch}, ${tag}`,
    ms: upMs,
    value: upFlops / upMs / 1e6,
    unit: 'GFLOP/s',
    note,
  });
  const labMs = await timeGpu('labelsOf', () => memory.labelsOf(idx).dispose(), { iterations: 20 });
  rows.push({ name: `labelsOf B=${batch}`, ms: labMs, note });
  const rcMs = await timeGpu('recompute', () => memory.recomputeCentroids(), { iterations: 5 });
  rows.push({
    name: `full centroid recompute, ${tag}`,
    ms: rcMs,
    value: (n * d * 4) / rcMs / 1e6,
    unit: 'GB/s (features read)',
    note,
  });
  const wMs = await timeGpu('weights', () => memory.updateWeights(), { iterations: 20 });
  rows.push({ name: `loss weights (histogram + normalise), K=${k}`, ms: wMs, note });
  const noneMs = await timeGpu('small none', async () => void (await handleSmallClusters(memory)), { iterations: 10 });
  rows.push({ name: `small-cluster handling, nothing small, ${tag}`, ms: noneMs, note: `${note}; histogram readback` });

  // Small-cluster handling with 4 clusters made small (2 members each) before every timed call.
  const labels = await memory.labels.data();
  const victims = [1, 2, 3, 4].map((i) => Math.floor((i * k) / 5));
  const prepared = labels.slice();
  const kept = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const c = prepared[i];
    if (!victims.includes(c)) continue;
    const seen = kept.get(c) ?? 0;
    if (seen < 2) kept.set(c, seen + 1);
    else prepared[i] = (c + 1) % k;
  }
  const times: number[] = [];
  let splits = 0;
  for (let r = 0; r < 4; r++) {
    gpu().write(memory.labels.buffer, prepared);
    memory.recomputeCentroids();
    await gpu().sync();
    const t = performance.now();
    const report = await handleSmallClusters(memory);
    await gpu().sync();
    if (r > 0) times.push(performance.now() - t);
    splits = report.splits.length;
  }
  rows.push({
    name: `small-cluster handling, ${splits} small -> ${splits} splits, ${tag}`,
    ms: median(times),
    note: `${note}; GPU 2-means, 3 restarts x 20 steps`,
  });
  for (const t of [idx, feats, memory]) t.dispose();
  return rows;
}

await runIfMain(import.meta.url, run);
