/**
 * Replayed training steps (src/gpu/tape.ts, StepReplay in src/odc/step.ts): a tape replays only what two captures
 * proved stable, owns the buffers its region acquired, drops itself when its key or a buffer it binds changes, and
 * a training run with replay gives the same bytes as one without (checkpoints, logs, memory hashes), resume included.
 */
import { test, before } from 'node:test';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { Tape, drawForTape } from '../src/gpu/tape.ts';
import { backward } from '../src/tensor/autograd.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { tidy } from '../src/tensor/scope.ts';
import { affine, mul } from '../src/ops/elementwise.ts';
import { sum } from '../src/ops/reduce.ts';
import { countEqual } from '../src/ops/rows.ts';
import { dropout } from '../src/ops/dropout.ts';
import { addInPlace, clone } from '../src/tensor/kernels.ts';
import { StepReplay, type ModelPartOutputs } from '../src/odc/step.ts';
import { train } from '../src/odc/trainer.ts';
import { Rng } from '../src/util/rng.ts';
import { prepareStep } from '../bench/train-step.ts';
import { assertSameCheckpoint, loggedResults, syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

const N = 64;

/** A seeded [N] f32 batch and [N] u32 labels, different for every `step`. */
function batch(step: number): { x: Tensor<'f32'>; y: Tensor<'u32'> } {
  const rng = new Rng(100 + step);
  const x = Tensor.from(
    Float32Array.from({ length: N }, () => rng.range(-1, 1)),
    [N],
  );
  const y = Tensor.from(
    Uint32Array.from({ length: N }, () => rng.int(4)),
    [N],
    'u32',
  );
  return { x, y };
}

/**
 * A small "model part": f = x * w, loss = sum(f), correct = #(y == y), then w += 0.5 * f (a parameter update), with
 * `extra` spliced into f (a per-run uniform, a dropout).
 */
function region(w: Tensor<'f32'>, extra: (f: Tensor<'f32'>) => Tensor<'f32'> = (f) => f) {
  return (x: Tensor<'f32'>, y: Tensor<'u32'>): ModelPartOutputs => {
    const f = extra(mul(x, w));
    const loss = sum(f);
    const correct = countEqual(y, y);
    addInPlace(w, f, 0.5);
    return { f, loss, correct };
  };
}

/** Runs `steps` steps of `fn` eagerly or through `replay`, returning every step's loss and f bytes and w at the end. */
async function runSteps(
  steps: number,
  w: Tensor<'f32'>,
  fn: (x: Tensor<'f32'>, y: Tensor<'u32'>) => ModelPartOutputs,
  replay: StepReplay | null,
  key: (step: number) => string = () => 'k',
): Promise<{ losses: number[]; features: string[]; w: Float32Array }> {
  const losses: number[] = [];
  const features: string[] = [];
  for (let s = 0; s < steps; s++) {
    // copies of f and the loss (a replayed step's own outputs belong to the tape: the step's scope frees the rest)
    const out = tidy(() => {
      const { x, y } = batch(s);
      const o = replay ? replay.run(key(s), x, y, fn) : fn(x, y);
      return { f: clone(o.f), loss: clone(o.loss) };
    });
    losses.push((await out.loss.data())[0]);
    features.push(Buffer.from((await out.f.data()).buffer).toString('hex'));
    out.f.dispose();
    out.loss.dispose();
  }
  return { losses, features, w: await w.data() };
}

const weights = (): Tensor<'f32'> =>
  Tensor.from(
    Float32Array.from({ length: N }, (_, i) => (i % 7) / 7 - 0.4),
    [N],
  );

test('a stable region replays after two equal captures and gives the eager results bit for bit', async () => {
  const base = gpu().pool.liveCount;
  const wEager = weights();
  const eager = await runSteps(6, wEager, region(wEager), null);
  const wReplay = weights();
  const replay = new StepReplay();
  const replayed = await runSteps(6, wReplay, region(wReplay), replay);
  assert.deepEqual(replay.counts, { captured: 2, replayed: 4, eager: 0 });
  assert.deepEqual(replayed.losses, eager.losses);
  assert.deepEqual(replayed.features, eager.features);
  assert.deepEqual(replayed.w, eager.w);
  replay.dispose();
  wEager.dispose();
  wReplay.dispose();
  assert.equal(gpu().pool.liveCount, base, 'the tape gives back every buffer it held');
});

test('a uniform that changes every run never replays; a host draw (dropout seed) replays with fresh draws', async () => {
  let run = 0;
  const w = weights();
  const unstable = new StepReplay();
  await runSteps(
    6,
    w,
    region(w, (f) => affine(f, 1 + run++ / 8)),
    unstable,
  );
  assert.equal(unstable.counts.replayed, 0, 'a per-run scale factor is no stable launch');
  assert.ok(unstable.counts.eager > 0, 'after unequal captures the region runs eagerly');
  unstable.dispose();
  w.dispose();

  // dropout's seed is drawn through drawForTape: the replayed runs draw their own, in the eager order
  const dropped = (rng: Rng) => (f: Tensor<'f32'>) =>
    dropout(
      f,
      0.5,
      drawForTape(() => rng.nextU32()),
      true,
    );
  const wEager = weights();
  const eager = await runSteps(6, wEager, region(wEager, dropped(new Rng(9))), null);
  const wReplay = weights();
  const replay = new StepReplay();
  const replayed = await runSteps(6, wReplay, region(wReplay, dropped(new Rng(9))), replay);
  assert.ok(replay.counts.replayed >= 3, `replayed ${replay.counts.replayed} of 6`);
  assert.deepEqual(replayed.features, eager.features);
  assert.deepEqual(replayed.w, eager.w);
  replay.dispose();
  wEager.dispose();
  wReplay.dispose();
});

test('a key change (a new learning rate) or a released bound buffer drops the tape and captures again', async () => {
  const wEager = weights();
  const keyOf = (s: number) => (s < 4 ? 'lr=0.1' : 'lr=0.01');
  const eager = await runSteps(8, wEager, region(wEager), null);
  const wReplay = weights();
  const replay = new StepReplay();
  const replayed = await runSteps(8, wReplay, region(wReplay), replay, keyOf);
  // 2 captures, 2 replays under the first key; under the second, one eager run beside the tape (a key seen once, as
  // an epoch's short last batch, keeps it), then 3 captures (the first after a drop sees the pool still settling:
  // this step's batch was allocated while the old tape held its buffers), no replay left
  assert.deepEqual(replay.counts, { captured: 5, replayed: 2, eager: 1 });
  assert.deepEqual(replayed.w, eager.w);
  assert.deepEqual(replayed.losses, eager.losses);

  // The parameter is replaced (a rebuilt model, a loaded state): its old buffer is released, the tape is stale.
  const moved = Tensor.from(await wReplay.data(), [N]);
  wReplay.dispose();
  const after = await runSteps(5, moved, region(moved), replay, () => 'lr=0.01');
  assert.deepEqual(replay.counts, { captured: 8, replayed: 4, eager: 1 }, 'captured afresh, then replayed');
  const wCheck = Tensor.from(eager.w, [N]);
  const check = await runSteps(5, wCheck, region(wCheck), null);
  assert.deepEqual(after.w, check.w);
  replay.dispose();
  for (const t of [wEager, moved, wCheck]) t.dispose();
});

test('a key seen on one run only (the short last batch of an epoch) runs eagerly beside the tape, which replays on', async () => {
  const wEager = weights();
  const eager = await runSteps(7, wEager, region(wEager), null);
  const wReplay = weights();
  const replay = new StepReplay();
  const replayed = await runSteps(7, wReplay, region(wReplay), replay, (s) => (s === 4 ? 'rows=15' : 'rows=16'));
  assert.deepEqual(replay.counts, { captured: 2, replayed: 4, eager: 1 });
  assert.deepEqual(replayed.w, eager.w);
  assert.deepEqual(replayed.losses, eager.losses);
  replay.dispose();
  wEager.dispose();
  wReplay.dispose();
});

test('a tape captured under recordOnly never replays for real (nor the reverse)', async () => {
  const w = weights();
  const replay = new StepReplay();
  const fn = region(w);
  const oneStep = async (s: number): Promise<void> => {
    tidy(() => {
      const { x, y } = batch(s);
      replay.run('k', x, y, fn);
    });
    await Promise.resolve();
  };
  // recorded, never submitted: a few runs adopt a tape there and replay it
  await gpu().recordOnly(
    async () => {
      for (let s = 0; s < 6 && replay.counts.replayed === 0; s++) await oneStep(s);
    },
    () => new ArrayBuffer(0),
  );
  const { captured, replayed } = replay.counts;
  assert.ok(replayed === 1, JSON.stringify(replay.counts));
  // for real: the recordOnly tape is another key, seen once (eager beside it), then dropped and captured anew
  for (let s = 0; s < 3; s++) await oneStep(s);
  assert.deepEqual(replay.counts, { captured: captured + 2, replayed, eager: 1 });
  // and a tape adopted for real refuses to replay under recordOnly
  for (let s = 3; s < 8 && replay.counts.replayed === replayed; s++) await oneStep(s);
  const tape = replay.tape;
  assert.ok(tape, JSON.stringify(replay.counts));
  await assert.rejects(
    gpu().recordOnly(
      () => Promise.resolve(tape.replay([])),
      () => new ArrayBuffer(0),
    ),
    /captured under recordOnly and replayed for real, or the reverse/,
  );
  replay.dispose();
  w.dispose();
});

test('the buffers a tape adopted are not handed out by the pool until it is released', async () => {
  const pool = gpu().pool;
  const base = pool.liveCount;
  const w = weights();
  const { x, y } = batch(0);
  const tape = new Tape(gpu());
  const outputs = tape.capture(() => tidy(() => region(w)(x, y)));
  for (const t of [outputs.f, outputs.loss, outputs.correct]) t.dispose();
  const liveBefore = pool.liveCount;
  assert.equal(tape.adopt(), null);
  const owned = new Set(tape.ownedBuffers);
  assert.ok(owned.size > 0, 'the region released temporaries the tape now owns');
  assert.equal(pool.liveCount, liveBefore + owned.size, 'adopted buffers count as live');
  for (let round = 0; round < 3; round++) {
    tape.replay([x.buffer, y.buffer]);
    gpu().flush(); // pending buffers become free: the pool hands out what it has
    const handed = Array.from({ length: 40 }, (_, i) => Tensor.empty([i % 2 ? N : 1], 'f32'));
    for (const t of handed) assert.ok(!owned.has(t.buffer), 'the pool handed out a buffer the tape owns');
    for (const t of handed) t.dispose();
  }
  tape.release();
  for (const t of [w, x, y]) t.dispose();
  gpu().flush();
  assert.equal(pool.liveCount, base, 'release gives the owned buffers back');
});

test('a read inside the captured region refuses the tape', async () => {
  const w = weights();
  const { x, y } = batch(0);
  const tape = new Tape(gpu());
  const reading = tape.capture(() => gpu().readLater(w.buffer, 4));
  await reading;
  assert.match(tape.refusal ?? '', /reads from the GPU/);
  assert.match(tape.adopt() ?? '', /reads from the GPU/);
  for (const t of [w, x, y]) t.dispose();
});

/** Checkpoint records of two runs, byte for byte, and their meta records. */
async function assertSameRecords(dirA: string, dirB: string): Promise<void> {
  const [metaA, metaB] = await assertSameCheckpoint(dirA, dirB, 'between replay on and off');
  // the meta record up to the setting itself and the clock (each epoch's seconds and images per second)
  const withoutReplay = (meta: unknown): string => {
    const m = meta as { config: { optim: Record<string, unknown> }; history: Array<Record<string, unknown>> };
    return JSON.stringify({
      ...m,
      config: { ...m.config, optim: { ...m.config.optim, replay: null } },
      history: m.history.map((h) => ({ ...h, seconds: null, imagesPerSecond: null })),
    });
  };
  assert.equal(withoutReplay(metaA), withoutReplay(metaB));
}

/** Trains the tiny fixture with replay on or off; returns the step's replay counts at each epoch end (empty when off). */
async function trainTiny(
  dir: string,
  replay: boolean,
  overrides: string[],
  extra: { stopAfterIterations?: number; resume?: boolean } = {},
): Promise<Array<StepReplay['counts']>> {
  const counts: Array<StepReplay['counts']> = [];
  await train({
    config: tinyConfig(`optim.replay=${replay}`, ...overrides),
    outDir: dir,
    dataset: syntheticDataset(),
    quiet: true,
    onEpoch: (_summary, session) => {
      if (session.replay) counts.push({ ...session.replay.counts });
    },
    ...extra,
  });
  return counts;
}

test('ODC with replay: the same checkpoint records and log numbers as without, across an lr step and a resume', async () => {
  const dirs = ['off', 'on', 'resumed'].map((n) => mkdtempSync(join(tmpdir(), `odc-replay-${n}-`)));
  const [off, on, resumed] = dirs;
  // 6 iterations an epoch; the lr drops at the start of epoch 3; small clusters are split (minCluster 10)
  const overrides = ['optim.epochs=3', 'optim.lrSteps=[2]', 'optim.lrGamma=0.5'];
  try {
    const base = gpu().pool.liveCount;
    await trainTiny(off, false, overrides);
    const counts = await trainTiny(on, true, overrides);
    assert.equal(gpu().pool.liveCount, base, 'a run with replay gives back every buffer');
    assert.equal(counts.length, 3, 'the session has a StepReplay');
    // epoch 1: 3 captures (SGD's first step differs), then replays; epoch 2: replays only
    assert.deepEqual(counts[0], { captured: 3, replayed: 3, eager: 0 });
    assert.deepEqual(counts[1], { captured: 3, replayed: 9, eager: 0 });
    // epoch 3: a new lr: one eager step beside the old tape, then it is dropped and the step captured afresh (a few
    // times: the pool settles after the old tape's buffers come back), then replays again
    assert.equal(counts[2].eager, 1);
    assert.ok(counts[2].captured > 3 && counts[2].replayed > 9, JSON.stringify(counts[2]));
    await assertSameRecords(off, on);
    assert.deepEqual(loggedResults(on), loggedResults(off));
    assert.ok(
      loggedResults(on).some((r) => (r.splits as number) > 0),
      'the run split small clusters',
    );

    await trainTiny(resumed, true, overrides, { stopAfterIterations: 8 });
    await trainTiny(resumed, true, overrides, { resume: true });
    await assertSameRecords(off, resumed);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('DeepCluster with replay (a head re-initialised in place every epoch): the same checkpoint as without', async () => {
  const dirs = ['off', 'on'].map((n) => mkdtempSync(join(tmpdir(), `odc-replay-dc-${n}-`)));
  try {
    await trainTiny(dirs[0], false, ['mode=deepcluster']);
    const counts = await trainTiny(dirs[1], true, ['mode=deepcluster']);
    assert.ok(counts.length > 1 && counts[counts.length - 1].replayed > 0, JSON.stringify(counts));
    // each epoch's extraction and k-means start with the tape's buffers back in the pool: captured afresh after
    for (let e = 1; e < counts.length; e++)
      assert.ok(counts[e].captured >= counts[e - 1].captured + 2, `epoch ${e + 1}: ${JSON.stringify(counts)}`);
    await assertSameRecords(dirs[0], dirs[1]);
    assert.deepEqual(loggedResults(dirs[1]), loggedResults(dirs[0]));
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('precision f16 with dynamic loss scaling (unscale, a gated SGD step, the scale update): replay on equals off', async (t) => {
  if (!gpu().features.f16) return t.skip('the adapter has no shader-f16');
  const dirs = ['off', 'on'].map((n) => mkdtempSync(join(tmpdir(), `odc-replay-f16-${n}-`)));
  try {
    await trainTiny(dirs[0], false, ['optim.precision=f16']);
    const counts = await trainTiny(dirs[1], true, ['optim.precision=f16']);
    assert.ok(counts.length > 0 && counts[counts.length - 1].replayed > 0, JSON.stringify(counts));
    await assertSameRecords(dirs[0], dirs[1]);
    assert.deepEqual(loggedResults(dirs[1]), loggedResults(dirs[0]));
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('resnet18 and convnet-s steps (scripts/step-hash.ts cases, 6 iterations) hash the same with replay on and off', async () => {
  const cases = [
    { name: 'resnet18', preset: 'cifar', size: 16, channels: 3 as const, batch: 16, k: 4, n: 128 },
    { name: 'convnet-s', preset: 'demo', size: 28, channels: 1 as const, batch: 32, k: 4, n: 128 },
  ];
  for (const c of cases) {
    const hashes: string[] = [];
    for (const replay of [false, true]) {
      const prepared = await prepareStep(c, { replay });
      try {
        for (let i = 0; i < 6; i++) await prepared.step(1);
        await prepared.settle();
        if (replay) assert.equal(prepared.replay?.counts.replayed, 3, `${c.name}: steps 4-6 replayed`);
        const hash = createHash('sha256');
        hash.update(Buffer.from((await prepared.memory.featuresData()).buffer));
        hash.update(Buffer.from((await prepared.memory.labels.data()).buffer));
        hash.update(Buffer.from((await prepared.memory.centroids.data()).buffer));
        hashes.push(hash.digest('hex'));
      } finally {
        prepared.dispose();
      }
    }
    assert.equal(hashes[1], hashes[0], `${c.name}: replay changed the numbers`);
  }
});

test('a submodule switched to eval or a frozen parameter between steps (not the model flag): replay on equals off', async () => {
  // A library user's hook freezes the backbone after epoch 1 and puts it in eval mode after epoch 2: both change
  // what the model part records (no gradient, no SGD update of those parameters; BN with running statistics)
  // while model.training stays true.
  const dirs = ['off', 'on'].map((n) => mkdtempSync(join(tmpdir(), `odc-replay-freeze-${n}-`)));
  try {
    const counts: Array<StepReplay['counts']> = [];
    for (const [i, dir] of dirs.entries()) {
      await train({
        config: tinyConfig(`optim.replay=${i === 1}`, 'optim.epochs=3'),
        outDir: dir,
        dataset: syntheticDataset(),
        quiet: true,
        onEpoch: (summary, session) => {
          if (session.replay) counts.push({ ...session.replay.counts });
          if (summary.epoch === 0) for (const p of session.model.backbone.parameters()) p.requiresGrad = false;
          if (summary.epoch === 1) session.model.backbone.eval();
        },
      });
    }
    // replays ran after each change (0-based epochs: the summary of the first epoch is epoch 0)
    assert.ok(counts.length === 3 && counts[2].replayed > counts[1].replayed, JSON.stringify(counts));
    await assertSameRecords(dirs[0], dirs[1]);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('gradients a hook leaves on the parameters (accumulated into the next step, as autograd does): replay on equals off', async () => {
  // A library user's hook adds a gradient of its own (a hand-made penalty on the head) without zeroing it: the next
  // step's backward accumulates into it and its SGD step applies the sum, which the eager step records (an add)
  // and a tape captured without it does not.
  const dirs = ['off', 'on'].map((n) => mkdtempSync(join(tmpdir(), `odc-replay-grads-${n}-`)));
  try {
    for (const [i, dir] of dirs.entries()) {
      await train({
        config: tinyConfig(`optim.replay=${i === 1}`),
        outDir: dir,
        dataset: syntheticDataset(),
        quiet: true,
        onEpoch: (summary, session) => {
          if (summary.epoch !== 0) return;
          const w = session.model.head.weight;
          tidy(() => backward(sum(mul(w, w))));
        },
      });
    }
    await assertSameRecords(dirs[0], dirs[1]);
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});
