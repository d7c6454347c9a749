/**
 * Batch normalisation over the last (channel) axis: BatchNorm1d on [B, C], BatchNorm2d on NHWC
 * [N, H, W, C]. One WGSL family (shaders/batchnorm.wgsl).
 *
 * Training: statistics come from a deterministic two-pass reduction (partial (mean, M2) per block of rows
 * and tile of channels, then a per-channel fold in block order that also updates the running stats in place);
 * the fold runs inside the elementwise apply (two dispatches, not three). The backward is the full batch-norm
 * gradient: the same two-pass reduction gives Σdy and Σdy·x̂ per channel (which are also d bias and d weight),
 * its fold inside the elementwise pass that gives dx.
 * Eval: statistics are the running stats; dx is dy times the per-channel scale.
 * `relu: true` fuses a ReLU after the normalisation (conv-BN-ReLU blocks): the apply pass clamps, and the
 * backward passes mask dy by the saved output, so no separate ReLU kernels or tensors are needed. With a
 * `residual` as well (a residual block's relu(bn(x) + shortcut)), the training apply adds it before the clamp
 * and the training dx pass also writes the shortcut's gradient (the masked dy): the add, the ReLU and its
 * backward need no dispatch of their own, and every value is bit-identical to the separate kernels.
 * x may be an f16 activation (`--precision f16`): statistics are accumulated in f32, the output is f16 like x,
 * and the gradients are f32.
 */
import { gpu } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { batchnorm } from '../kernels/batchnorm.ts';
import { Tensor, expectDType, expectFloat, expectShape, fmtShape, type FloatDType } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { add, relu as reluOp, reluBackward } from './elementwise.ts';

export interface BatchNormOptions {
  /** Apply max(·, 0) to the output in the same kernel (the gradient is masked where the output is 0). */
  relu?: boolean;
  /**
   * With `relu`: relu(batchNorm(x) + residual), residual of x's shape and dtype (a residual block's shortcut),
   * differentiable in it too.
   */
  residual?: Tensor<FloatDType>;
}

/** Storage bindings of the fused residual kernels (stats_apply_add_relu, dx_train_add_relu). */
const RESIDUAL_BINDINGS = 9;

export interface BatchNormState {
  runningMean: Tensor<'f32'>;
  runningVar: Tensor<'f32'>;
  momentum: number;
  eps: number;
}

/** Reduction geometry: channel tile and row lanes per workgroup (CT·RL = 256), rows per block. */
interface Geometry {
  rows: number;
  channels: number;
  ct: number;
  rl: number;
  rowsPerBlock: number;
  nblocks: number;
}

/** At most this many row blocks, so the finalize loop stays short; each block at least 64 rows. */
const MAX_BLOCKS = 256;
const MIN_ROWS_PER_BLOCK = 64;

function geometry(rows: number, channels: number): Geometry {
  const ct = channels >= 48 ? 64 : channels >= 12 ? 16 : 4;
  const rowsPerBlock = Math.max(MIN_ROWS_PER_BLOCK, Math.ceil(rows / MAX_BLOCKS));
  return { rows, channels, ct, rl: 256 / ct, rowsPerBlock, nblocks: Math.max(1, Math.ceil(rows / rowsPerBlock)) };
}

/** The shape parameters the kernels share. */
function shapeParams(g: Geometry) {
  return { rows: g.rows, channels: g.channels, nblocks: g.nblocks, rows_per_block: g.rowsPerBlock };
}

/** Workgroups of the elementwise passes: channel tiles × row groups (each row group strides on). */
function tileGrid(g: Geometry): [number, number] {
  return [
    Math.ceil(g.channels / g.ct),
    Math.min(gpu().limits.maxComputeWorkgroupsPerDimension, Math.ceil(g.rows / g.rl)),
  ];
}

/**
 * Workgroups of the elementwise passes that fold the partials first (stats_apply, dx_train): each workgroup
 * folds nblocks partials for its channels, so the row groups are limited to about one per nblocks · RL rows:
 * then the fold costs about one merge per RL elements of the pass.
 */
function foldingGrid(g: Geometry): [number, number] {
  const [tilesC, rowGroups] = tileGrid(g);
  return [tilesC, Math.max(1, Math.min(rowGroups, Math.ceil(g.rows / (g.rl * g.nblocks))))];
}

/** The template constants: the tile of CT channels × RL row lanes. */
function tiles(g: Geometry) {
  return { CT: g.ct, RL: g.rl };
}

function checkNumber(value: number, ok: boolean, what: string): void {
  if (typeof value !== 'number' || !ok) throw new RangeError(`batchNorm: ${what}, got ${String(value)}`);
}

function validate(
  x: Tensor<FloatDType>,
  state: BatchNormState,
  weight: Tensor<'f32'> | null,
  bias: Tensor<'f32'> | null,
  training: boolean,
): number {
  expectFloat(x, 'batchNorm x');
  if (x.rank !== 2 && x.rank !== 4) {
    throw new RangeError(`batchNorm: expected x of shape [B, C] or [N, H, W, C], got ${fmtShape(x.shape)}`);
  }
  const channels = x.shape[x.rank - 1];
  if (x.size === 0) throw new RangeError(`batchNorm: x ${fmtShape(x.shape)} is empty`);
  if (!state || typeof state !== 'object') throw new TypeError('batchNorm: state must be a BatchNormState');
  expectDType(state.runningMean, 'f32', 'batchNorm runningMean');
  expectShape(state.runningMean, [channels], 'batchNorm runningMean');
  expectDType(state.runningVar, 'f32', 'batchNorm runningVar');
  expectShape(state.runningVar, [channels], 'batchNorm runningVar');
  if (weight) {
    expectDType(weight, 'f32', 'batchNorm weight');
    expectShape(weight, [channels], 'batchNorm weight');
  }
  if (bias) {
    expectDType(bias, 'f32', 'batchNorm bias');
    expectShape(bias, [channels], 'batchNorm bias');
  }
  checkNumber(state.eps, Number.isFinite(state.eps) && state.eps > 0, 'eps must be a positive finite number');
  checkNumber(
    state.momentum,
    Number.isFinite(state.momentum) && state.momentum >= 0 && state.momentum <= 1,
    'momentum must be in [0, 1]',
  );
  if (typeof training !== 'boolean')
    throw new TypeError(`batchNorm: training must be a boolean, got ${String(training)}`);
  // The running stats are written in place while weight and bias are read in the same dispatch.
  const buffers = [state.runningMean, state.runningVar, weight, bias]
    .filter((t): t is Tensor<'f32'> => t !== null)
    .map((t) => t.buffer);
  if (buffers[0] === buffers[1]) throw new RangeError('batchNorm: runningMean and runningVar must not share storage');
  if (buffers.slice(2).some((b) => b === buffers[0] || b === buffers[1])) {
    throw new RangeError('batchNorm: weight and bias must not share storage with the running stats');
  }
  const rows = x.size / channels;
  if (training && rows < 2) {
    throw new RangeError(
      `batchNorm: expected more than 1 value per channel when training, got input of shape ${fmtShape(x.shape)} ` +
        `(${rows} value per channel); use a batch of at least 2, or eval mode`,
    );
  }
  return channels;
}

/**
 * Normalises x over every axis but the last. Training uses the batch mean and biased batch variance and
 * updates `state.runningMean`/`runningVar` in place (running = (1 - momentum)·running + momentum·stat,
 * with the unbiased variance); eval uses the running stats. `weight`/`bias` ([C]) may each be null.
 * With `options.relu` the result is relu(batchNorm(x)), in the same kernels. Differentiable in x, weight
 * and bias. The output has x's dtype (f32, or f16 for an f16 activation).
 */
export function batchNorm<D extends FloatDType>(
  x: Tensor<D>,
  state: BatchNormState,
  weight: Tensor<'f32'> | null,
  bias: Tensor<'f32'> | null,
  training: boolean,
  options: BatchNormOptions = {},
): Tensor<D> {
  const channels = validate(x, state, weight, bias, training);
  const relu = Boolean(options.relu);
  const residual = options.residual ?? null;
  if (residual) {
    if (!relu) throw new RangeError('batchNorm: a residual is only fused with relu: true');
    expectDType(residual, x.dtype, 'batchNorm residual');
    expectShape(residual, x.shape, 'batchNorm residual');
    // Eval (feature extraction) and adapters without 9 storage bindings: the separate kernels, same values.
    if (!training || gpu().limits.maxStorageBuffersPerShaderStage < RESIDUAL_BINDINGS)
      return reluOp(add(batchNorm(x, state, weight, bias, training), residual as Tensor<D>));
  }
  const g = geometry(x.size / channels, channels);
  const affine = { has_weight: weight !== null, has_bias: bias !== null };

  // Per-channel [mean | invstd | scale | bias], saved for the backward pass.
  const stats = Tensor.empty([4 * channels], 'f32');
  const out = Tensor.empty(x.shape, x.dtype);
  if (training) {
    const partial = Tensor.empty([g.nblocks * 2 * channels], 'f32');
    dispatchKernel(batchnorm.stats_partial, {
      params: shapeParams(g),
      bindings: { x: x.buffer, partial: partial.buffer },
      defines: tiles(g),
      precision: x.dtype,
      workgroups: [Math.ceil(channels / g.ct), g.nblocks],
    });
    const params = { ...shapeParams(g), eps: state.eps, momentum: state.momentum, ...affine };
    const bindings = {
      x: x.buffer,
      partial: partial.buffer,
      weight: (weight ?? partial).buffer,
      bias: (bias ?? partial).buffer,
      stats: stats.buffer,
      running_mean: state.runningMean.buffer,
      running_var: state.runningVar.buffer,
      out: out.buffer,
    };
    const launch = { defines: tiles(g), precision: x.dtype, workgroups: foldingGrid(g) };
    if (residual)
      dispatchKernel(batchnorm.stats_apply_add_relu, {
        params,
        bindings: { ...bindings, res: residual.buffer },
        ...launch,
      });
    else dispatchKernel(batchnorm.stats_apply, { params: { ...params, relu }, bindings, ...launch });
    partial.dispose();
  } else {
    dispatchKernel(batchnorm.stats_eval, {
      params: { channels, eps: state.eps, ...affine },
      bindings: {
        running_mean: state.runningMean.buffer,
        running_var: state.runningVar.buffer,
        weight: (weight ?? state.runningMean).buffer,
        bias: (bias ?? state.runningMean).buffer,
        stats: stats.buffer,
      },
      defines: tiles(g),
      workgroups: [Math.ceil(channels / 64)],
    });
    dispatchKernel(batchnorm.apply, {
      params: { rows: g.rows, channels, relu },
      bindings: { x: x.buffer, stats: stats.buffer, out: out.buffer },
      defines: tiles(g),
      precision: x.dtype,
      workgroups: tileGrid(g),
    });
  }

  const inputs: Tensor[] = [x];
  if (residual) inputs.push(residual);
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  record(out, residual ? 'batchNormAddRelu' : 'batchNorm', inputs, (gradOut) => {
    const grads = batchNormBackward(gradOut, x, stats, g, training, relu ? out : null, {
      x: x.requiresGrad,
      residual: residual?.requiresGrad ?? false,
      weight: weight?.requiresGrad ?? false,
      bias: bias?.requiresGrad ?? false,
    });
    stats.dispose(); // a node runs backward once
    const result: Array<Tensor<'f32'> | null> = [grads.dx];
    if (residual) result.push(grads.dresidual);
    if (weight) result.push(grads.dweight);
    if (bias) result.push(grads.dbias);
    return result;
  });
  if (!out.node) stats.dispose();
  return out;
}

interface BatchNormGrads {
  dx: Tensor<'f32'> | null;
  /** The residual's gradient (the fused residual op): dy masked by the ReLU. */
  dresidual: Tensor<'f32'> | null;
  dweight: Tensor<'f32'> | null;
  dbias: Tensor<'f32'> | null;
}

function batchNormBackward(
  dy: Tensor<'f32'>,
  x: Tensor<FloatDType>,
  stats: Tensor<'f32'>,
  g: Geometry,
  training: boolean,
  reluOut: Tensor<FloatDType> | null,
  need: { x: boolean; residual: boolean; weight: boolean; bias: boolean },
): BatchNormGrads {
  const relu = reluOut !== null;
  const maskBuffer = (reluOut ?? dy).buffer; // a placeholder binding without a fused ReLU
  const result: BatchNormGrads = { dx: null, dresidual: null, dweight: null, dbias: null };
  let sumDy: Tensor<'f32'> | null = null;
  let sumDyXhat: Tensor<'f32'> | null = null;
  if (need.weight || need.bias || (need.x && training)) {
    const partial = Tensor.empty([g.nblocks * 2 * g.channels], 'f32');
    sumDy = Tensor.empty([g.channels], 'f32');
    sumDyXhat = Tensor.empty([g.channels], 'f32');
    dispatchKernel(batchnorm.grad_partial, {
      params: { ...shapeParams(g), relu },
      bindings: { dy: dy.buffer, x: x.buffer, stats: stats.buffer, partial: partial.buffer, y: maskBuffer },
      defines: tiles(g),
      precision: x.dtype,
      workgroups: [Math.ceil(g.channels / g.ct), g.nblocks],
    });
    if (need.x && training) {
      // The sums' second pass runs inside dx_train, which also writes them (d bias, d weight).
      const dx = Tensor.empty(x.shape, 'f32'); // gradients are f32 whatever x's dtype
      const params = { rows: g.rows, channels: g.channels, nblocks: g.nblocks };
      const bindings = {
        dy: dy.buffer,
        x: x.buffer,
        stats: stats.buffer,
        partial: partial.buffer,
        dy_sum: sumDy.buffer,
        dy_xhat_sum: sumDyXhat.buffer,
        dx: dx.buffer,
        y: maskBuffer,
      };
      const launch = { defines: tiles(g), precision: x.dtype, workgroups: foldingGrid(g) };
      if (need.residual) {
        // The residual's gradient, dy masked by the ReLU, is written by the same pass.
        result.dresidual = Tensor.empty(x.shape, 'f32');
        const res = { ...bindings, dres: result.dresidual.buffer };
        dispatchKernel(batchnorm.dx_train_add_relu, { params, bindings: res, ...launch });
      } else dispatchKernel(batchnorm.dx_train, { params: { ...params, relu }, bindings, ...launch });
      result.dx = dx;
    } else {
      dispatchKernel(batchnorm.grad_finalize, {
        params: shapeParams(g),
        bindings: {
          partial: partial.buffer,
          stats: stats.buffer,
          dy_sum: sumDy.buffer,
          dy_xhat_sum: sumDyXhat.buffer,
        },
        defines: tiles(g),
        workgroups: [Math.ceil(g.channels / 64)],
      });
    }
    partial.dispose();
  }
  if (need.x && !training) {
    const dx = Tensor.empty(x.shape, 'f32');
    dispatchKernel(batchnorm.dx_eval, {
      params: { rows: g.rows, channels: g.channels, relu },
      bindings: { dy: dy.buffer, stats: stats.buffer, dx: dx.buffer, y: maskBuffer },
      defines: tiles(g),
      precision: x.dtype,
      workgroups: tileGrid(g),
    });
    result.dx = dx;
  }
  if (need.residual && !result.dresidual) result.dresidual = reluBackward(dy, reluOut!);
  if (need.bias) result.dbias = sumDy;
  else sumDy?.dispose();
  if (need.weight) result.dweight = sumDyXhat;
  else sumDyXhat?.dispose();
  return result;
}
