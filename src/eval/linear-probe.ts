/**
 * Linear probe: a linear classifier trained on frozen features, on the GPU with the engine's own ops
 * (gatherRows -> linear -> weightedCrossEntropy, backward, SGD with momentum and weight decay).
 *
 * Features are standardised per dimension with the train split's mean and (population) std first
 * (a numerically constant dimension keeps scale 1). The weight starts as Normal(0, 0.01) (as in the
 * mmselfsup linear heads), the bias at 0; the learning rate decays by a cosine over all steps; mini-batches
 * come from a seeded shuffle per epoch, so a seed fixes the whole run. Returns train and test top-1.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { knn } from '../kernels/knn.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { tidy } from '../tensor/scope.ts';
import { backward, noGrad } from '../tensor/autograd.ts';
import { addInPlace, zeros } from '../ops/elementwise.ts';
import { linear } from '../ops/matmul.ts';
import { weightedCrossEntropy } from '../ops/loss.ts';
import { argmaxRows, gatherRows } from '../ops/rows.ts';
import { SGD } from '../optim/sgd.ts';
import { Rng } from '../util/rng.ts';
import { checkFeatures } from './knn.ts';

/** [2, D]: row 0 the column means of x [N, D], row 1 the reciprocal population std (1 where constant). */
export function featureMoments(x: Tensor<'f32'>): Tensor<'f32'> {
  const [n, d] = checkFeatures(x, 'featureMoments');
  if (n === 0) throw new RangeError('featureMoments: no rows');
  const out = Tensor.empty([2, d], 'f32');
  dispatchKernel(knn.column_moments, {
    params: { rows: n, dim: d },
    bindings: { x: x.buffer, out: out.buffer },
    workgroups: [Math.ceil(d / 64)],
  });
  return out;
}

/** (x - mean) * invstd per column, with moments from featureMoments. */
export function standardizeFeatures(x: Tensor<'f32'>, moments: Tensor<'f32'>): Tensor<'f32'> {
  const [n, d] = checkFeatures(x, 'standardizeFeatures');
  expectDType(moments, 'f32', 'standardizeFeatures: moments');
  if (moments.rank !== 2 || moments.shape[0] !== 2 || moments.shape[1] !== d) {
    throw new RangeError(`standardizeFeatures: moments must be [2, ${d}], got ${fmtShape(moments.shape)}`);
  }
  const out = Tensor.empty([n, d], 'f32');
  dispatchKernel(knn.standardize, {
    params: { cols: n * d, dim: d },
    bindings: { x: x.buffer, stats: moments.buffer, out: out.buffer },
    workgroups: grid(Math.ceil((n * d) / 256)),
  });
  return out;
}

export interface LinearProbeOptions {
  numClasses: number;
  epochs: number;
  lr: number;
  batchSize: number;
  weightDecay: number;
  seed: number;
  /** SGD momentum (default 0.9). */
  momentum?: number;
  /** Standardise features with the train split's statistics (default true). */
  standardize?: boolean;
  /** Called after each epoch with its mean training loss (one readback per epoch). */
  onEpoch?: (epoch: number, meanLoss: number) => void;
}

export interface LinearProbeResult {
  /** Top-1 accuracy of the final classifier on the train and test splits, in [0, 1]. */
  trainAccuracy: number;
  testAccuracy: number;
  /** Mean training loss per epoch. */
  losses: number[];
  testPredictions: Int32Array;
}

function checkLabels(labels: Int32Array, n: number, numClasses: number, what: string): void {
  if (!(labels instanceof Int32Array)) throw new TypeError(`linearProbe: ${what} must be an Int32Array`);
  if (labels.length !== n) throw new RangeError(`linearProbe: ${labels.length} ${what} for ${n} feature rows`);
  for (let i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= numClasses)
      throw new RangeError(`linearProbe: ${what}[${i}] = ${labels[i]} is outside 0..${numClasses - 1}`);
  }
}

/** Argmax of x·Wᵀ + b for every row of x, in row chunks; one readback per chunk. */
async function predict(x: Tensor<'f32'>, weight: Tensor<'f32'>, bias: Tensor<'f32'>): Promise<Int32Array> {
  const [n, d] = x.shape;
  const c = weight.shape[0];
  const out = new Int32Array(n);
  const chunk = Math.max(1, Math.floor((16 << 20) / Math.max(c, d)));
  for (let row0 = 0; row0 < n; row0 += chunk) {
    const rows = Math.min(chunk, n - row0);
    const pred = noGrad(() =>
      tidy(() => {
        if (rows === n) return argmaxRows(linear(x, weight, bias));
        const index = Tensor.from(
          Uint32Array.from({ length: rows }, (_, i) => row0 + i),
          [rows],
          'u32',
        );
        return argmaxRows(linear(gatherRows(x, index), weight, bias));
      }),
    );
    try {
      out.set(await pred.data(), row0);
    } finally {
      pred.dispose();
    }
  }
  return out;
}

function accuracyOf(pred: Int32Array, labels: Int32Array): number {
  if (labels.length === 0) return 0;
  let hits = 0;
  for (let i = 0; i < labels.length; i++) if (pred[i] === labels[i]) hits++;
  return hits / labels.length;
}

/** Trains a linear classifier on frozen train features and reports train/test accuracy. */
export async function linearProbe(
  trainFeatures: Tensor<'f32'>,
  trainLabels: Int32Array,
  testFeatures: Tensor<'f32'>,
  testLabels: Int32Array,
  opts: LinearProbeOptions,
): Promise<LinearProbeResult> {
  const [ntr, d] = checkFeatures(trainFeatures, 'linearProbe (train features)');
  const [nte, dte] = checkFeatures(testFeatures, 'linearProbe (test features)');
  if (d !== dte)
    throw new RangeError(
      `linearProbe: train features ${fmtShape(trainFeatures.shape)} and test features ${fmtShape(testFeatures.shape)} differ in dimension`,
    );
  const { numClasses, epochs, lr, batchSize, weightDecay, seed } = opts;
  const momentum = opts.momentum ?? 0.9;
  if (!Number.isInteger(numClasses) || numClasses < 2)
    throw new RangeError(`linearProbe: numClasses = ${numClasses} must be an integer >= 2`);
  if (!Number.isInteger(epochs) || epochs < 0)
    throw new RangeError(`linearProbe: epochs = ${epochs} must be a non-negative integer`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new RangeError(`linearProbe: batchSize = ${batchSize} must be a positive integer`);
  if (ntr === 0) throw new RangeError('linearProbe: no training rows');
  checkLabels(trainLabels, ntr, numClasses, 'train labels');
  checkLabels(testLabels, nte, numClasses, 'test labels');

  const rng = new Rng(seed);
  const owned: Tensor[] = [];
  const weight = Tensor.from(
    Float32Array.from({ length: numClasses * d }, () => 0.01 * rng.normal()),
    [numClasses, d],
  );
  const bias = zeros([numClasses]);
  weight.requiresGrad = true;
  bias.requiresGrad = true;
  owned.push(weight, bias);
  const opt = new SGD([{ params: [weight, bias] }], { lr, momentum, weightDecay });
  try {
    let trainX = trainFeatures;
    let testX = testFeatures;
    if (opts.standardize ?? true) {
      const moments = featureMoments(trainFeatures);
      owned.push(moments);
      trainX = standardizeFeatures(trainFeatures, moments);
      owned.push(trainX);
      if (nte > 0) {
        testX = standardizeFeatures(testFeatures, moments);
        owned.push(testX);
      }
    }
    const labelsU32 = Uint32Array.from(trainLabels);
    const stepsPerEpoch = Math.ceil(ntr / batchSize);
    const totalSteps = epochs * stepsPerEpoch;
    const order = Array.from({ length: ntr }, (_, i) => i);
    const losses: number[] = [];
    let step = 0;
    for (let epoch = 0; epoch < epochs; epoch++) {
      rng.shuffle(order);
      const lossSum = zeros([1]);
      try {
        for (let start = 0; start < ntr; start += batchSize) {
          opt.setLr(0.5 * lr * (1 + Math.cos((Math.PI * step) / totalSteps)));
          const batch = order.slice(start, start + batchSize);
          tidy(() => {
            const index = Tensor.from(batch, [batch.length], 'u32');
            const labels = Tensor.from(
              batch.map((i) => labelsU32[i]),
              [batch.length],
              'u32',
            );
            const logits = linear(gatherRows(trainX, index), weight, bias);
            const loss = weightedCrossEntropy(logits, labels, null);
            backward(loss);
            addInPlace(lossSum, loss);
          });
          opt.step();
          opt.zeroGrad();
          step++;
        }
        const meanLoss = (await lossSum.data())[0] / stepsPerEpoch;
        losses.push(meanLoss);
        opts.onEpoch?.(epoch, meanLoss);
      } finally {
        lossSum.dispose();
      }
    }
    const trainPred = await predict(trainX, weight, bias);
    const testPred = nte > 0 ? await predict(testX, weight, bias) : new Int32Array(0);
    return {
      trainAccuracy: accuracyOf(trainPred, trainLabels),
      testAccuracy: accuracyOf(testPred, testLabels),
      losses,
      testPredictions: testPred,
    };
  } finally {
    opt.zeroGrad();
    opt.dispose();
    for (const t of owned) t.dispose();
  }
}
