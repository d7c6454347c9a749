/**
 * The ODC memory past one storage binding (src/odc/memory.ts, feature rows in shards): a small memory forced
 * into several shards gives the same bits as one buffer, and a synthetic 300,000 x 128 memory (153.6 MB, over
 * the 128 MiB binding) initialises, updates, recomputes centroids and round-trips a checkpoint, checked
 * against host computations (ODC-SPEC section 5 invariants); k-means++ over shards and the report's chunked
 * read of the memory give what one buffer gives. Node only: not a CORE_TEST_FILES member.
 */
import { test, before } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { kmeans } from '../src/odc/kmeans.ts';
import { clusterRanking } from '../src/report/clusters.ts';
import { memoryRanking } from '../src/report/assignments.ts';
import { exportMemoryState, memoryFromState, memoryRecords } from '../src/odc/memory-records.ts';
import { CheckpointError, encodeRecords, readRecords, writeRecords } from '../src/odc/checkpoint-io.ts';
import {
  centroidsAreMeans,
  expectHolds,
  labelsAreArgmax,
  memoryUpdateRows,
  unitNormRows,
} from '../src/testing/index.ts';

before(async () => {
  await setupGpu();
});

/** n rows of d around k random unit centres (noise 0.3), as f32. */
function blobs(rng: Rng, n: number, d: number, k: number): Float32Array {
  const centres = Float32Array.from({ length: k * d }, () => rng.normal());
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = rng.int(k);
    for (let j = 0; j < d; j++) out[i * d + j] = centres[c * d + j] + 0.3 * rng.normal();
  }
  return out;
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i} differs (${a[i]} vs ${b[i]})`);
}

async function snapshot(m: OdcMemory) {
  return {
    features: await m.featuresData(),
    labels: await m.labels.data(),
    centroids: await m.centroids.data(),
    weights: await m.weights.data(),
  };
}

test('a memory forced into shards gives the bits of one buffer: init (k-means, small clusters), updates, centroids, checkpoint', async () => {
  const n = 3000;
  const d = 24;
  const k = 12;
  const rng = new Rng(7);
  const rawHost = blobs(rng, n, d, 5); // 5 blobs in 12 clusters: k-means leaves small clusters to split
  const options = { n, dim: d, k, minCluster: 200, seed: 11, kmeansIterations: 6 };
  const one = OdcMemory.create(options);
  const sharded = OdcMemory.create({ ...options, maxShardBytes: 704 * d * 4 }); // 704 rows per shard: 5 shards, the last partial
  assert.equal(one.featureShards.parts.length, 1);
  assert.equal(sharded.featureShards.parts.length, 5);
  const raw = Tensor.from(rawHost, [n, d], 'f32');
  const reportOne = await one.init(raw);
  const reportSharded = await sharded.init(raw);
  raw.dispose();
  assert.deepEqual(reportSharded.inertia, reportOne.inertia);
  assert.deepEqual(reportSharded.smallClusters.splits, reportOne.smallClusters.splits);
  assert.ok(
    reportOne.smallClusters.splits.length > 0,
    'the configuration is meant to exercise the small-cluster splits',
  );
  let a = await snapshot(one);
  let b = await snapshot(sharded);
  sameBits(b.features, a.features, 'init features');
  assert.deepEqual(b.labels, a.labels);
  sameBits(b.centroids, a.centroids, 'init centroids');
  for (let step = 0; step < 4; step++) {
    // batches straddling the shard boundaries, with duplicates
    const idx = Uint32Array.from({ length: 200 }, (_, i) => (i < 8 ? 704 * (1 + (i % 4)) - (i >> 2) : rng.int(n)));
    idx[199] = idx[3];
    const fresh = Tensor.from(
      Float32Array.from({ length: 200 * d }, () => rng.normal()),
      [200, d],
      'f32',
    );
    one.update(idx, fresh);
    sharded.update(idx, fresh);
    fresh.dispose();
    one.recomputeCentroids();
    sharded.recomputeCentroids();
  }
  assert.deepEqual(await sharded.changeCount.data(), await one.changeCount.data());
  a = await snapshot(one);
  b = await snapshot(sharded);
  sameBits(b.features, a.features, 'updated features');
  assert.deepEqual(b.labels, a.labels);
  sameBits(b.centroids, a.centroids, 'recomputed centroids');
  // the streamed checkpoint (features read shard by shard, CRC in the rewritten header) has the bytes of the
  // whole-memory encoding, and restores into another shard layout by pieces
  const dir = mkdtempSync(join(tmpdir(), 'odc-shards-'));
  try {
    const path = join(dir, 'memory.odc');
    const m = await memoryRecords(sharded);
    await writeRecords(path, { 'memory.features': m.features, ...m.records }, m.meta);
    const state = await exportMemoryState(one);
    assert.deepEqual(new Uint8Array(readFileSync(path)), encodeRecords(state.records, state.meta));
    const file = await readRecords(path, { stream: (name) => name === 'memory.features' });
    assert.equal(file.records.has('memory.features'), false);
    const restored = memoryFromState(file.meta, file.records, { maxShardBytes: 1024 * d * 4, streamed: file.streamed }); // 1024 rows per shard
    assert.equal(restored.featureShards.parts.length, 3);
    const r = await snapshot(restored);
    sameBits(r.features, a.features, 'restored features');
    assert.deepEqual(r.labels, a.labels);
    sameBits(r.centroids, a.centroids, 'restored centroids');
    restored.dispose();
    // a flipped feature byte is found when the streamed record is read (its CRC), and leaves no memory behind
    const bytes = readFileSync(path);
    const headerLength = bytes.readUInt32LE(8);
    const header = JSON.parse(bytes.subarray(16, 16 + headerLength).toString()) as {
      records: Array<{ name: string; offset: number }>;
    };
    const featuresAt =
      Math.ceil((16 + headerLength) / 8) * 8 + header.records.find((e) => e.name === 'memory.features')!.offset;
    bytes[featuresAt + 4 * d * 2000] ^= 0x40;
    writeFileSync(path, bytes);
    const bad = await readRecords(path, { stream: (name) => name === 'memory.features' });
    assert.throws(
      () => memoryFromState(bad.meta, bad.records, { streamed: bad.streamed }),
      (err: unknown) => err instanceof CheckpointError && /memory\.features.*CRC/.test(err.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const mem of [one, sharded]) mem.dispose();
});

test("the report's ranking read from a sharded memory in chunks equals the one of its whole host copy", async () => {
  const n = 3000;
  const d = 24;
  const k = 12;
  const memory = OdcMemory.create({
    n,
    dim: d,
    k,
    minCluster: 20,
    seed: 2,
    kmeansIterations: 2,
    maxShardBytes: 704 * d * 4,
  });
  const raw = Tensor.from(blobs(new Rng(9), n, d, 5), [n, d], 'f32');
  await memory.init(raw);
  raw.dispose();
  const whole = clusterRanking({
    n,
    dim: d,
    k,
    features: await memory.featuresData(),
    labels: await memory.labels.data(),
  });
  const chunked = await memoryRanking(memory, 500 * d * 4); // chunks of 500 rows, across the 704-row shards
  assert.deepEqual(chunked.labels, whole.labels);
  sameBits(chunked.similarity, whole.similarity, 'similarities');
  assert.equal(chunked.n, n);
  assert.equal(chunked.k, k);
  memory.dispose();
});

test('k-means++ seeding over row shards (the last partial) gives the bits of one buffer', async () => {
  const n = 2000;
  const d = 16;
  const k = 9;
  const rng = new Rng(21);
  const rows = blobs(rng, n, d, 6);
  const whole = Tensor.from(rows, [n, d], 'f32');
  const rowsPerShard = 448; // 5 shards: 4 of 448 rows, the last of 208
  const parts: Tensor<'f32'>[] = [];
  for (let row0 = 0; row0 < n; row0 += rowsPerShard)
    parts.push(
      Tensor.from(
        rows.subarray(row0 * d, Math.min(n, row0 + rowsPerShard) * d),
        [Math.min(rowsPerShard, n - row0), d],
        'f32',
      ),
    );
  const options = { iterations: 3, seed: 4, init: 'kmeans++' as const };
  const a = kmeans(whole, n, d, k, options);
  const b = kmeans({ parts, rowsPerShard, n, d }, n, d, k, options);
  sameBits(await b.centroids.data(), await a.centroids.data(), 'centroids');
  assert.deepEqual(await b.labels.data(), await a.labels.data());
  sameBits(await b.inertia.data(), await a.inertia.data(), 'inertia');
  for (const t of [
    whole,
    ...parts,
    a.centroids,
    a.labels,
    a.inertia,
    a.emptyStats,
    b.centroids,
    b.labels,
    b.inertia,
    b.emptyStats,
  ])
    t.dispose();
});

test('a 300,000 x 128 memory (over one 128 MiB binding) initialises, updates, recomputes centroids and checkpoints', async () => {
  const n = 300_000;
  const d = 128;
  const k = 16;
  const limit = gpu().limits.maxStorageBufferBindingSize;
  const memory = OdcMemory.create({ n, dim: d, k, minCluster: 20, seed: 3, kmeansIterations: 3 });
  const shardCount = memory.featureShards.parts.length;
  assert.ok(
    n * d * 4 <= limit || shardCount >= 2,
    `expected several shards under a ${limit}-byte binding, got ${shardCount}`,
  );
  const rng = new Rng(5);
  const rawHost = blobs(rng, n, d, k);
  const blocks: Tensor<'f32'>[] = [];
  let row0 = 0;
  for (const part of memory.featureShards.parts) {
    const rows = part.shape[0];
    blocks.push(Tensor.from(rawHost.subarray(row0 * d, (row0 + rows) * d), [rows, d], 'f32'));
    row0 += rows;
  }
  const report = await memory.init(blocks);
  for (const t of blocks) t.dispose();
  assert.ok(
    report.inertia[report.inertia.length - 1] <= report.inertia[0],
    `k-means inertia rose: ${report.inertia.join(', ')}`,
  );
  let features = await memory.featuresData();
  let labels = await memory.labels.data();
  let centroids = await memory.centroids.data();
  expectHolds(unitNormRows(features, d, { raw: rawHost }));
  expectHolds(centroidsAreMeans(features, labels, centroids, k, d));
  // a batch around the shard boundary and across the memory, one duplicate
  const boundary = memory.featureShards.rowsPerShard;
  const b = 512;
  const idx = Uint32Array.from({ length: b }, (_, i) => (i < 16 ? Math.min(n - 1, boundary - 8 + i) : rng.int(n)));
  idx[b - 1] = idx[7];
  const freshHost = Float32Array.from({ length: b * d }, () => rng.normal());
  const fresh = Tensor.from(freshHost, [b, d], 'f32');
  memory.update(idx, fresh);
  fresh.dispose();
  const after = { features: await memory.featuresData(), labels: await memory.labels.data() };
  expectHolds(memoryUpdateRows({ features, labels }, after, idx, freshHost, memory.momentum, d));
  expectHolds(labelsAreArgmax(after.features, after.labels, centroids, k, d, { rows: idx }));
  memory.recomputeCentroids();
  features = after.features;
  labels = after.labels;
  centroids = await memory.centroids.data();
  expectHolds(centroidsAreMeans(features, labels, centroids, k, d));
  const dir = mkdtempSync(join(tmpdir(), 'odc-shards-'));
  try {
    const path = join(dir, 'memory.odc');
    // the checkpoint's way: features streamed out shard by shard and back in pieces of one shard
    const m = await memoryRecords(memory);
    await writeRecords(path, { 'memory.features': m.features, ...m.records }, m.meta);
    const file = await readRecords(path, { stream: (name) => name === 'memory.features' });
    const restored = memoryFromState(file.meta, file.records, { streamed: file.streamed });
    assert.equal(restored.featureShards.parts.length, shardCount);
    sameBits(await restored.featuresData(), features, 'restored features');
    assert.deepEqual(await restored.labels.data(), labels);
    sameBits(await restored.centroids.data(), centroids, 'restored centroids');
    restored.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    memory.dispose();
  }
});
