/**
 * The recording path and the late small-cluster decisions (issue 9): uniform blocks from the arena, bind groups
 * reused with each dispatch's own uniform block, held work running after work submitted later, and ODC training
 * whose common-path iterations make no blocking read while giving the same results as deciding at once.
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { InFlightWindow } from '../src/gpu/inflight.ts';
import { Params } from '../src/gpu/params.ts';
import { clone, fillInPlace } from '../src/tensor/kernels.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { OdcMemory } from '../src/odc/memory.ts';
import { LateSmallClusterChecks } from '../src/odc/small-clusters.ts';
import { train } from '../src/odc/trainer.ts';
import { assertSameCheckpoint, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('uniform blocks pack like WGSL (4-byte fields, zero padding to 16) and a block whose arena slot was reused throws', () => {
  const p = new Params().u32(7, 0xffffffff).i32(-2).f32(1.5).u32(9);
  const words = new DataView(p.data.buffer);
  assert.equal(p.byteLength, 32);
  assert.deepEqual(
    [
      words.getUint32(0, true),
      words.getUint32(4, true),
      words.getInt32(8, true),
      words.getFloat32(12, true),
      words.getUint32(16, true),
    ],
    [7, 0xffffffff, -2, 1.5, 9],
  );
  for (let i = 20; i < 32; i += 4) assert.equal(words.getUint32(i, true), 0, `padding at byte ${i}`);
  assert.equal(new Params().byteLength, 16, 'an empty block is 16 bytes');
  assert.throws(() => new Params().u32(1.5), /uniform u32 out of range/);
  assert.throws(() => new Params(8).u32(1, 2, 3), /uniform block over 8 bytes/);
  for (let i = 0; i < 5000; i++) new Params().u32(i);
  assert.throws(() => p.data, /newer blocks reused its arena slot/);
});

test('a recurring (pipeline, buffers) combination reuses its bind group, and every dispatch reads its own uniform block', async () => {
  const g = gpu();
  const a = Tensor.empty([300], 'f32');
  const b = Tensor.empty([300], 'f32');
  const groups = g.stats.bindGroups;
  fillInPlace(a, 10);
  fillInPlace(b, 20);
  // at most one new group per buffer (fewer when an earlier test in this process bound the same pooled buffer)
  const firstRound = g.stats.bindGroups - groups;
  assert.ok(firstRound <= 2, `${firstRound} bind groups for two combinations`);
  for (let round = 1; round < 3; round++) {
    fillInPlace(a, 10 + round);
    fillInPlace(b, 20 + round);
  }
  assert.equal(g.stats.bindGroups - groups, firstRound, 'the recurring combinations reuse their bind groups');
  fillInPlace(a, 5);
  const [va, vb] = [await a.data(), await b.data()];
  assert.ok(
    va.every((v) => v === 5) && vb.every((v) => v === 22),
    `a ${va[0]}, b ${vb[0]}: each dispatch saw its own block`,
  );
  a.dispose();
  b.dispose();
});

test('a host write to a buffer the open encoder binds or copies waits for that work; one to another buffer does not submit', async () => {
  const g = gpu();
  const bound = Tensor.empty([64], 'f32');
  const source = Tensor.from(new Float32Array(64).fill(7), [64]);
  const other = Tensor.empty([64], 'f32');
  g.flush();
  fillInPlace(bound, 1); // recorded, not submitted: a write submitted ahead of it would be overwritten
  const copied = clone(source); // likewise: the copy must read the old values
  const submits = g.stats.submits;
  g.write(other.buffer, new Float32Array([4]));
  assert.equal(g.stats.submits, submits, 'a buffer the encoder does not use is written without a submit');
  g.write(bound.buffer, new Float32Array([5]));
  assert.equal(g.stats.submits, submits + 1, 'a buffer the encoder binds: the encoder is submitted first');
  copied.dispose();
  const again = clone(source);
  g.write(source.buffer, new Float32Array([9]));
  assert.equal(g.stats.submits, submits + 2, 'a buffer the encoder copies from: the encoder is submitted first');
  const [b, c, o] = [await bound.data(), await again.data(), await other.data()];
  assert.deepEqual([b[0], b[1]], [5, 1], 'the write landed after the fill');
  assert.deepEqual([c[0], c[1]], [7, 7], 'the copy read the values from before the write');
  assert.equal(o[0], 4);
  for (const t of [bound, source, other, again]) t.dispose();
});

test('held work runs after work submitted later, with its data writes and late reads in their recorded order', async () => {
  const g = gpu();
  const t = Tensor.empty([64], 'f32');
  fillInPlace(t, 0);
  g.hold();
  fillInPlace(t, 1);
  const seenInHold = g.readLater(t.buffer, 4);
  g.write(t.buffer, new Float32Array([3]), 4);
  const held = g.endHold();
  fillInPlace(t, 2); // recorded after the held work, runs before it
  held.submit();
  assert.deepEqual([...new Float32Array(await seenInHold)], [1], 'the late read sees the held fill, not the later one');
  const out = await t.data();
  assert.deepEqual([out[0], out[1], out[2]], [1, 3, 1], 'the held fill and write ran last, in order');
  assert.throws(() => held.submit(), /submitted or discarded already/);
  g.hold();
  await assert.rejects(t.data(), /blocking read while recorded work is held back/);
  g.endHold().discard();
  t.dispose();
});

test('an in-flight window settles oldest first, refuses more than its limit, and drops the rest after a failure', async () => {
  const settled: number[] = [];
  const dropped: number[] = [];
  const w = new InFlightWindow<number>(
    2,
    async (n) => {
      if (n === 13) throw new Error('bad entry');
      settled.push(n);
    },
    (n) => dropped.push(n),
  );
  w.push(1);
  w.push(2);
  assert.throws(() => w.push(3), /2 entries in flight already/);
  await w.makeRoom();
  w.push(3);
  await w.settleTo(0);
  assert.deepEqual(settled, [1, 2, 3]);
  w.push(13);
  w.push(14);
  await assert.rejects(w.settleTo(0), /bad entry/);
  assert.deepEqual(dropped, [14]);
  assert.equal(w.size, 0);
});

test('an error word found late stops with an error naming the iteration, and the work held behind it never runs', async () => {
  const n = 40;
  const memory = OdcMemory.create({ n, dim: 4, k: 2, minCluster: 1, seed: 3, kmeansIterations: 2 });
  const raw = Tensor.from(
    new Float32Array(n * 4).map((_, i) => ((i * 37) % 11) - 5),
    [n, 4],
  );
  await memory.init(raw);
  raw.dispose();
  const marker = Tensor.empty([4], 'f32');
  fillInPlace(marker, 1);
  const checks = new LateSmallClusterChecks(memory, 0.5);
  checks.begin();
  const bad = Tensor.from(new Uint32Array([0, n + 5]), [2], 'u32');
  memory.labelsOf(bad).dispose(); // an out-of-range GPU-tensor index: skipped and counted on the GPU
  checks.end(6);
  checks.begin();
  assert.ok(gpu().holding, 'the next iteration is held behind the open decision');
  fillInPlace(marker, 123);
  checks.end(7);
  await assert.rejects(
    checks.settle(0),
    (e: Error) => /in iteration 7, 1 out-of-range sample index/.test(e.message) && /last checkpoint/.test(e.message),
  );
  assert.equal(checks.pending, 0);
  assert.deepEqual([...(await marker.data())], [1, 1, 1, 1], 'the held iteration never ran');
  marker.dispose();
  bad.dispose();
  memory.dispose();
});

test('ODC training: no blocking read on common-path iterations, and the same checkpoint with the host running ahead as deciding at once', async () => {
  const ds = syntheticDataset();
  const dirs = [0, 1, 2].map((i) => mkdtempSync(join(tmpdir(), `odc-hostcost-${i}-`)));
  try {
    // minCluster 1: no cluster is ever small here, so every iteration but the log and epoch-end ones is common-path.
    const calm = tinyConfig('odc.minCluster=1');
    const perIteration: number[] = [];
    let last = gpu().stats.reads;
    const result = await train({
      config: calm,
      outDir: dirs[0],
      dataset: ds,
      quiet: true,
      afterIteration: () => {
        perIteration.push(gpu().stats.reads - last);
        last = gpu().stats.reads;
      },
    });
    assert.equal(result.splits, 0);
    assert.equal(perIteration.length, 12);
    // 6 iterations per epoch, a log record every 4th and at the epoch's end. A hook's count runs from the previous
    // hook, so the first iteration of an epoch also counts the initial clustering or the previous epoch's end.
    const perEpoch = ds.n / calm.optim.batchSize;
    const common = perIteration.filter((_, i) => {
      const b = (i % perEpoch) + 1;
      return b !== 1 && b % calm.log.interval !== 0 && b !== perEpoch;
    });
    assert.equal(common.length, 6);
    assert.deepEqual(
      common,
      common.map(() => 0),
      `blocking reads per iteration: ${perIteration.join(', ')}`,
    );

    // The default tiny run splits; an afterIteration hook makes the loop decide every iteration at once.
    const ahead = await train({ config: tinyConfig(), outDir: dirs[1], dataset: ds, quiet: true });
    const atOnce = await train({
      config: tinyConfig(),
      outDir: dirs[2],
      dataset: ds,
      quiet: true,
      afterIteration: () => {},
    });
    assert.ok(ahead.splits > 0, 'the tiny fixture splits clusters');
    assert.equal(ahead.splits, atOnce.splits);
    assert.deepEqual(
      ahead.epochs.map((e) => [e.loss, e.nmi, e.minCluster, e.maxCluster]),
      atOnce.epochs.map((e) => [e.loss, e.nmi, e.minCluster, e.maxCluster]),
    );
    await assertSameCheckpoint(dirs[1], dirs[2]);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
