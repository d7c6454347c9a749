/**
 * The ODC network: backbone -> neck (NonLinearNeckV0: linear, non-affine BN with momentum 0.001, ReLU,
 * dropout 0.5, linear, ReLU) -> head (linear over K clusters, Normal(0, 0.01)). The neck output feeds the
 * head raw and the memory L2-normalised.
 */
import { Module } from '../nn/module.ts';
import { BatchNorm, Dropout, Linear } from '../nn/layers.ts';
import { relu } from '../ops/elementwise.ts';
import { createBackbone, type Backbone, type BackboneName, type Stem } from './backbones.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';

export interface OdcModelConfig {
  backbone: BackboneName;
  stem: Stem;
  inChannels: number;
  neckHidden: number;
  featureDim: number;
  numClusters: number;
  dropout: number;
  /** false: no neck, the head reads backbone features (the DeepCluster baseline). */
  withNeck: boolean;
}

export class Neck extends Module {
  private readonly fc0: Linear;
  private readonly bn0: BatchNorm;
  private readonly drop: Dropout;
  private readonly fc1: Linear;

  constructor(inFeatures: number, hidden: number, out: number, dropoutP: number, rng: Rng) {
    super();
    this.fc0 = this.addModule('fc0', new Linear(inFeatures, hidden, rng));
    this.bn0 = this.addModule('bn0', new BatchNorm(hidden, { affine: false, momentum: 0.001 }));
    this.drop = this.addModule('drop', new Dropout(dropoutP, rng)); // no parameters: absent from the state dict
    this.fc1 = this.addModule('fc1', new Linear(hidden, out, rng));
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    const h = this.drop.forward(this.bn0.forwardRelu(this.fc0.forward(x)));
    return relu(this.fc1.forward(h));
  }
}

export class OdcModel extends Module {
  readonly backbone: Backbone;
  readonly neck: Neck | null;
  readonly head: Linear;

  constructor(
    readonly config: OdcModelConfig,
    rng: Rng,
  ) {
    super();
    this.backbone = this.addModule('backbone', createBackbone(config.backbone, config.inChannels, config.stem, rng));
    this.neck = config.withNeck
      ? this.addModule(
          'neck',
          new Neck(this.backbone.featureDim, config.neckHidden, config.featureDim, config.dropout, rng),
        )
      : null;
    const headIn = this.neck ? config.featureDim : this.backbone.featureDim;
    this.head = this.addModule('head', new Linear(headIn, config.numClusters, rng, { init: 0.01 }));
  }

  /** Backbone + neck: the feature the memory stores (raw; the memory normalises). */
  features(x: Tensor<'f32'>): Tensor<'f32'> {
    const h = this.backbone.forward(x);
    return this.neck ? this.neck.forward(h) : h;
  }

  forward(x: Tensor<'f32'>): Tensor<'f32'> {
    return this.head.forward(this.features(x));
  }
}
