/**
 * A checkpoint whose checksums pass is still checked for meaning before it is resumed or evaluated:
 * crafted checkpoints (records edited, then written back with valid checksums by writeRecords) with
 * NaN parameters, labels outside [0, K), a negative epoch, a position past the end of the data, ...
 * are each refused with one error naming the file, the record or key, and the fix.
 */
import { test, before, after } from 'node:test';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { applyOverride } from '../src/config/settings.ts';
import { loadCheckpoint, type CheckpointMeta } from '../src/odc/checkpoint.ts';
import { readRecords, writeRecords, type ReadRecord } from '../src/odc/checkpoint-io.ts';
import { evaluateRun, exportBackbone, extractToFile } from '../src/eval/run-eval.ts';
import { syntheticDataset, tinyConfig } from './train-fixtures.ts';

const ds = syntheticDataset();
const config = tinyConfig('optim.epochs=1');
let good: string; // a run trained for one epoch (6 batches of 16, K = 8)
let goodDc: string; // the same in DeepCluster mode (pseudo-labels instead of a memory)
const scratch: string[] = [];

before(async () => {
  await setupGpu();
  good = mkdtempSync(join(tmpdir(), 'odc-meaning-'));
  goodDc = mkdtempSync(join(tmpdir(), 'odc-meaning-dc-'));
  await train({ config, outDir: good, dataset: ds, quiet: true });
  await train({ config: applyOverride(config, 'mode=deepcluster'), outDir: goodDc, dataset: ds, quiet: true });
});

after(() => {
  for (const dir of [good, goodDc, ...scratch]) rmSync(dir, { recursive: true, force: true });
});

type Records = Map<string, ReadRecord>;

/** A copy of run `from` whose checkpoint has been edited and rewritten with valid checksums. */
async function crafted(from: string, edit: (records: Records, meta: CheckpointMeta) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'odc-crafted-'));
  scratch.push(dir);
  copyFileSync(join(from, 'config.json'), join(dir, 'config.json'));
  const file = await readRecords(join(from, 'checkpoint.odc'));
  const meta = file.meta as CheckpointMeta;
  edit(file.records, meta);
  await writeRecords(
    join(dir, 'checkpoint.odc'),
    Object.fromEntries([...file.records].map(([name, r]) => [name, { data: r.data, shape: r.shape }])),
    meta,
  );
  return dir;
}

function firstRecord(records: Records, prefix: string): [string, ReadRecord] {
  const hit = [...records].find(([name]) => name.startsWith(prefix));
  assert.ok(hit, `a record named ${prefix}*`);
  return hit;
}

/** The checkpoint in `dir` is refused by loadCheckpoint with one error naming the file, `what`, and the fix. */
async function assertRefused(dir: string, what: RegExp): Promise<void> {
  await assert.rejects(loadCheckpoint(dir), (err: Error) => {
    assert.equal(err.name, 'CheckpointError', err.message);
    assert.ok(err.message.startsWith(join(dir, 'checkpoint.odc')), `names the file: ${err.message}`);
    assert.match(err.message, what);
    assert.match(
      err.message,
      /resume from an earlier copy of the checkpoint, or start the run again with --out NEWDIR/,
    );
    return true;
  });
}

test('the checkpoints of a normal run pass the checks (the control)', async () => {
  for (const dir of [good, goodDc]) {
    const ckpt = await loadCheckpoint(dir);
    assert.deepEqual(ckpt.meta.position, { epoch: 1, batchInEpoch: 0, iteration: 6 });
    assert.equal(ckpt.meta.dataSize, ds.n);
  }
});

test('non-finite values are refused: a NaN parameter, an infinite memory feature, a NaN momentum buffer, a negative BN variance', async () => {
  await assertRefused(
    await crafted(good, (r) => {
      firstRecord(r, 'param.')[1].data[3] = Number.NaN;
    }),
    /record "param\.[^"]+" holds NaN \(value 3 of \d+\)/,
  );
  await assertRefused(
    await crafted(good, (r) => {
      r.get('memory.features')!.data[100] = Number.POSITIVE_INFINITY;
    }),
    /record "memory\.features" holds Infinity \(value 100 of 1536\)/,
  );
  await assertRefused(
    await crafted(good, (r) => {
      firstRecord(r, 'sgd.')[1].data[0] = Number.NaN;
    }),
    /record "sgd\.\d+" holds NaN/,
  );
  const variance = [...(await readRecords(join(good, 'checkpoint.odc'))).records.keys()].find((k) =>
    k.endsWith('running_var'),
  )!;
  await assertRefused(
    await crafted(good, (r) => {
      r.get(variance)!.data[0] = -1;
    }),
    new RegExp(`record "${variance.replace(/\./g, '\\.')}" holds the negative variance -1`),
  );
});

test('labels outside [0, K) are refused, in the ODC memory and in DeepCluster pseudo-labels', async () => {
  await assertRefused(
    await crafted(good, (r) => {
      r.get('memory.labels')!.data[5] = 8;
    }),
    /record "memory\.labels" holds the label 8 at index 5, outside \[0, K = 8\) \(odc\.k\)/,
  );
  await assertRefused(
    await crafted(goodDc, (r) => {
      r.get('deepcluster.labels')!.data[0] = 4294967295;
    }),
    /record "deepcluster\.labels" holds the label 4294967295 at index 0, outside \[0, K = 8\)/,
  );
});

test('a position outside the schedule or the data is refused', async () => {
  const cases: Array<[(m: CheckpointMeta) => void, RegExp]> = [
    [
      (m) => {
        m.position.epoch = -1;
      },
      /position\.epoch is -1, not a non-negative integer/,
    ],
    [
      (m) => {
        m.position.iteration = 2.5;
      },
      /position\.iteration is 2\.5, not a non-negative integer/,
    ],
    [
      (m) => {
        m.position = { epoch: 0, batchInEpoch: 9, iteration: 9 };
      },
      /position\.batchInEpoch = 9 lies past the end of the data \(96 images make 6 batches of 16\)/,
    ],
    [
      (m) => {
        m.position = { epoch: 3, batchInEpoch: 0, iteration: 18 };
      },
      /position epoch 3, batch 0 lies past the end of the schedule \(optim\.epochs = 1\)/,
    ],
    [
      (m) => {
        m.position.iteration = 5;
      },
      /position\.iteration = 5, but epoch 1, batch 0 at 6 batches per epoch means 6/,
    ],
    [
      (m) => {
        m.dataSize = 95;
      },
      /memoryMeta\.n says 96 images but dataSize says 95/,
    ],
    [
      (m) => {
        m.batchesPerEpoch = 8;
      },
      /batchesPerEpoch = 8 does not fit 96 images in batches of 16/,
    ],
  ];
  for (const [edit, expected] of cases) await assertRefused(await crafted(good, (_, m) => edit(m)), expected);
});

test('an invalid configuration, RNG state or learning rate in the checkpoint is refused', async () => {
  await assertRefused(
    await crafted(good, (_, m) => {
      m.config.optim.batchSize = 0;
    }),
    /its configuration is invalid \(optim\.batchSize must be a positive integer, got 0\)/,
  );
  await assertRefused(
    await crafted(good, (_, m) => {
      (m.config.odc as Record<string, unknown>).kk = 3;
    }),
    /its configuration is invalid \(config\.odc: unknown key "kk"/,
  );
  await assertRefused(
    await crafted(good, (_, m) => {
      m.config.odc.k = 9;
    }),
    /the memory has K = 8 clusters, its config says odc\.k = 9/,
  );
  await assertRefused(
    await crafted(good, (_, m) => {
      m.rngs.augment = [0, 0, 0, 0];
    }),
    /RNG state "augment" is \[0,0,0,0\]/,
  );
  await assertRefused(
    await crafted(good, (_, m) => {
      m.sgdLr = -0.1;
    }),
    /sgdLr is -0.1, not a positive number/,
  );
});

test('odc train --resume, eval, extract and export all refuse a crafted checkpoint before using it', async () => {
  const dir = await crafted(good, (r) => {
    firstRecord(r, 'param.')[1].data[0] = Number.NaN;
  });
  const refused = (err: Error): boolean => err.name === 'CheckpointError' && /holds NaN/.test(err.message);
  await assert.rejects(train({ config, outDir: dir, dataset: ds, quiet: true, resume: true }), refused);
  await assert.rejects(evaluateRun({ runDir: dir, baseline: false, probeEpochs: 1 }), refused);
  await assert.rejects(
    extractToFile({ runDir: dir, out: join(dir, 'f.safetensors'), split: 'train', layer: 'backbone' }),
    refused,
  );
  await assert.rejects(exportBackbone({ runDir: dir, out: join(dir, 'b.safetensors') }), refused);
  assert.ok(
    !existsSync(join(dir, 'f.safetensors')) && !existsSync(join(dir, 'b.safetensors')),
    'nothing written from a refused checkpoint',
  );
});

test('eval and extract refuse training data that no longer match the checkpoint (another number of images)', async () => {
  // `good` was trained on the 96 synthetic images; its config names the demo preset's data (4,000 embedded MNIST digits).
  const changed =
    /The training data now have 4000 images, but the checkpoint in .* was trained on 96: the data files changed/;
  await assert.rejects(evaluateRun({ runDir: good, baseline: false, probeEpochs: 1 }), changed);
  await assert.rejects(
    extractToFile({ runDir: good, out: join(good, 'f.safetensors'), split: 'train', layer: 'backbone' }),
    changed,
  );
});
