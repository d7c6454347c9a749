/**
 * End-to-end ODC training on a tiny synthetic data set: every step of the iteration runs (initial
 * clustering, weighted loss, memory update, centroid recompute, small-cluster splits, re-weighting,
 * checkpoints), and a run interrupted and resumed reproduces the uninterrupted run bit-exactly.
 */
import { test, before } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { presetConfig, applyOverride } from '../src/config/settings.ts';
import { gpu } from '../src/gpu/device.ts';
import { assertSameCheckpoint, readLog, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('ODC trains end to end on a tiny data set: clustering, splits, checkpoints, and no leaked buffers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-train-'));
  try {
    const base = gpu().pool.liveCount;
    const result = await train({ config: tinyConfig(), outDir: dir, dataset: syntheticDataset(), quiet: true });
    assert.equal(result.iterations, 12);
    assert.equal(result.epochs.length, 2);
    assert.ok(result.splits > 0, 'with minCluster 10 and ~12 images per cluster, small clusters must have been split');
    for (const e of result.epochs) {
      assert.ok(Number.isFinite(e.loss) && e.loss > 0, `epoch loss ${e.loss}`);
      assert.ok(e.headAccuracy >= 0 && e.headAccuracy <= 1);
      assert.ok(e.changeRatio >= 0 && e.changeRatio <= 1);
      assert.ok(e.minCluster >= 1, 'no empty cluster after small-cluster handling');
      assert.ok(e.nmi !== undefined && e.nmi >= 0 && e.nmi <= 1);
    }
    const log = readLog(dir);
    assert.ok(log.some((r) => r.event === 'init'));
    assert.equal(log.filter((r) => r.event === 'epoch').length, 2);
    assert.equal(gpu().pool.liveCount, base, 'train() releases every buffer it allocated');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an interrupted and resumed run reproduces the uninterrupted run bit-exactly', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'odc-straight-'));
  const resumed = mkdtempSync(join(tmpdir(), 'odc-resumed-'));
  try {
    const ds = syntheticDataset();
    await train({ config: tinyConfig(), outDir: straight, dataset: ds, quiet: true });
    const partial = await train({
      config: tinyConfig(),
      outDir: resumed,
      dataset: ds,
      quiet: true,
      stopAfterIterations: 8,
    });
    assert.equal(partial.iterations, 8, 'stopped mid-way through epoch 2');
    const finished = await train({ config: tinyConfig(), outDir: resumed, dataset: ds, quiet: true, resume: true });
    assert.equal(finished.iterations, 12);
    await assertSameCheckpoint(straight, resumed);
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(resumed, { recursive: true, force: true });
  }
});

test('a non-finite loss stops training with a clear error and keeps the last good checkpoint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-nan-'));
  try {
    const ds = syntheticDataset();
    const config = applyOverride(tinyConfig(), 'optim.epochs=1');
    await train({ config, outDir: dir, dataset: ds, quiet: true });
    const good = readFileSync(join(dir, 'checkpoint.odc'));
    // Resume for a second epoch with an absurd learning rate: the weights blow up within a few steps.
    const exploding = applyOverride(applyOverride(config, 'optim.epochs=2'), 'optim.lr=1e30');
    await assert.rejects(
      train({ config: exploding, outDir: dir, dataset: ds, quiet: true, resume: true }),
      (err: Error) => {
        assert.equal(err.name, 'NonFiniteLossError');
        assert.match(err.message, /last good checkpoint is kept/);
        return true;
      },
    );
    assert.ok(
      Buffer.compare(good, readFileSync(join(dir, 'checkpoint.odc'))) === 0,
      'the epoch-1 checkpoint is untouched',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('configuration errors name the key and the problem', () => {
  assert.throws(() => applyOverride(presetConfig('demo'), 'odc.kk=3'), /unknown key "kk"/);
  assert.throws(() => applyOverride(presetConfig('demo'), 'optim.lr=fast'), /optim.lr: expected a number, got string/);
  assert.throws(() => presetConfig('nope'), /unknown preset "nope"/);
});
