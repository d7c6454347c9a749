/**
 * End-to-end training with the ODC memory in several shards (issue 12 item 4): the trainer's option
 * maxMemoryShardBytes forces S = 2 or 3 feature shards on the tiny fixture, and the checkpoints (model, optimiser,
 * memory features, labels, centroids, RNG states) and logged results are byte-identical to the run with one shard,
 * with random and k-means++ seeding of the initial k-means, and across a resume that restores into another layout.
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { applyOverride, type TrainConfig } from '../src/config/settings.ts';
import { assertSameCheckpoint, loggedResults, readLog, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

const ds = syntheticDataset(); // 96 images; tinyConfig: featureDim 16, batch 16
/** Bytes of `rows` memory rows of tinyConfig's 16 features: 48 rows -> 2 shards, 32 rows -> 3 shards of the 96. */
const shardOf = (rows: number): number => rows * 16 * 4;

/** The run's log record of its initial clustering. */
const initEvent = (dir: string) => readLog(dir).find((r) => r.event === 'init')!;

/** Trains in `extra.outDir` or a fresh folder (the caller removes it); returns the folder and the splits made. */
async function run(
  config: TrainConfig,
  maxMemoryShardBytes?: number,
  extra: { outDir?: string; stopAfterIterations?: number; resume?: boolean } = {},
): Promise<{ dir: string; splits: number }> {
  const outDir = extra.outDir ?? mkdtempSync(join(tmpdir(), 'odc-train-shards-'));
  const result = await train({
    config,
    outDir,
    dataset: ds,
    quiet: true,
    maxMemoryShardBytes,
    stopAfterIterations: extra.stopAfterIterations,
    resume: extra.resume,
  });
  return { dir: outDir, splits: result.splits };
}

test('training with the memory in 3 shards, stopped and resumed into 2, gives the bytes of one shard', async () => {
  const dirs: string[] = [];
  try {
    const one = await run(tinyConfig());
    dirs.push(one.dir);
    // stopped mid-way with 3 shards, resumed with 2: the checkpoint streams the features out and in by pieces
    const sharded = await run(tinyConfig(), shardOf(32), { stopAfterIterations: 8 });
    dirs.push(sharded.dir);
    const rest = await run(tinyConfig(), shardOf(48), { outDir: sharded.dir, resume: true });
    assert.equal(initEvent(sharded.dir).memoryShards, 3);
    assert.equal(initEvent(one.dir).memoryShards, 1);
    assert.ok(
      sharded.splits + rest.splits > 0,
      'the fixture is meant to split small clusters (rows gathered across shards)',
    );
    await assertSameCheckpoint(one.dir, sharded.dir);
    assert.deepEqual(loggedResults(sharded.dir), loggedResults(one.dir));
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('k-means++ seeding with the memory in 2 shards gives the bytes of one shard', async () => {
  const config = applyOverride(applyOverride(tinyConfig(), 'odc.kmeansInit=kmeans++'), 'optim.epochs=1');
  const dirs: string[] = [];
  try {
    const one = (await run(config)).dir;
    dirs.push(one);
    const two = (await run(config, shardOf(48))).dir;
    dirs.push(two);
    await assertSameCheckpoint(one, two);
    assert.equal(initEvent(two).memoryShards, 2);
    assert.deepEqual(initEvent(two).inertia, initEvent(one).inertia);
    assert.deepEqual(initEvent(two).sizes, initEvent(one).sizes);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
