/**
 * Dynamic loss scaling (src/optim/loss-scale.ts, `--precision f16`): a step whose f16 gradients overflow is
 * skipped on the GPU (parameters and momentum bit-identical) and halves the scale; clean steps double it
 * after the growth interval; a power-of-two scale unscales exactly (scaled f32 steps are bit-identical to
 * unscaled ones); an f32 run builds no scaler; an f16 run started at a huge scale skips steps, comes down
 * and trains, and its interrupted and resumed run reproduces the uninterrupted one bit-exactly, scale
 * state included.
 */
import { test, before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { Linear } from '../src/nn/layers.ts';
import { relu } from '../src/ops/elementwise.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { setWorkingPrecision } from '../src/ops/precision.ts';
import { LossScaler, forceUnscaleSlots } from '../src/optim/loss-scale.ts';
import { NARROW_SLOTS, WIDE_SLOTS } from '../src/kernels/loss_scale.ts';
import { gpu } from '../src/gpu/device.ts';
import { SGD } from '../src/optim/sgd.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { Rng } from '../src/util/rng.ts';
import { buildLossScaler } from '../src/odc/build.ts';
import { loadCheckpoint } from '../src/odc/checkpoint.ts';
import { applyOverride, type TrainConfig } from '../src/config/settings.ts';
import { train } from '../src/odc/trainer.ts';
import { assertSameCheckpoint, syntheticDataset, tinyConfig } from './train-fixtures.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});
after(() => {
  if (hasF16) setWorkingPrecision('f32');
});

const NO_F16 = 'the adapter has no shader-f16';

/** A two-layer MLP, its SGD (momentum, weight decay) and a fixed batch; `step` runs one iteration. */
function mlp(seed: number) {
  const rng = new Rng(seed);
  const layers = [new Linear(12, 16, rng), new Linear(16, 5, rng)];
  const params = layers.flatMap((l) => l.parameters());
  const sgd = new SGD([{ params }], { lr: 0.1, momentum: 0.9, weightDecay: 1e-3 });
  const x = Tensor.from(
    Float32Array.from({ length: 8 * 12 }, () => rng.range(-1, 1)),
    [8, 12],
  );
  const labels = Tensor.from(
    Uint32Array.from({ length: 8 }, (_, i) => i % 5),
    [8],
    'u32',
  );
  const step = (scaler: LossScaler | null) => {
    tidy(() => {
      const loss = weightedCrossEntropy(layers[1].forward(relu(layers[0].forward(x))), labels, null);
      if (scaler) {
        backward(loss, scaler.seed);
        scaler.unscale(params);
        sgd.step(scaler.skipFlag);
        scaler.update();
      } else {
        backward(loss);
        sgd.step();
      }
    });
    sgd.zeroGrad();
  };
  const weights = async () => Promise.all(params.map((p) => p.data()));
  const dispose = () => {
    sgd.dispose();
    for (const l of layers) l.dispose();
    x.dispose();
    labels.dispose();
  };
  return { step, weights, sgd, dispose };
}

const bits = (arrays: Float32Array[]): Uint32Array[] => arrays.map((a) => new Uint32Array(a.slice().buffer));

test('a power-of-two scale unscales exactly: scaled f32 steps give bit-identical weights and momentum', async () => {
  const plain = mlp(7);
  const scaled = mlp(7);
  const scaler = new LossScaler(2 ** 20, 1000);
  try {
    for (let i = 0; i < 4; i++) {
      plain.step(null);
      scaled.step(scaler);
    }
    assert.deepEqual(bits(await scaled.weights()), bits(await plain.weights()), 'weights');
    const [a, b] = [await plain.sgd.exportState(), await scaled.sgd.exportState()];
    assert.deepEqual(bits(b.momentumBuffers as Float32Array[]), bits(a.momentumBuffers as Float32Array[]), 'momentum');
    assert.deepEqual(await scaler.read(), { scale: 2 ** 20, cleanSteps: 4, skippedSteps: 0 });
  } finally {
    plain.dispose();
    scaled.dispose();
    scaler.dispose();
  }
});

test('the multi-tensor unscale equals one gradient at a time, bit for bit (slots, found-inf word shared)', async () => {
  // More gradients than a dispatch has slots, sizes around the 256-element workgroup and one over many; a null and
  // an empty gradient; an inf (first dispatch) in one round and a NaN (last dispatch) in another.
  const sizes = [1, 255, 256, 257, 3, 70_000, 9, 512, 0, 1000, 4, 33, 2, 5, 7, 300, 11, 6, 2];
  const rng = new Rng(5);
  const rounds = [0, 1, 2].map((round) =>
    sizes.map((n, i) => {
      if (i === 4 && round === 1) return null;
      const g = Float32Array.from({ length: n }, () => rng.range(-(2 ** 20), 2 ** 20));
      if (round === 1 && i === 3) g[100] = Infinity;
      if (round === 2 && i === sizes.length - 1) g[1] = NaN;
      return g;
    }),
  );
  const wideFits = gpu().limits.maxStorageBuffersPerShaderStage >= WIDE_SLOTS + 2;
  try {
    for (const slots of wideFits ? ([WIDE_SLOTS, NARROW_SLOTS] as const) : ([NARROW_SLOTS] as const)) {
      const run = async (perDispatch: 1 | typeof NARROW_SLOTS | typeof WIDE_SLOTS) => {
        forceUnscaleSlots(perDispatch);
        const scaler = new LossScaler(2 ** 12, 1000);
        const params = sizes.map((n) => Tensor.from(new Float32Array(n), [n]));
        const result: Array<{ grads: Array<Float32Array | null>; found: number }> = [];
        for (const grads of rounds) {
          params.forEach((p, i) => (p.grad = grads[i] ? Tensor.from(grads[i]!, [sizes[i]]) : null));
          scaler.unscale(params);
          const out = await Promise.all(params.map((p) => (p.grad ? p.grad.data() : null)));
          result.push({ grads: out, found: (await scaler.skipFlag.data())[0] });
          scaler.update(); // clears the found-inf word
          for (const p of params) p.grad?.dispose();
        }
        for (const p of params) p.dispose();
        scaler.dispose();
        return result;
      };
      const together = await run(slots);
      const alone = await run(1);
      together.forEach((r, round) => {
        assert.equal(r.found, alone[round].found, `found-inf word, round ${round}, ${slots} slots`);
        assert.equal(r.found, round === 0 ? 0 : 1, `found-inf word, round ${round}`);
        r.grads.forEach((g, i) => {
          const what = `gradient ${i}, round ${round}, ${slots} slots`;
          if (g === null) return assert.equal(alone[round].grads[i], null, what);
          assert.deepEqual(bits([g]), bits([alone[round].grads[i]!]), what);
          if (round === 0 && g.length > 0) assert.equal(g[0], Math.fround(rounds[0][i]![0] / 2 ** 12), what);
        });
      });
    }
  } finally {
    forceUnscaleSlots(null);
  }
});

test('clean steps double the scale after the growth interval and restart the count', async () => {
  const m = mlp(3);
  const scaler = new LossScaler(2 ** 4, 3);
  try {
    const seen = [];
    for (let i = 0; i < 7; i++) {
      m.step(scaler);
      seen.push(await scaler.read());
    }
    assert.deepEqual(
      seen.map((s) => [s.scale, s.cleanSteps]),
      [
        [16, 1],
        [16, 2],
        [32, 0],
        [32, 1],
        [32, 2],
        [64, 0],
        [64, 1],
      ],
    );
  } finally {
    m.dispose();
    scaler.dispose();
  }
});

test('f16 gradients that overflow skip the step on the GPU (weights and momentum untouched) and halve the scale', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  setWorkingPrecision('f16');
  const m = mlp(11);
  const scaler = new LossScaler(2 ** 64, 2);
  try {
    m.step(new LossScaler(1, 1000)); // a clean first step, so there is momentum to keep
    const before = bits(await m.weights());
    const momentum = bits((await m.sgd.exportState()).momentumBuffers as Float32Array[]);
    m.step(scaler); // dY · 2^64 is far past f16's 65504: the f16 copies are inf
    assert.deepEqual(bits(await m.weights()), before, 'the skipped step left the weights');
    assert.deepEqual(bits((await m.sgd.exportState()).momentumBuffers as Float32Array[]), momentum, 'and the momentum');
    assert.deepEqual(await scaler.read(), { scale: 2 ** 63, cleanSteps: 0, skippedSteps: 1 });
    // It keeps halving while the gradients overflow, then the weights move again.
    let steps = 1;
    while ((await scaler.read()).skippedSteps === steps && steps < 80) {
      m.step(scaler);
      steps++;
    }
    const s = await scaler.read();
    assert.ok(s.scale < 2 ** 63, `it came down from 2^64 (now 2^${Math.log2(s.scale)}, ${steps} steps)`);
    assert.equal(s.skippedSteps, 64 - Math.log2(s.scale), 'each skipped step halved the scale once');
    assert.notDeepEqual(bits(await m.weights()), before, 'a clean step updated the weights');
  } finally {
    setWorkingPrecision('f32');
    m.dispose();
    scaler.dispose();
  }
});

test('a scale that is not a power of two in range is refused with the reason', () => {
  assert.throws(() => new LossScaler(3, 10), /power of two/);
  assert.throws(() => new LossScaler(2 ** 70, 10), /power of two in \[2\^-64, 2\^64\]/);
  assert.throws(() => new LossScaler(1, 0), /growth interval/);
});

function config(precision: 'f32' | 'f16', ...overrides: string[]): TrainConfig {
  return [`optim.precision=${precision}`, ...overrides].reduce((c, o) => applyOverride(c, o), tinyConfig());
}

test('an f32 run builds no loss scaler; an f16 run one unless optim.lossScale is off', () => {
  assert.equal(buildLossScaler(config('f32')), null);
  assert.equal(buildLossScaler(config('f16', 'optim.lossScale=off')), null);
  const s = buildLossScaler(config('f16'));
  assert.ok(s instanceof LossScaler);
  s.dispose();
});

test('an f16 run from a huge scale skips its first steps, trains, and resumes bit-exactly with its scale state', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  const straight = mkdtempSync(join(tmpdir(), 'odc-scale-straight-'));
  const resumed = mkdtempSync(join(tmpdir(), 'odc-scale-resumed-'));
  // 2^28 overflows for the first steps; an interval of 2 then grows it again, so the state moves across the cut.
  const c = config('f16', 'optim.epochs=3', 'optim.lossScaleLog2=28', 'optim.lossScaleInterval=2');
  try {
    const ds = syntheticDataset();
    const whole = await train({ config: c, outDir: straight, dataset: ds, quiet: true });
    for (const e of whole.epochs) assert.ok(Number.isFinite(e.loss), `loss ${e.loss}`);
    const end = (await loadCheckpoint(straight)).meta.lossScale;
    assert.ok(end && end.skippedSteps > 0, `skipped steps: ${JSON.stringify(end)}`);
    assert.ok(end.skippedSteps < whole.iterations, `and trained: ${JSON.stringify(end)}`);
    t.diagnostic(`after ${whole.iterations} iterations: ${JSON.stringify(end)}`);
    await train({ config: c, outDir: resumed, dataset: ds, quiet: true, stopAfterIterations: 10 });
    await train({ config: c, outDir: resumed, dataset: ds, quiet: true, resume: true });
    await assertSameCheckpoint(straight, resumed);
    assert.deepEqual((await loadCheckpoint(resumed)).meta.lossScale, end);
  } finally {
    rmSync(straight, { recursive: true, force: true });
    rmSync(resumed, { recursive: true, force: true });
  }
});
