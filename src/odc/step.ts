/**
 * One training iteration (ODC-SPEC 2.8), the same for both modes and for the training-step bench:
 *   1. augment the batch on the GPU
 *   2. forward: backbone -> (neck) -> f -> head -> logits
 *   3. y := the mode's labels of the batch BEFORE this step's update
 *   4. loss := (weighted) cross-entropy of logits against y
 *   5. the mode takes in f (ODC: memory momentum update + relabel)
 *   6. backward, SGD step
 *   7. the mode's work after the step (ODC: centroid recompute every centroidInterval iterations,
 *      small-cluster handling, re-weighting), whose host decisions may stay open (`keepOpen`)
 * Loss, head accuracy and change count stay on the GPU; `record` copies them into the metric slots.
 */
import { Tensor } from '../tensor/tensor.ts';
import { tidy } from '../tensor/scope.ts';
import { backward } from '../tensor/autograd.ts';
import { weightedCrossEntropy } from '../ops/loss.ts';
import { argmaxRows, countEqual } from '../ops/rows.ts';
import type { SGD } from '../optim/sgd.ts';
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
  const { model, sgd, mode } = parts;
  mode.beginStep();
  try {
    tidy(() => {
      const idxT = Tensor.from(idx, [idx.length], 'u32');
      const x = parts.augmenter.augment(idx, parts.augmentRng);
      const y = mode.targets(idx, idxT);
      const f = model.features(x);
      const logits = model.head.forward(f);
      const loss = weightedCrossEntropy(logits, y, mode.weights, { chunks: parts.config.odc.lossChunks });
      const correct = countEqual(argmaxRows(logits), y);
      mode.observe(idxT, f);
      backward(loss);
      sgd.step();
      record?.(loss, correct, mode.changeCount, idx.length);
    });
    sgd.zeroGrad();
    mode.afterStep(iteration);
  } catch (err) {
    mode.abandonStep();
    throw err;
  }
  return mode.settle(keepOpen);
}
