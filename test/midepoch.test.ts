/**
 * Checkpoints written mid-epoch (by time, at a stop request, or before the first iteration) resume
 * bit-exactly, and the resumed run logs exactly what the uninterrupted run logged. (A file of its own:
 * Deno with Dawn slows down late in a process that has run many trainings.)
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { assertSameCheckpoint, loggedResults, readLog, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('checkpoints written mid-epoch (by time, then at a stop between log records) resume bit-exactly with the same log', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'odc-midepoch-straight-'));
  const stopped = mkdtempSync(join(tmpdir(), 'odc-midepoch-stopped-'));
  try {
    const ds = syntheticDataset();
    // A checkpoint interval far below one iteration's time: one checkpoint at every iteration boundary.
    const everyIteration = tinyConfig('log.checkpointMinutes=1e-9');
    await train({ config: tinyConfig(), outDir: straight, dataset: ds, quiet: true });
    // Stop at iteration 7: mid-way through epoch 2 (6 batches per epoch), 3 iterations after its last log record.
    const partial = await train({
      config: everyIteration,
      outDir: stopped,
      dataset: ds,
      quiet: true,
      stopAfterIterations: 7,
    });
    assert.equal(partial.interrupted, true);
    assert.deepEqual(partial.position, { epoch: 1, batchInEpoch: 1, iteration: 7 });
    const saved = readLog(stopped)
      .filter((r) => r.event === 'checkpoint')
      .map((r) => r.iteration);
    assert.deepEqual(saved, [1, 2, 3, 4, 5, 6, 7], 'a time-based checkpoint at every iteration boundary');
    const finished = await train({ config: everyIteration, outDir: stopped, dataset: ds, quiet: true, resume: true });
    assert.equal(finished.interrupted, false);
    await assertSameCheckpoint(straight, stopped);
    assert.deepEqual(
      loggedResults(stopped),
      loggedResults(straight),
      'the same log records and epoch summaries, to the last bit',
    );
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(stopped, { recursive: true, force: true });
  }
});

test('a stop request (AbortSignal) ends training at an iteration boundary with a checkpoint to resume from', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'odc-abort-straight-'));
  const aborted = mkdtempSync(join(tmpdir(), 'odc-abort-'));
  try {
    const ds = syntheticDataset();
    const config = tinyConfig('mode=deepcluster');
    await train({ config, outDir: straight, dataset: ds, quiet: true });
    const stop = new AbortController();
    stop.abort('SIGTERM'); // already requested: training stops at the first boundary, with nothing trained yet
    const first = await train({ config, outDir: aborted, dataset: ds, quiet: true, signal: stop.signal });
    assert.equal(first.interrupted, true);
    assert.deepEqual(first.position, { epoch: 0, batchInEpoch: 0, iteration: 0 });
    const log = readLog(aborted);
    assert.ok(log.some((r) => r.event === 'interrupted' && r.reason === 'SIGTERM'));
    await train({ config, outDir: aborted, dataset: ds, quiet: true, resume: true });
    await assertSameCheckpoint(straight, aborted);
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(aborted, { recursive: true, force: true });
  }
});
