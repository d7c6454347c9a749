/**
 * One training iteration (ODC-SPEC 2.8), the same for both modes and for the training-step bench:
 *   1. augment the batch on the GPU
 *   2. y := the mode's labels of the batch BEFORE this step's update
 *   3. the model part: forward (backbone -> (neck) -> f -> head -> logits), loss := (weighted) cross-entropy of
 *      logits against y, backward, SGD step (under f16 loss scaling: backward from the scale, unscale, an SGD step
 *      the GPU skips on an inf/NaN gradient, the scale's update; src/optim/loss-scale.ts), gradients zeroed
 *   4. the mode takes in f (ODC: memory momentum update + relabel): after the model part, which neither reads nor
 *      writes the memory (the spec's order puts it before backward; the results are the same bit for bit)
 *   5. the mode's work after the step (ODC: centroid recompute every centroidInterval iterations,
 *      small-cluster handling, re-weighting), whose host decisions may stay open (`keepOpen`)
 * Loss, head accuracy and change count stay on the GPU; `record` copies them into the metric slots.
 *
 * The model part is one function of (x, y); with `replay` (optim.replay) it is captured on a tape and later steps
 * replay its launches (src/gpu/tape.ts, `StepReplay` below). The mode's part (targets, observe, afterStep, the
 * late decisions) stays eager.
 */
import { Tensor, dtypeBytes } from '../tensor/tensor.ts';
import { keep, tidy } from '../tensor/scope.ts';
import { gpu, type Gpu } from '../gpu/device.ts';
import { Tape } from '../gpu/tape.ts';
import { backward } from '../tensor/autograd.ts';
import { weightedCrossEntropy } from '../ops/loss.ts';
import { argmaxRows, countEqual } from '../ops/rows.ts';
import type { SGD } from '../optim/sgd.ts';
import type { LossScaler } from '../optim/loss-scale.ts';
import type { OdcModel } from '../models/odc-model.ts';
import type { GpuAugmenter } from '../data/augment.ts';
import type { Rng } from '../util/rng.ts';
import type { TrainingMode } from './modes.ts';
import type { TrainConfig } from '../config/settings.ts';

/** What one iteration works on. */
export interface StepParts {
  config: TrainConfig;
  model: OdcModel;
  sgd: SGD;
  augmenter: GpuAugmenter;
  /** Draws the random augmentations (advanced by every step). */
  augmentRng: Rng;
  mode: TrainingMode;
  /** Dynamic loss scaling (precision f16), or null. */
  scaler: LossScaler | null;
  /** Captures the model part once and replays it (optim.replay), or null/absent: every step runs it eagerly. */
  replay?: StepReplay | null;
}

/** Receives an iteration's GPU scalars (loss, correct predictions, labels changed) and its batch size. */
export type StepRecorder = (
  loss: Tensor<'f32'>,
  correct: Tensor<'u32'>,
  changed: Tensor<'u32'> | null,
  rows: number,
) => void;

/**
 * Runs one iteration on the images `idx`; `iteration` counts the iterations before it. With keepOpen = 0 every
 * decision is made before this returns; with 1 (the training loop) this iteration's small-cluster decision stays
 * open while the host records the next one (at most two in flight, src/gpu/inflight.ts). Returns the clusters
 * split by the iterations decided in this call.
 */
export async function trainingStep(
  parts: StepParts,
  idx: Uint32Array,
  iteration: number,
  record?: StepRecorder,
  keepOpen = 0,
): Promise<number> {
  const { mode } = parts;
  mode.beginStep();
  try {
    tidy(() => {
      const idxT = Tensor.from(idx, [idx.length], 'u32');
      const x = parts.augmenter.augment(idx, parts.augmentRng);
      const y = mode.targets(idx, idxT);
      const run = (x: Tensor<'f32'>, y: Tensor<'u32'>): ModelPartOutputs => modelPart(parts, x, y);
      const { f, loss, correct } = parts.replay ? parts.replay.run(replayKey(parts, idx.length), x, y, run) : run(x, y);
      mode.observe(idxT, f);
      record?.(loss, correct, mode.changeCount, idx.length);
    });
    mode.afterStep(iteration);
  } catch (err) {
    mode.abandonStep();
    throw err;
  }
  return mode.settle(keepOpen);
}

/** What the model part hands on: the batch's features (for the mode), its loss and its correct predictions. */
export interface ModelPartOutputs {
  f: Tensor<'f32'>;
  loss: Tensor<'f32'>;
  correct: Tensor<'u32'>;
}

/** Forward, loss, backward, (unscale,) SGD step, (the scale's update,) zeroGrad: the part a tape replays. */
function modelPart(parts: StepParts, x: Tensor<'f32'>, y: Tensor<'u32'>): ModelPartOutputs {
  const { model, sgd, mode, scaler } = parts;
  const f = model.features(x);
  const logits = model.head.forward(f);
  const loss = weightedCrossEntropy(logits, y, mode.weights, { chunks: parts.config.odc.lossChunks });
  const correct = countEqual(argmaxRows(logits), y);
  if (scaler) {
    backward(loss, scaler.seed);
    scaler.unscale(model.parameters());
    sgd.step(scaler.skipFlag);
    scaler.update();
  } else {
    backward(loss);
    sgd.step();
  }
  sgd.zeroGrad();
  return { f, loss, correct };
}

/**
 * Everything host-side that changes what the model part records and is not a GPU buffer's content: a tape captured
 * under another key never replays. Buffers it binds are watched by the tape itself (a released one makes it stale),
 * and the launches of two consecutive captures must be equal before any replay.
 */
function replayKey(parts: StepParts, rows: number): string {
  const { model, sgd, mode, scaler, config } = parts;
  return [
    rows,
    sgd.lr, // setLr at epoch boundaries: every group's lr follows the base lr
    model.recordingSignature(), // train/eval flags, frozen parameters, gradients left on them (a hook may set any)
    config.optim.precision,
    scaler !== null,
    mode.weights !== null,
    config.odc.lossChunks,
  ].join('|');
}

/** Consecutive captures that differ before StepReplay gives up on a key (the first step differs: SGD's first step). */
const MAX_UNEQUAL_CAPTURES = 3;

/**
 * The model part of the training step, captured and replayed (src/gpu/tape.ts): the first runs under a key are
 * captured (and run eagerly); once a capture equals the one before it, its tape is adopted and later runs replay it
 * with x and y copied into the tape's own input buffers. The outputs (f, loss, correct) then live in the tape: the
 * same tensors every step, which the caller must not free (a copy would cost three more launches per step and the
 * caller only reads them before the next step). A new key on two runs in a row (a new learning rate), a stale tape
 * (a parameter or optimiser buffer was released: a rebuilt model, a loaded optimiser state) or `dispose` drops the tape
 * and captures again; another key on a single run (an epoch's short last batch) runs eagerly beside it; a region that
 * never records the same launches twice (a uniform word that changes every step), or reads from the GPU, stays
 * eager, said once under ODC_DEBUG.
 */
export class StepReplay {
  private key = '';
  private device: Gpu | null = null;
  private previous: Tape | null = null;
  private adopted: { key: string; tape: Tape; kept: Tensor[]; outputs: ModelPartOutputs } | null = null;
  /** A key other than the adopted tape's, seen on the last run (see `run`). */
  private otherKey: string | null = null;
  private unequalCaptures = 0;
  private eagerBecause: string | null = null;
  private readonly said = new Set<string>();
  /** Runs of the model part by kind (tests and the bench read them). */
  readonly counts = { captured: 0, replayed: 0, eager: 0 };

  /** The adopted tape, or null (benches measure it). */
  get tape(): Tape | null {
    return this.adopted?.tape ?? null;
  }

  /** Runs `run(x, y)`, or replays its tape; see the class comment. */
  run(
    key: string,
    x: Tensor<'f32'>,
    y: Tensor<'u32'>,
    run: (x: Tensor<'f32'>, y: Tensor<'u32'>) => ModelPartOutputs,
  ): ModelPartOutputs {
    const g = gpu();
    if (g.collectingKernels) return run(x, y); // compileAll: nothing is recorded, nothing to capture
    if (g !== this.device) {
      this.forget(); // a tape of another (closed or lost) device: its buffers went with it
      this.device = g;
    }
    const fullKey = `${key}|${g.recordingOnly ? 'recordOnly' : 'real'}`;
    const stale = this.adopted?.tape.stale;
    if (stale) {
      this.say(`the step's tape is dropped: ${stale}`);
      this.drop();
    }
    if (this.adopted) {
      if (this.adopted.key === fullKey) {
        this.otherKey = null;
        this.adopted.tape.replay([x.buffer, y.buffer]);
        this.counts.replayed++;
        return this.adopted.outputs;
      }
      // Another key once (an epoch's short last batch) runs eagerly beside the tape; twice in a row (a new
      // learning rate) replaces it.
      if (this.otherKey !== fullKey) {
        this.otherKey = fullKey;
        this.counts.eager++;
        return run(x, y);
      }
      this.drop();
    }
    if (fullKey !== this.key) {
      this.key = fullKey;
      this.previous = null;
      this.unequalCaptures = 0;
      this.eagerBecause = null;
    }
    if (this.eagerBecause) {
      this.counts.eager++;
      return run(x, y);
    }
    return this.capture(g, x, y, run);
  }

  /** Gives the tape's buffers back (and forgets every capture: a later run captures afresh). */
  dispose(): void {
    this.drop();
  }

  private capture(
    g: Gpu,
    x: Tensor<'f32'>,
    y: Tensor<'u32'>,
    run: (x: Tensor<'f32'>, y: Tensor<'u32'>) => ModelPartOutputs,
  ): ModelPartOutputs {
    // Buffers released earlier become free first, so the pool's state at the region's start, and with it the
    // buffers the region binds, does not depend on where the last submit happened to fall.
    g.flush();
    const tape = new Tape(g);
    const inputs: Tensor[] = [];
    const outputs = tape.capture(() => {
      const xIn = Tensor.empty(x.shape, x.dtype);
      const yIn = Tensor.empty(y.shape, y.dtype);
      inputs.push(xIn, yIn);
      tape.input(0, x.buffer, xIn.buffer, bytesOf(x));
      tape.input(1, y.buffer, yIn.buffer, bytesOf(y));
      return tidy(() => run(xIn, yIn));
    });
    this.counts.captured++;
    const previous = this.previous;
    this.previous = tape;
    if (!previous) return outputs;
    const difference = tape.differenceFrom(previous) ?? tape.adopt();
    if (difference === null) {
      const kept = [...inputs, outputs.f, outputs.loss, outputs.correct];
      for (const t of kept) {
        keep(t);
        t.node = null;
      }
      this.adopted = { key: this.key, tape, kept, outputs };
      this.previous = null;
      this.unequalCaptures = 0;
      return outputs;
    }
    if (tape.refusal !== null || ++this.unequalCaptures >= MAX_UNEQUAL_CAPTURES) {
      this.eagerBecause = difference;
      this.previous = null;
      this.say(`the training step stays eager (no replay): ${difference}`);
    }
    return outputs;
  }

  /** Gives the adopted tape's buffers back to the pool and forgets every capture. */
  private drop(): void {
    if (this.adopted) {
      this.adopted.tape.release();
      for (const t of this.adopted.kept) t.dispose();
    }
    this.forget();
  }

  /** Forgets the tape and every capture without touching the pool (whose device is gone). */
  private forget(): void {
    this.adopted = null;
    this.previous = null;
    this.otherKey = null;
    this.unequalCaptures = 0;
    this.eagerBecause = null;
    this.key = '';
  }

  /** One ODC_DEBUG line per distinct reason. */
  private say(message: string): void {
    if (this.said.has(message)) return;
    this.said.add(message);
    if (process.env.ODC_DEBUG) console.error(`odc: ${message}`);
  }
}

/** A tensor's bytes, rounded up to whole words (copies move multiples of 4). */
function bytesOf(t: Tensor): number {
  return Math.ceil((t.size * dtypeBytes(t.dtype)) / 4) * 4;
}
