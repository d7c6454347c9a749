/**
 * The layers ODC's models are built from. Weight layouts follow docs/CONVENTIONS.md (NHWC activations,
 * conv weights [KH, KW, Cin, Cout], linear weights [out, in]); parameter names follow PyTorch.
 */
import { Module } from './module.ts';
import { constantInit, kaimingNormal, normalInit } from './init.ts';
import { gpu } from '../gpu/device.ts';
import { drawForTape } from '../gpu/tape.ts';
import { conv2d } from '../ops/conv.ts';
import { linear } from '../ops/matmul.ts';
import { batchNorm, type BatchNormState } from '../ops/batchnorm.ts';
import { dropout } from '../ops/dropout.ts';
import { globalAvgPool, maxPool2d } from '../ops/pool.ts';
import { relu } from '../ops/elementwise.ts';
import { activationDType } from '../ops/precision.ts';
import type { FloatDType, Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';

/**
 * Conv2d without bias (every conv in these models is followed by BN), Kaiming-normal fan_in init. Its output
 * is an activation of the working precision's dtype (f16 under `--precision f16`).
 */
export class Conv2d extends Module {
  readonly weight: Tensor<'f32'>;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernel: number,
    rng: Rng,
    readonly stride = 1,
    readonly padding = 0,
  ) {
    super();
    this.weight = this.addParameter(
      'weight',
      kaimingNormal([kernel, kernel, inChannels, outChannels], inChannels * kernel * kernel, rng),
    );
  }

  forward(x: Tensor<FloatDType>): Tensor<FloatDType> {
    return conv2d(x, this.weight, { stride: this.stride, padding: this.padding, dtype: activationDType() });
  }
}

export interface BatchNormOptions {
  momentum?: number;
  eps?: number;
  affine?: boolean;
}

/** BatchNorm over the last (channel) axis: BatchNorm1d on [B, C], BatchNorm2d on NHWC. */
export class BatchNorm extends Module {
  readonly weight: Tensor<'f32'> | null;
  readonly bias: Tensor<'f32'> | null;
  private readonly state: BatchNormState;

  constructor(
    readonly channels: number,
    opts: BatchNormOptions = {},
  ) {
    super();
    const affine = opts.affine ?? true;
    this.weight = affine ? this.addParameter('weight', constantInit([channels], 1)) : null;
    this.bias = affine ? this.addParameter('bias', constantInit([channels], 0)) : null;
    this.state = {
      runningMean: this.addBuffer('running_mean', constantInit([channels], 0)),
      runningVar: this.addBuffer('running_var', constantInit([channels], 1)),
      momentum: opts.momentum ?? 0.1,
      eps: opts.eps ?? 1e-5,
    };
  }

  /** The output has x's dtype (f32, or f16 for an f16 activation). */
  forward<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
    return batchNorm(x, this.state, this.weight, this.bias, this.training);
  }

  /** relu(forward(x)) in the BN's own kernels (no separate ReLU pass forward or backward). */
  forwardRelu<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
    return batchNorm(x, this.state, this.weight, this.bias, this.training, { relu: true });
  }

  /** relu(forward(x) + residual): a residual block's end, the add and ReLU in the BN's own kernels when training. */
  forwardAddRelu<D extends FloatDType>(x: Tensor<D>, residual: Tensor<D>): Tensor<D> {
    return batchNorm(x, this.state, this.weight, this.bias, this.training, { relu: true, residual });
  }
}

export interface LinearOptions {
  bias?: boolean;
  /** 'kaiming': Kaiming-normal fan_in (ODC neck); a number: Normal(0, std) (ODC head). Biases start at 0. */
  init?: 'kaiming' | number;
}

export class Linear extends Module {
  readonly weight: Tensor<'f32'>;
  readonly bias: Tensor<'f32'> | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    private readonly rng: Rng,
    private readonly opts: LinearOptions = {},
  ) {
    super();
    this.weight = this.addParameter('weight', this.initialWeight());
    this.bias = opts.bias === false ? null : this.addParameter('bias', constantInit([outFeatures], 0));
  }

  private initialWeight(): Tensor<'f32'> {
    const init = this.opts.init ?? 'kaiming';
    const shape = [this.outFeatures, this.inFeatures];
    return init === 'kaiming' ? kaimingNormal(shape, this.inFeatures, this.rng) : normalInit(shape, init, this.rng);
  }

  /** Draws fresh initial values into the existing parameters (ODC re-initialises the head once). */
  reset(): void {
    const fresh = this.initialWeight();
    gpu().copy(fresh.buffer, 0, this.weight.buffer, 0, fresh.size * 4);
    fresh.dispose();
    if (this.bias) {
      const zero = constantInit(this.bias.shape, 0);
      gpu().copy(zero.buffer, 0, this.bias.buffer, 0, zero.size * 4);
      zero.dispose();
    }
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return linear(x, this.weight, this.bias);
  }
}

/** Inverted dropout; each training forward draws a fresh mask seed from the model's Rng. */
export class Dropout extends Module {
  constructor(
    readonly p: number,
    private readonly rng: Rng,
  ) {
    super();
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    // the seed is drawn through the tape, so that a replayed step draws its own (src/gpu/tape.ts)
    return dropout(x, this.p, this.training ? drawForTape(() => this.rng.nextU32()) : 0, this.training);
  }
}

export class ReLU extends Module {
  forward<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
    return relu(x);
  }
}

export class MaxPool2d extends Module {
  constructor(
    readonly kernel: number,
    readonly stride = kernel,
    readonly padding = 0,
  ) {
    super();
  }

  forward<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
    return maxPool2d(x, { kernel: this.kernel, stride: this.stride, padding: this.padding });
  }
}

export class GlobalAvgPool extends Module {
  forward(x: Tensor<FloatDType>): Tensor<'f32'> {
    return globalAvgPool(x);
  }
}

/**
 * Runs `layers` in order on x. A BatchNorm directly followed by a ReLU runs as one fused kernel.
 */
export function runLayers(layers: readonly Module[], x: Tensor<FloatDType>): Tensor<FloatDType> {
  let h = x;
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i];
    if (layer instanceof BatchNorm && layers[i + 1] instanceof ReLU) {
      h = layer.forwardRelu(h);
      i++;
    } else {
      h = layer.forward(h);
    }
  }
  return h;
}

/**
 * Runs its children in order (`runLayers`, so BatchNorm + ReLU pairs are fused; the ReLU keeps its
 * index); children are named "0", "1", ... like torch.nn.Sequential.
 */
export class Sequential extends Module {
  private readonly layers: Module[];

  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((layer, i) => this.addModule(String(i), layer));
  }

  forward(x: Tensor<FloatDType>): Tensor<FloatDType> {
    return runLayers(this.layers, x);
  }
}
