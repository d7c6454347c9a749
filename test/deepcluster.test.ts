/**
 * The DeepCluster baseline end to end (offline k-means every epoch, balanced sampling, a fresh head per
 * epoch), on the same tiny data set as train.test.ts; in a file of its own so that no single test process
 * runs more than a handful of training runs (Deno with Dawn has stalled for minutes late in long ones).
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { readRecords } from '../src/odc/checkpoint-io.ts';
import { gpu } from '../src/gpu/device.ts';
import { assertSameCheckpoint, readLog, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('the DeepCluster baseline trains end to end and resumes mid-epoch bit-exactly', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'odc-dc-straight-'));
  const resumed = mkdtempSync(join(tmpdir(), 'odc-dc-resumed-'));
  try {
    const ds = syntheticDataset();
    const config = tinyConfig('mode=deepcluster');
    const base = gpu().pool.liveCount;
    const result = await train({ config, outDir: straight, dataset: ds, quiet: true });
    assert.equal(gpu().pool.liveCount, base, 'train() releases every buffer it allocated');
    assert.equal(result.epochs.length, 2);
    assert.equal(result.iterations, 12);
    for (const e of result.epochs) {
      assert.ok(Number.isFinite(e.loss) && e.loss > 0, `epoch loss ${e.loss}`);
      assert.ok(e.nmi !== undefined && e.nmi >= 0 && e.nmi <= 1);
      assert.equal(e.changeRatio, 0, 'no memory, no change ratio');
    }
    const log = readLog(straight);
    assert.ok(!log.some((r) => r.event === 'init'), 'no ODC memory initialisation');
    const records = (await readRecords(join(straight, 'checkpoint.odc'))).records;
    assert.ok(![...records.keys()].some((k) => k.startsWith('memory.')), 'no ODC memory in a DeepCluster checkpoint');
    const labels = records.get('deepcluster.labels')!.data;
    assert.equal(labels.length, ds.n);
    assert.ok(
      labels.every((l) => l < 8),
      'pseudo-labels in [0, K)',
    );
    // stopped in the middle of epoch 2, then resumed: the epoch goes on with its saved labels and head
    await train({ config, outDir: resumed, dataset: ds, quiet: true, stopAfterIterations: 9 });
    await train({ config, outDir: resumed, dataset: ds, quiet: true, resume: true });
    await assertSameCheckpoint(straight, resumed);
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(resumed, { recursive: true, force: true });
  }
});
