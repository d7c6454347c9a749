import { test, before } from 'node:test';
import fc from 'fast-check';
import { assert, assertClose, randomValues, setupGpu, RUNS } from './helpers.ts';
import { SGD, forceSgdSlots, type ParamGroup } from '../src/optim/sgd.ts';
import { singleStepLr, stepLr } from '../src/optim/schedule.ts';
import { refSgdStep, type RefSgdOptions } from '../src/ref/sgd.ts';
import { weightedCrossEntropy } from '../src/ops/loss.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { gpu } from '../src/gpu/device.ts';

// Parameters are ~1 and each f32 step rounds p, b and the update once or twice (~6e-8 relative each);
// over <= 6 steps with lr <= 0.5 and momentum <= 0.9 the drift from float64 stays below ~1e-6.
const STEP_TOL = { rtol: 2e-6, atol: 2e-6 };

before(async () => {
  await setupGpu();
});

interface GroupSpec {
  sizes: number[];
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

const groupArb: fc.Arbitrary<GroupSpec> = fc.record(
  {
    sizes: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 2 }),
    lr: fc.constantFrom(0.5, 0.01),
    momentum: fc.constantFrom(0, 0.9, 0.5),
    weightDecay: fc.constantFrom(0, 1e-5, 0.1),
    nesterov: fc.boolean(),
  },
  { requiredKeys: ['sizes'] },
);

function fround(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(a));
}

test('SGD with groups, momentum, weight decay and nesterov equals the float64 reference step by step', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(groupArb, { minLength: 1, maxLength: 3 }),
      fc.record({
        lr: fc.constantFrom(0.06, 0.2),
        momentum: fc.constantFrom(0, 0.9),
        weightDecay: fc.constantFrom(0, 1e-4),
      }),
      fc.integer(),
      async (specs, defaults, seed) => {
        const groups: ParamGroup[] = [];
        const refParams: Float64Array[][] = [];
        const refBufs: Array<Array<Float64Array | null>> = [];
        const opts: RefSgdOptions[] = [];
        let s = seed;
        for (const spec of specs) {
          const momentum = spec.momentum ?? defaults.momentum;
          const nesterov = (spec.nesterov ?? false) && momentum > 0;
          const values = spec.sizes.map((n) => fround(randomValues(s++, n, -2, 2)));
          groups.push({
            params: values.map((v) => Tensor.from(v, [v.length])),
            lr: spec.lr,
            momentum: spec.momentum,
            weightDecay: spec.weightDecay,
            nesterov,
          });
          refParams.push(values.map((v) => v.slice()));
          refBufs.push(values.map(() => null));
          opts.push({
            lr: spec.lr ?? defaults.lr,
            momentum,
            weightDecay: spec.weightDecay ?? defaults.weightDecay,
            nesterov,
          });
        }
        const opt = new SGD(groups, defaults);
        for (let step = 0; step < 4; step++) {
          if (step === 2) {
            // a schedule step: every group's lr scales with the base lr
            opt.setLr(defaults.lr * 0.4);
            opts.forEach((o, gi) => (o.lr = (specs[gi].lr ?? defaults.lr) * 0.4));
          }
          groups.forEach((g, gi) =>
            g.params.forEach((p, pi) => {
              // the first parameter of the first group skips step 1: no grad, no update, no momentum decay
              if (gi === 0 && pi === 0 && step === 1) return;
              const grad = fround(randomValues(s++, p.size));
              p.grad = Tensor.from(grad, p.shape);
              refBufs[gi][pi] = refSgdStep(refParams[gi][pi], grad, refBufs[gi][pi], opts[gi]);
            }),
          );
          opt.step();
          opt.zeroGrad();
          for (let gi = 0; gi < groups.length; gi++) {
            for (let pi = 0; pi < groups[gi].params.length; pi++) {
              assertClose(
                await groups[gi].params[pi].data(),
                refParams[gi][pi],
                STEP_TOL,
                `step ${step} group ${gi} param ${pi}`,
              );
            }
          }
        }
        // momentum buffers: exported in parameter order, null for momentum-0 groups
        const state = await opt.exportState();
        assert.equal(state.lr, defaults.lr * 0.4);
        state.momentumBuffers.forEach((b, k) => {
          const [gi, pi] = locate(groups, k);
          const ref = refBufs[gi][pi];
          if (ref === null) assert.equal(b, null);
          else assertClose(b!, ref, { rtol: 1e-5, atol: 1e-5 }, `buffer ${k}`);
        });
        opt.dispose();
        for (const g of groups) for (const p of g.params) p.dispose();
      },
    ),
    { numRuns: RUNS },
  );
});

function locate(groups: ParamGroup[], k: number): [number, number] {
  for (let gi = 0; gi < groups.length; gi++) {
    if (k < groups[gi].params.length) return [gi, k];
    k -= groups[gi].params.length;
  }
  throw new Error('out of range');
}

test('the multi-tensor update equals one parameter at a time, bit for bit (slot packing, null grads, first steps)', async () => {
  // Sizes around the 256-element workgroup and a parameter over many workgroups, more parameters than a dispatch
  // has slots; one parameter without a grad on some steps; a resumed state with some momentum buffers null.
  const sizes = [1, 255, 256, 257, 3, 70_000, 9, 512, 1000, 4, 33, 2];
  for (const [slots, momentum] of [
    [5, 0],
    [5, 0.9],
    [2, 0],
    [2, 0.9],
  ] as const) {
    if (slots === 5 && gpu().limits.maxStorageBuffersPerShaderStage < 16) continue; // the adapter cannot bind 15
    forceSgdSlots(slots);
    const init = sizes.map((n, i) => fround(randomValues(100 + i, n, -2, 2)));
    const together = init.map((v) => Tensor.from(v, [v.length]));
    const alone = init.map((v) => Tensor.from(v, [v.length]));
    const hyper = { lr: 0.1, momentum, weightDecay: 1e-3, nesterov: momentum > 0 };
    const one = new SGD([{ params: together }], hyper);
    const each = alone.map((p) => new SGD([{ params: [p] }], hyper));
    for (let step = 0; step < 4; step++) {
      if (step === 2 && momentum > 0) {
        // a resume where every other parameter has no momentum buffer yet (its next step is a first step)
        const state = await one.exportState();
        const partial = state.momentumBuffers.map((b, i) => (i % 2 ? null : b));
        one.loadState({ lr: state.lr, momentumBuffers: partial });
        each.forEach((o, i) => o.loadState({ lr: state.lr, momentumBuffers: [partial[i]] }));
      }
      sizes.forEach((n, i) => {
        if (i === 4 && step === 1) return; // no grad: skipped, its momentum not decayed
        const grad = fround(randomValues(1000 * step + i, n));
        together[i].grad = Tensor.from(grad, [n]);
        alone[i].grad = Tensor.from(grad, [n]);
      });
      one.step();
      one.zeroGrad();
      for (const o of each) {
        o.step();
        o.zeroGrad();
      }
      for (let i = 0; i < sizes.length; i++) {
        assert.deepEqual(
          [...(await together[i].data())],
          [...(await alone[i].data())],
          `${slots} slots, momentum ${momentum}, step ${step}, parameter ${i}`,
        );
      }
    }
    const packed = await one.exportState();
    const single = await Promise.all(each.map((o) => o.exportState()));
    packed.momentumBuffers.forEach((b, i) =>
      assert.deepEqual(b && [...b], single[i].momentumBuffers[0] && [...single[i].momentumBuffers[0]!]),
    );
    one.dispose();
    for (const o of each) o.dispose();
    for (const t of [...together, ...alone]) t.dispose();
  }
  forceSgdSlots(null);
});

test("PyTorch rule on hand-computed numbers (momentum 0.9, wd 0.1, first step b = g')", async () => {
  const p = Tensor.from([1], [1]);
  const head = Tensor.from([1], [1]);
  const opt = new SGD([{ params: [p] }, { params: [head], momentum: 0 }], { lr: 0.5, momentum: 0.9, weightDecay: 0.1 });
  p.grad = Tensor.from([1], [1]);
  head.grad = Tensor.from([1], [1]);
  opt.step();
  // g' = 1 + 0.1 = 1.1; b = 1.1; p = 1 - 0.55 = 0.45 (both, since b = g' on the first step)
  assertClose(await p.data(), [0.45], { rtol: 1e-6, atol: 0 }, 'p after 1');
  assertClose(await head.data(), [0.45], { rtol: 1e-6, atol: 0 }, 'head after 1');
  opt.step();
  // g' = 1 + 0.045 = 1.045; b = 0.99 + 1.045 = 2.035; p = 0.45 - 1.0175 = -0.5675
  // head: p = 0.45 - 0.5 * 1.045 = -0.0725
  assertClose(await p.data(), [-0.5675], { rtol: 1e-6, atol: 0 }, 'p after 2');
  assertClose(await head.data(), [-0.0725], { rtol: 1e-5, atol: 0 }, 'head after 2');
  opt.zeroGrad();
  assert.equal(p.grad, null);
  opt.dispose();
  p.dispose();
  head.dispose();
});

test('exportState/loadState resumes bit-identically', async () => {
  const init = Array.from(fround(randomValues(1, 50)));
  const grads = [2, 3, 4, 5].map((s) => fround(randomValues(s, 50)));
  const make = () => {
    const p = Tensor.from(init, [5, 10]);
    return { p, opt: new SGD([{ params: [p] }], { lr: 0.1, momentum: 0.9, weightDecay: 1e-5, nesterov: true }) };
  };
  const a = make();
  const b = make();
  for (let i = 0; i < 4; i++) {
    a.p.grad = Tensor.from(grads[i], [5, 10]);
    a.opt.step();
    a.opt.zeroGrad();
    if (i < 2) {
      b.p.grad = Tensor.from(grads[i], [5, 10]);
      b.opt.step();
      b.opt.zeroGrad();
    }
    if (i === 1) {
      const state = await b.opt.exportState();
      const saved = await b.p.data();
      b.opt.dispose();
      b.p.dispose();
      b.p = Tensor.from(saved, [5, 10]);
      b.opt = new SGD([{ params: [b.p] }], { lr: 0.5, momentum: 0.9, weightDecay: 1e-5, nesterov: true });
      b.opt.loadState(state);
      assert.equal(b.opt.lr, 0.1);
    }
    if (i >= 2) {
      b.p.grad = Tensor.from(grads[i], [5, 10]);
      b.opt.step();
      b.opt.zeroGrad();
    }
  }
  assert.deepEqual([...(await b.p.data())], [...(await a.p.data())]);
  assert.throws(() => b.opt.loadState({ lr: 0.1, momentumBuffers: [] }), /1 parameters/);
  assert.throws(() => b.opt.loadState({ lr: 0.1, momentumBuffers: [new Float32Array(3)] }), /has 3 values/);
  for (const t of [a.p, b.p]) t.dispose();
  a.opt.dispose();
  b.opt.dispose();
});

test('a training loop (loss, backward, step, zeroGrad) does not leak and lowers the loss', async () => {
  const base = gpu().pool.liveCount;
  const logits = Tensor.from(randomValues(3, 4 * 5), [4, 5]);
  logits.requiresGrad = true;
  const labels = Tensor.from([0, 1, 2, 3], [4], 'u32');
  const opt = new SGD([{ params: [logits] }], { lr: 1, momentum: 0.9, weightDecay: 1e-5 });
  const losses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const loss = weightedCrossEntropy(logits, labels, null);
    losses.push((await loss.data())[0]);
    tidy(() => backward(loss));
    loss.dispose();
    tidy(() => opt.step()); // buffers created inside a tidy must survive it
    opt.zeroGrad();
  }
  assert.ok(losses[4] < losses[0], `loss ${losses[0]} -> ${losses[4]}`);
  opt.dispose();
  logits.dispose();
  labels.dispose();
  assert.equal(gpu().pool.liveCount, base);
});

test('SGD validates its configuration and gradients', () => {
  const p = Tensor.from([1, 2], [2]);
  const u = Tensor.from([1, 2], [2], 'u32');
  assert.throws(() => new SGD([{ params: [p] }], { lr: -1 }), /lr must be a finite number >= 0/);
  assert.throws(() => new SGD([{ params: [p], nesterov: true }], { lr: 1 }), /Nesterov momentum with momentum 0/);
  assert.throws(() => new SGD([{ params: [p] }, { params: [p] }], { lr: 1 }), /more than one place/);
  assert.throws(
    () => new SGD([{ params: [u as unknown as Tensor<'f32'>] }], { lr: 1 }),
    /parameters must be f32 tensors, got u32/,
  );
  const opt = new SGD([{ params: [p] }], { lr: 1 });
  p.grad = Tensor.from([1, 2, 3], [3]);
  assert.throws(() => opt.step(), /gradient \[3\] does not match parameter \[2\]/);
  opt.zeroGrad();
  p.dispose();
  u.dispose();
});

test('step schedules', () => {
  // ODC: 0.06 for epochs 0-399, 0.024 from 400
  assert.equal(stepLr(0.06, 0, { steps: [400], gamma: 0.4 }), 0.06);
  assert.equal(stepLr(0.06, 399, { steps: [400], gamma: 0.4 }), 0.06);
  assert.ok(Math.abs(stepLr(0.06, 400, { steps: [400], gamma: 0.4 }) - 0.024) < 1e-15);
  assert.ok(Math.abs(stepLr(1, 35, { steps: [10, 20, 30], gamma: 0.1 }) - 1e-3) < 1e-15);
  assert.equal(stepLr(1, 9, { steps: [10, 20, 30], gamma: 0.1 }), 1);
  assert.equal(singleStepLr(0.06, 439, 400, 0.4), stepLr(0.06, 439, { steps: [400], gamma: 0.4 }));
  assert.throws(() => stepLr(1, -1, { steps: [1], gamma: 0.1 }), /epoch must be an integer >= 0/);
});
