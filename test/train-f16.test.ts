/**
 * `--precision f16` end to end on the tiny synthetic fixture: a run learns like the f32 run of the same
 * seed (final loss and memory NMI within a stated band), an interrupted and resumed f16 run reproduces the
 * uninterrupted one bit-exactly, and a resume cannot switch the precision.
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import type { TrainConfig } from '../src/config/settings.ts';
import { workingPrecision } from '../src/ops/precision.ts';
import { assertSameCheckpoint, syntheticDataset, tinyConfig } from './train-fixtures.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});

const NO_F16 = 'the adapter has no shader-f16';

function config(precision: 'f32' | 'f16', epochs: number): TrainConfig {
  return tinyConfig(`optim.precision=${precision}`, `optim.epochs=${epochs}`);
}

/** The band an f16 run must stay within of the f32 run: stated here, measured in the report. */
// Measured on lavapipe (seed 0, 4 epochs): mean loss 2.018 (f32) vs 2.055 (f16), 1.8% apart; per-epoch NMI at
// most 0.053 apart. On this fixture the loss itself does not fall steadily (the memory's labels move under
// it), and the random-init network's clustering (NMI 0.81 on these bars) is dissolved by the small-cluster
// splits of epoch 1, so learning is judged by the memory NMI rising from the first epoch to the last.
const LOSS_BAND = 0.05; // relative difference of the mean loss over the epochs
const NMI_BAND = 0.1; // absolute difference of the memory labels' NMI against the truth, each epoch

test('an f16 run learns like the f32 run of the same seed (loss and memory NMI within the band)', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  const dirs = [mkdtempSync(join(tmpdir(), 'odc-f32-')), mkdtempSync(join(tmpdir(), 'odc-f16-'))];
  try {
    const ds = syntheticDataset();
    const f32 = await train({ config: config('f32', 4), outDir: dirs[0], dataset: ds, quiet: true });
    const f16 = await train({ config: config('f16', 4), outDir: dirs[1], dataset: ds, quiet: true });
    assert.equal(workingPrecision(), 'f32', 'train() restores the f32 working precision');
    const report = f16.epochs.map(
      (e, i) =>
        `epoch ${i + 1}: loss ${f32.epochs[i].loss.toFixed(4)} / ${e.loss.toFixed(4)}, NMI ${f32.epochs[i].nmi?.toFixed(3)} / ${e.nmi?.toFixed(3)}`,
    );
    t.diagnostic(`f32 / f16: ${report.join('; ')}`);
    assert.ok(
      f16.epochs.some((e, i) => e.loss !== f32.epochs[i].loss),
      'the f16 run took another numerical path (its GEMMs read f16 copies)',
    );
    for (const [i, e] of f16.epochs.entries()) {
      assert.ok(Number.isFinite(e.loss), `epoch ${i + 1}: f16 loss ${e.loss}`);
      assert.ok(
        Math.abs((e.nmi ?? 0) - (f32.epochs[i].nmi ?? 0)) <= NMI_BAND,
        `epoch ${i + 1}: NMI outside the band: ${report[i]}`,
      );
    }
    const meanLoss = (r: typeof f32): number => r.epochs.reduce((s, e) => s + e.loss, 0) / r.epochs.length;
    const rel = Math.abs(meanLoss(f16) - meanLoss(f32)) / meanLoss(f32);
    assert.ok(
      rel <= LOSS_BAND,
      `mean loss differs by ${(100 * rel).toFixed(1)}% (band ${100 * LOSS_BAND}%): ${report.join('; ')}`,
    );
    for (const r of [f32, f16]) {
      const last = r.epochs[r.epochs.length - 1].nmi ?? 0;
      assert.ok(
        last > (r.epochs[0].nmi ?? 1),
        `memory NMI rises from the first epoch to the last: ${report.join('; ')}`,
      );
    }
    t.diagnostic(
      `initial NMI f32 ${f32.initialNmi?.toFixed(3)}, f16 ${f16.initialNmi?.toFixed(3)}; mean loss ${meanLoss(f32).toFixed(4)} / ${meanLoss(f16).toFixed(4)}`,
    );
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('an interrupted and resumed f16 run reproduces the uninterrupted f16 run bit-exactly; a resume cannot change the precision', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  const straight = mkdtempSync(join(tmpdir(), 'odc-f16-straight-'));
  const resumed = mkdtempSync(join(tmpdir(), 'odc-f16-resumed-'));
  try {
    const ds = syntheticDataset();
    await train({ config: config('f16', 2), outDir: straight, dataset: ds, quiet: true });
    const partial = await train({
      config: config('f16', 2),
      outDir: resumed,
      dataset: ds,
      quiet: true,
      stopAfterIterations: 8,
    });
    assert.equal(partial.iterations, 8);
    await assert.rejects(
      train({ config: config('f32', 2), outDir: resumed, dataset: ds, quiet: true, resume: true }),
      /optim\.precision/,
    );
    const finished = await train({ config: config('f16', 2), outDir: resumed, dataset: ds, quiet: true, resume: true });
    assert.equal(finished.iterations, 12);
    await assertSameCheckpoint(straight, resumed);
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(resumed, { recursive: true, force: true });
  }
});
