/**
 * A resume checks what it resumes: settings that change the trajectory are refused by name (with their old
 * and new values); the ones that may change are applied, recorded in log.jsonl and config.json, and the
 * run goes on bit-exactly. (Mid-epoch checkpoints: midepoch.test.ts.)
 */
import { test, before } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import type { TrainConfig } from '../src/config/settings.ts';
import { assertSameCheckpoint, readLog, syntheticDataset, tinyConfig, withOverrides } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

test('a resume that changes the seed, K, the batch size, the data or the model is refused, naming each key with both values', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-resume-refused-'));
  try {
    const ds = syntheticDataset();
    const config = withOverrides(tinyConfig(), 'optim.epochs=1');
    await train({ config, outDir: dir, dataset: ds, quiet: true });
    const before = readFileSync(join(dir, 'checkpoint.odc'));
    const attempts: Array<[string[], RegExp]> = [
      [
        ['seed=3', 'odc.k=10'],
        /--resume cannot change seed \(0 -> 3\) or odc\.k \(8 -> 10\): .*--out NEWDIR.*drop these flags/,
      ],
      [['optim.batchSize=32'], /--resume cannot change optim\.batchSize \(16 -> 32\)/],
      [
        ['data.limit=50', 'model.featureDim=8', 'augment="none"'],
        /data\.limit \(4000 -> 50\), augment \("mnist" -> "none"\) or model\.featureDim \(16 -> 8\)/,
      ],
      [
        ['odc.memoryMomentum=0.7', 'optim.momentum=0.5'],
        /optim\.momentum \(0\.9 -> 0\.5\) or odc\.memoryMomentum \(0\.5 -> 0\.7\)/,
      ],
    ];
    for (const [overrides, expected] of attempts) {
      await assert.rejects(
        train({
          config: withOverrides(config, 'optim.epochs=2', ...overrides),
          outDir: dir,
          dataset: ds,
          quiet: true,
          resume: true,
        }),
        (err: Error) => {
          assert.match(err.message, expected);
          assert.doesNotMatch(
            err.message,
            /optim\.epochs \(/,
            'a change that is allowed is not listed among the refused ones',
          );
          return true;
        },
      );
    }
    assert.ok(
      Buffer.compare(before, readFileSync(join(dir, 'checkpoint.odc'))) === 0,
      'a refused resume leaves the checkpoint as it was',
    );
    assert.equal(
      (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as TrainConfig).optim.epochs,
      1,
      'and the config.json',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a resume with more epochs (and another logging interval) continues the same run bit-exactly and records the change', async () => {
  const straight = mkdtempSync(join(tmpdir(), 'odc-resume-straight-'));
  const extended = mkdtempSync(join(tmpdir(), 'odc-resume-extended-'));
  try {
    const ds = syntheticDataset();
    await train({ config: tinyConfig(), outDir: straight, dataset: ds, quiet: true });
    await train({ config: withOverrides(tinyConfig(), 'optim.epochs=1'), outDir: extended, dataset: ds, quiet: true });
    const result = await train({
      config: withOverrides(tinyConfig(), 'log.checkpointEvery=2'),
      outDir: extended,
      dataset: ds,
      quiet: true,
      resume: true,
    });
    assert.equal(result.interrupted, false);
    assert.equal(result.iterations, 12);
    await assertSameCheckpoint(straight, extended);
    const resume = readLog(extended).find((r) => r.event === 'resume');
    assert.deepEqual(resume?.changed, {
      'optim.epochs': { from: 1, to: 2 },
      'log.checkpointEvery': { from: 1, to: 2 },
    });
    assert.equal(
      (JSON.parse(readFileSync(join(extended, 'config.json'), 'utf8')) as TrainConfig).optim.epochs,
      2,
      'config.json holds the applied change',
    );
    await assert.rejects(
      train({
        config: withOverrides(tinyConfig(), 'optim.epochs=1'),
        outDir: extended,
        dataset: ds,
        quiet: true,
        resume: true,
      }),
      /optim\.epochs = 1 is fewer than the 2 epochs the checkpoint .* has reached: resume with --epochs 2 or more/,
    );
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(extended, { recursive: true, force: true });
  }
});
