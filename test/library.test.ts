/**
 * The library surface: `train(config, { dataset, onEpoch, signal, outDir })` calls onEpoch once per epoch
 * with the summaries it returns, and a signal aborted from onEpoch stops cleanly at the next iteration with
 * a checkpoint that a resume finishes exactly as an uninterrupted run; `odc train --init-from` refuses a
 * missing file and --resume with one line each, before any GPU work. Imports go through the entry points.
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train, type EpochSummary } from '../src/odc/index.ts';
import { runCli } from './cli-child.ts';
import { assertSameCheckpoint, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('train(config, options): onEpoch sees every epoch; aborting from it stops at the next iteration, and a resume matches the whole run', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-library-'));
  try {
    const config = tinyConfig(); // 2 epochs
    const seen: EpochSummary[] = [];
    const whole = await train(config, {
      outDir: join(dir, 'whole'),
      dataset: syntheticDataset(),
      quiet: true,
      onEpoch: (e) => void seen.push(e),
    });
    assert.equal(whole.interrupted, false);
    assert.deepEqual(seen, whole.epochs, 'onEpoch got each summary train returns');
    assert.deepEqual(
      seen.map((e) => e.epoch),
      [0, 1],
    );
    assert.ok(
      seen.every((e) => e.nmi !== undefined && e.nmi >= 0 && e.nmi <= 1),
      'memory NMI on labelled data',
    );

    const stop = new AbortController();
    const parts = join(dir, 'parts');
    const first = await train(config, {
      outDir: parts,
      dataset: syntheticDataset(),
      quiet: true,
      signal: stop.signal,
      onEpoch: () => stop.abort('enough'),
    });
    assert.equal(first.interrupted, true);
    assert.deepEqual(
      first.position,
      { epoch: 1, batchInEpoch: 0, iteration: whole.iterations / 2 },
      'stopped at the epoch boundary',
    );
    const rest = await train({ config, outDir: parts, dataset: syntheticDataset(), quiet: true, resume: true });
    assert.equal(rest.interrupted, false);
    assert.deepEqual(
      rest.epochs.map((e) => e.loss),
      [whole.epochs[1].loss],
      'the resumed epoch logs what the whole run did',
    );
    await assertSameCheckpoint(join(dir, 'whole'), parts);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('odc train --init-from: a missing file, or --resume with it, is one error line before any GPU work', () => {
  const missing = runCli('src/cli/main.ts', [
    'train',
    '--init-from',
    'no/such/weights.safetensors',
    '--out',
    join(tmpdir(), 'odc-never'),
  ]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /odc: --init-from no\/such\/weights\.safetensors: no such file/);
  assert.doesNotMatch(missing.stderr, /\n\s+at /, 'no stack trace');
  const both = runCli('src/cli/main.ts', [
    'train',
    '--init-from',
    'package.json',
    '--resume',
    '--out',
    join(tmpdir(), 'odc-never'),
  ]);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /odc: --init-from starts a new run .* --resume continues a run: use one of them/);
});
