/**
 * Batch normalisation over the last (channel) axis: BatchNorm1d on [B, C], BatchNorm2d on NHWC
 * [N, H, W, C]. One WGSL family (shaders/batchnorm.wgsl).
 *
 * Training: statistics come from a deterministic two-pass reduction (partial (mean, M2) per block of rows
 * and tile of channels, then a per-channel finalize that also updates the running stats in place), then one
 * elementwise apply. The backward is the full batch-norm gradient: the same two-pass reduction gives
 * Σdy and Σdy·x̂ per channel (which are also d bias and d weight), then one elementwise pass gives dx.
 * Eval: statistics are the running stats; dx is dy times the per-channel scale.
 * `relu: true` fuses a ReLU after the normalisation (conv-BN-ReLU blocks): the apply pass clamps, and the
 * backward passes mask dy by the saved output, so no separate ReLU kernels or tensors are needed.
 */
import { gpu } from '../gpu/device.ts';
import { params } from '../gpu/params.ts';
import { Tensor, expectDType, expectShape, fmtShape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

const FAMILY = 'batchnorm';

export interface BatchNormOptions {
  /** Apply max(·, 0) to the output in the same kernel (the gradient is masked where the output is 0). */
  relu?: boolean;
}

/** Uniform flag of a fused ReLU (shaders/batchnorm.wgsl). */
const RELU_FLAG = 8;

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

function uniforms(g: Geometry, flags: number, eps: number, momentum: number) {
  return params().u32(g.rows, g.channels, g.nblocks, g.rowsPerBlock, flags).f32(eps, momentum);
}

/** Workgroups of the elementwise passes: channel tiles × row groups (each row group strides on). */
function tileGrid(g: Geometry): [number, number] {
  return [Math.ceil(g.channels / g.ct), Math.min(gpu().limits.maxComputeWorkgroupsPerDimension, Math.ceil(g.rows / g.rl))];
}

function reductionKernel(entry: string, g: Geometry) {
  return { family: FAMILY, entry, defines: { CT: g.ct, RL: g.rl } };
}

function checkNumber(value: number, ok: boolean, what: string): void {
  if (typeof value !== 'number' || !ok) throw new RangeError(`batchNorm: ${what}, got ${String(value)}`);
}

function validate(x: Tensor<'f32'>, state: BatchNormState, weight: Tensor<'f32'> | null, bias: Tensor<'f32'> | null, training: boolean): number {
  expectDType(x, 'f32', 'batchNorm x');
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
  checkNumber(state.momentum, Number.isFinite(state.momentum) && state.momentum >= 0 && state.momentum <= 1, 'momentum must be in [0, 1]');
  if (typeof training !== 'boolean') throw new TypeError(`batchNorm: training must be a boolean, got ${String(training)}`);
  // The running stats are written in place while weight and bias are read in the same dispatch.
  const buffers = [state.runningMean, state.runningVar, weight, bias].filter((t): t is Tensor<'f32'> => t !== null).map((t) => t.buffer);
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
 * and bias.
 */
export function batchNorm(
  x: Tensor<'f32'>,
  state: BatchNormState,
  weight: Tensor<'f32'> | null,
  bias: Tensor<'f32'> | null,
  training: boolean,
  options: BatchNormOptions = {},
): Tensor<'f32'> {
  const channels = validate(x, state, weight, bias, training);
  const reluFlag = options.relu ? RELU_FLAG : 0;
  const g = geometry(x.size / channels, channels);
  const affineFlags = (weight ? 1 : 0) | (bias ? 2 : 0);
  const dev = gpu();

  // Per-channel [mean | invstd | scale | bias], saved for the backward pass.
  const stats = Tensor.empty([4 * channels], 'f32');
  if (training) {
    const partial = Tensor.empty([g.nblocks * 2 * channels], 'f32');
    dev.dispatch({
      kernel: reductionKernel('stats_partial', g),
      params: uniforms(g, 0, 0, 0),
      bindings: [{ buffer: x.buffer, access: 'read' }, { buffer: partial.buffer, access: 'rw' }],
      workgroups: [Math.ceil(channels / g.ct), g.nblocks],
    });
    dev.dispatch({
      kernel: reductionKernel('stats_finalize', g),
      params: uniforms(g, affineFlags | 4, state.eps, state.momentum),
      bindings: [
        { buffer: partial.buffer, access: 'read' },
        { buffer: (weight ?? partial).buffer, access: 'read' },
        { buffer: (bias ?? partial).buffer, access: 'read' },
        { buffer: stats.buffer, access: 'rw' },
        { buffer: state.runningMean.buffer, access: 'rw' },
        { buffer: state.runningVar.buffer, access: 'rw' },
      ],
      workgroups: [Math.ceil(channels / 64)],
    });
    partial.dispose();
  } else {
    dev.dispatch({
      kernel: reductionKernel('stats_eval', g),
      params: uniforms(g, affineFlags, state.eps, 0),
      bindings: [
        { buffer: state.runningMean.buffer, access: 'read' },
        { buffer: state.runningVar.buffer, access: 'read' },
        { buffer: (weight ?? state.runningMean).buffer, access: 'read' },
        { buffer: (bias ?? state.runningMean).buffer, access: 'read' },
        { buffer: stats.buffer, access: 'rw' },
      ],
      workgroups: [Math.ceil(channels / 64)],
    });
  }

  const out = Tensor.empty(x.shape, 'f32');
  dev.dispatch({
    kernel: reductionKernel('apply', g),
    params: uniforms(g, reluFlag, 0, 0),
    bindings: [
      { buffer: x.buffer, access: 'read' },
      { buffer: stats.buffer, access: 'read' },
      { buffer: out.buffer, access: 'rw' },
    ],
    workgroups: tileGrid(g),
  });

  const inputs: Tensor[] = [x];
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  record(out, 'batchNorm', inputs, (gradOut) => {
    const grads = batchNormBackward(gradOut, x, stats, g, training, reluFlag ? out : null, {
      x: x.requiresGrad,
      weight: weight?.requiresGrad ?? false,
      bias: bias?.requiresGrad ?? false,
    });
    stats.dispose(); // a node runs backward once
    const result: Array<Tensor<'f32'> | null> = [grads.dx];
    if (weight) result.push(grads.dweight);
    if (bias) result.push(grads.dbias);
    return result;
  });
  if (!out.node) stats.dispose();
  return out;
}

interface BatchNormGrads {
  dx: Tensor<'f32'> | null;
  dweight: Tensor<'f32'> | null;
  dbias: Tensor<'f32'> | null;
}

function batchNormBackward(
  dy: Tensor<'f32'>,
  x: Tensor<'f32'>,
  stats: Tensor<'f32'>,
  g: Geometry,
  training: boolean,
  reluOut: Tensor<'f32'> | null,
  need: { x: boolean; weight: boolean; bias: boolean },
): BatchNormGrads {
  const dev = gpu();
  const flags = reluOut ? RELU_FLAG : 0;
  const maskBuffer = (reluOut ?? dy).buffer; // a placeholder binding without a fused ReLU
  const result: BatchNormGrads = { dx: null, dweight: null, dbias: null };
  let sumDy: Tensor<'f32'> | null = null;
  let sumDyXhat: Tensor<'f32'> | null = null;
  if (need.weight || need.bias || (need.x && training)) {
    const partial = Tensor.empty([g.nblocks * 2 * g.channels], 'f32');
    sumDy = Tensor.empty([g.channels], 'f32');
    sumDyXhat = Tensor.empty([g.channels], 'f32');
    dev.dispatch({
      kernel: reductionKernel('grad_partial', g),
      params: uniforms(g, flags, 0, 0),
      bindings: [
        { buffer: dy.buffer, access: 'read' },
        { buffer: x.buffer, access: 'read' },
        { buffer: stats.buffer, access: 'read' },
        { buffer: partial.buffer, access: 'rw' },
        { buffer: maskBuffer, access: 'read' },
      ],
      workgroups: [Math.ceil(g.channels / g.ct), g.nblocks],
    });
    dev.dispatch({
      kernel: reductionKernel('grad_finalize', g),
      params: uniforms(g, 0, 0, 0),
      bindings: [
        { buffer: partial.buffer, access: 'read' },
        { buffer: stats.buffer, access: 'read' },
        { buffer: sumDy.buffer, access: 'rw' },
        { buffer: sumDyXhat.buffer, access: 'rw' },
      ],
      workgroups: [Math.ceil(g.channels / 64)],
    });
    partial.dispose();
  }
  if (need.x) {
    const dx = Tensor.empty(x.shape, 'f32');
    if (training) {
      dev.dispatch({
        kernel: reductionKernel('dx_train', g),
        params: uniforms(g, flags, 0, 0),
        bindings: [
          { buffer: dy.buffer, access: 'read' },
          { buffer: x.buffer, access: 'read' },
          { buffer: stats.buffer, access: 'read' },
          { buffer: sumDy!.buffer, access: 'read' },
          { buffer: sumDyXhat!.buffer, access: 'read' },
          { buffer: dx.buffer, access: 'rw' },
          { buffer: maskBuffer, access: 'read' },
        ],
        workgroups: tileGrid(g),
      });
    } else {
      dev.dispatch({
        kernel: reductionKernel('dx_eval', g),
        params: uniforms(g, flags, 0, 0),
        bindings: [
          { buffer: dy.buffer, access: 'read' },
          { buffer: stats.buffer, access: 'read' },
          { buffer: dx.buffer, access: 'rw' },
          { buffer: maskBuffer, access: 'read' },
        ],
        workgroups: tileGrid(g),
      });
    }
    result.dx = dx;
  }
  if (need.bias) result.dbias = sumDy;
  else sumDy?.dispose();
  if (need.weight) result.dweight = sumDyXhat;
  else sumDyXhat?.dispose();
  return result;
}
