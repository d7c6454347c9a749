/**
 * CPU float64 reference for batch normalisation (src/ops/batchnorm.ts), written plainly: x is viewed as
 * [rows, C] with C the last axis; statistics are per channel over all rows.
 */
import { refArray, type RefArray } from './array.ts';

export interface RefBatchNormOptions {
  training: boolean;
  runningMean: RefArray;
  runningVar: RefArray;
  momentum: number;
  eps: number;
}

export interface RefBatchNormResult {
  out: RefArray;
  /** The mean and variance (biased) used to normalise: batch stats in training, running stats in eval. */
  mean: Float64Array;
  variance: Float64Array;
  /** Running stats after the step (unchanged in eval). */
  runningMean: RefArray;
  runningVar: RefArray;
}

function channelsOf(x: RefArray): { rows: number; channels: number } {
  const channels = x.shape[x.shape.length - 1];
  return { rows: x.data.length / channels, channels };
}

/** Per-channel mean and biased variance, two passes. */
export function refChannelMoments(x: RefArray): { mean: Float64Array; variance: Float64Array } {
  const { rows, channels } = channelsOf(x);
  const mean = new Float64Array(channels);
  const variance = new Float64Array(channels);
  for (let r = 0; r < rows; r++) for (let c = 0; c < channels; c++) mean[c] += x.data[r * channels + c];
  for (let c = 0; c < channels; c++) mean[c] /= rows;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < channels; c++) {
      const d = x.data[r * channels + c] - mean[c];
      variance[c] += d * d;
    }
  }
  for (let c = 0; c < channels; c++) variance[c] /= rows;
  return { mean, variance };
}

export function refBatchNorm(
  x: RefArray,
  weight: RefArray | null,
  bias: RefArray | null,
  opts: RefBatchNormOptions,
): RefBatchNormResult {
  const { rows, channels } = channelsOf(x);
  const moments = opts.training
    ? refChannelMoments(x)
    : { mean: Float64Array.from(opts.runningMean.data), variance: Float64Array.from(opts.runningVar.data) };
  const { mean, variance } = moments;
  const runningMean = refArray([channels], opts.runningMean.data);
  const runningVar = refArray([channels], opts.runningVar.data);
  if (opts.training) {
    for (let c = 0; c < channels; c++) {
      const unbiased = (variance[c] * rows) / (rows - 1);
      runningMean.data[c] = (1 - opts.momentum) * runningMean.data[c] + opts.momentum * mean[c];
      runningVar.data[c] = (1 - opts.momentum) * runningVar.data[c] + opts.momentum * unbiased;
    }
  }
  const sigma = new Float64Array(channels);
  const w = new Float64Array(channels);
  const b = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    sigma[c] = Math.sqrt(variance[c] + opts.eps);
    w[c] = weight ? weight.data[c] : 1;
    b[c] = bias ? bias.data[c] : 0;
  }
  const out = refArray(x.shape);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < channels; c++) {
      const i = r * channels + c;
      out.data[i] = ((x.data[i] - mean[c]) / sigma[c]) * w[c] + b[c];
    }
  }
  return { out, mean, variance, runningMean, runningVar };
}

export interface RefBatchNormGrads {
  dx: RefArray;
  dweight: RefArray;
  dbias: RefArray;
}

/**
 * Gradients of sum(g ⊙ batchNorm(x)). Training: the statistics depend on x, so
 * dx = w/σ · (g - mean(g) - x̂ · mean(g · x̂)) per channel; eval: dx = w/σ · g with σ from the running var.
 */
export function refBatchNormBackward(
  g: RefArray,
  x: RefArray,
  weight: RefArray | null,
  opts: RefBatchNormOptions,
): RefBatchNormGrads {
  const { rows, channels } = channelsOf(x);
  const { mean, variance } = opts.training
    ? refChannelMoments(x)
    : { mean: opts.runningMean.data, variance: opts.runningVar.data };
  const dx = refArray(x.shape);
  const dweight = refArray([channels]);
  const dbias = refArray([channels]);
  const sigma = new Float64Array(channels);
  for (let c = 0; c < channels; c++) sigma[c] = Math.sqrt(variance[c] + opts.eps);
  const xhat = (i: number, c: number) => (x.data[i] - mean[c]) / sigma[c];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < channels; c++) {
      const i = r * channels + c;
      dbias.data[c] += g.data[i];
      dweight.data[c] += g.data[i] * xhat(i, c);
    }
  }
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < channels; c++) {
      const i = r * channels + c;
      const w = weight ? weight.data[c] : 1;
      dx.data[i] = opts.training
        ? (w / sigma[c]) * (g.data[i] - dbias.data[c] / rows - xhat(i, c) * (dweight.data[c] / rows))
        : (w / sigma[c]) * g.data[i];
    }
  }
  return { dx, dweight, dbias };
}
