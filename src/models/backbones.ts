/**
 * Backbones: convnet-s (28x28 digits), ResNet-18 (CIFAR or ImageNet stem) and ResNet-50 (the paper's
 * network: "pytorch" style, stride on the 3x3 conv of each first bottleneck). Each ends in a global
 * average pool, so `forward` returns [N, featureDim]. Parameter names match torchvision's ResNets.
 */
import { Module } from '../nn/module.ts';
import { BatchNorm, Conv2d, GlobalAvgPool, MaxPool2d, ReLU, Sequential, runLayers } from '../nn/layers.ts';
import { expectDType, type FloatDType, type Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';

export type BackboneName = 'convnet-s' | 'resnet18' | 'resnet50';
export type Stem = 'cifar' | 'imagenet';

/** Activations inside may be f16 (`--precision f16`); the pooled features are f32. */
export abstract class Backbone extends Module {
  abstract readonly featureDim: number;
  abstract override forward(x: Tensor<FloatDType>): Tensor<'f32'>;
}

/** Four conv3x3-BN-ReLU blocks (32/64/128/256 channels), max-pool 2 after the first three, global pool. */
export class ConvNetS extends Backbone {
  readonly featureDim = 256;
  private readonly body: Sequential;

  constructor(inChannels: number, rng: Rng) {
    super();
    const widths = [32, 64, 128, 256];
    const layers: Module[] = [];
    let c = inChannels;
    widths.forEach((w, i) => {
      layers.push(new Conv2d(c, w, 3, rng, 1, 1), new BatchNorm(w), new ReLU());
      if (i < 3) layers.push(new MaxPool2d(2));
      c = w;
    });
    layers.push(new GlobalAvgPool());
    this.body = this.addModule('features', new Sequential(...layers));
  }

  forward(x: Tensor<FloatDType>): Tensor<'f32'> {
    const features = this.body.forward(x); // ends in the global average pool, which writes f32
    expectDType(features, 'f32', 'ConvNetS features');
    return features as Tensor<'f32'>;
  }
}

class BasicBlock extends Module {
  static readonly expansion = 1;
  private readonly conv1: Conv2d;
  private readonly bn1: BatchNorm;
  private readonly conv2: Conv2d;
  private readonly bn2: BatchNorm;
  private readonly downsample: Sequential | null;

  constructor(inC: number, planes: number, stride: number, rng: Rng) {
    super();
    this.conv1 = this.addModule('conv1', new Conv2d(inC, planes, 3, rng, stride, 1));
    this.bn1 = this.addModule('bn1', new BatchNorm(planes));
    this.conv2 = this.addModule('conv2', new Conv2d(planes, planes, 3, rng, 1, 1));
    this.bn2 = this.addModule('bn2', new BatchNorm(planes));
    this.downsample =
      stride !== 1 || inC !== planes
        ? this.addModule(
            'downsample',
            new Sequential(new Conv2d(inC, planes, 1, rng, stride, 0), new BatchNorm(planes)),
          )
        : null;
  }

  forward(x: Tensor<FloatDType>): Tensor<FloatDType> {
    const h = this.conv2.forward(this.bn1.forwardRelu(this.conv1.forward(x)));
    return this.bn2.forwardAddRelu(h, this.downsample ? this.downsample.forward(x) : x);
  }
}

class Bottleneck extends Module {
  static readonly expansion = 4;
  private readonly conv1: Conv2d;
  private readonly bn1: BatchNorm;
  private readonly conv2: Conv2d;
  private readonly bn2: BatchNorm;
  private readonly conv3: Conv2d;
  private readonly bn3: BatchNorm;
  private readonly downsample: Sequential | null;

  constructor(inC: number, planes: number, stride: number, rng: Rng) {
    super();
    const outC = planes * Bottleneck.expansion;
    this.conv1 = this.addModule('conv1', new Conv2d(inC, planes, 1, rng));
    this.bn1 = this.addModule('bn1', new BatchNorm(planes));
    this.conv2 = this.addModule('conv2', new Conv2d(planes, planes, 3, rng, stride, 1));
    this.bn2 = this.addModule('bn2', new BatchNorm(planes));
    this.conv3 = this.addModule('conv3', new Conv2d(planes, outC, 1, rng));
    this.bn3 = this.addModule('bn3', new BatchNorm(outC));
    this.downsample =
      stride !== 1 || inC !== outC
        ? this.addModule('downsample', new Sequential(new Conv2d(inC, outC, 1, rng, stride, 0), new BatchNorm(outC)))
        : null;
  }

  forward(x: Tensor<FloatDType>): Tensor<FloatDType> {
    let h = this.bn1.forwardRelu(this.conv1.forward(x));
    h = this.bn2.forwardRelu(this.conv2.forward(h));
    h = this.conv3.forward(h);
    return this.bn3.forwardAddRelu(h, this.downsample ? this.downsample.forward(x) : x);
  }
}

/** ResNet with torchvision's names (conv1, bn1, layer1..layer4); CIFAR stem = 3x3 conv, no max-pool. */
export class ResNet extends Backbone {
  readonly featureDim: number;
  private readonly stem: Module[];
  private readonly stages: Sequential[] = [];
  private readonly pool = new GlobalAvgPool();

  constructor(depth: 18 | 50, inChannels: number, stem: Stem, rng: Rng) {
    super();
    const Block = depth === 18 ? BasicBlock : Bottleneck;
    const blocks = depth === 18 ? [2, 2, 2, 2] : [3, 4, 6, 3];
    const conv1 =
      stem === 'imagenet' ? new Conv2d(inChannels, 64, 7, rng, 2, 3) : new Conv2d(inChannels, 64, 3, rng, 1, 1);
    this.stem = [this.addModule('conv1', conv1), this.addModule('bn1', new BatchNorm(64)), new ReLU()];
    if (stem === 'imagenet') this.stem.push(new MaxPool2d(3, 2, 1));
    let inC = 64;
    blocks.forEach((count, stage) => {
      const planes = 64 * 2 ** stage;
      const layers: Module[] = [];
      for (let b = 0; b < count; b++) {
        layers.push(new Block(inC, planes, b === 0 && stage > 0 ? 2 : 1, rng));
        inC = planes * Block.expansion;
      }
      this.stages.push(this.addModule(`layer${stage + 1}`, new Sequential(...layers)));
    });
    this.featureDim = inC;
  }

  forward(x: Tensor<FloatDType>): Tensor<'f32'> {
    let h = runLayers(this.stem, x);
    for (const stage of this.stages) h = stage.forward(h);
    return this.pool.forward(h);
  }
}

/** One layer that shrinks the image: kernel, stride and padding of a conv or pool (output floor((h + 2p - k) / s) + 1). */
export interface Downsample {
  kernel: number;
  stride: number;
  padding: number;
}

/**
 * The layers of a backbone that change the spatial size, in order (3x3 convs with padding 1 and
 * stride 1 keep it and are left out). convnet-s: three 2x2 max-pools; ResNet: the stem (ImageNet: 7x7
 * conv stride 2 padding 3, then 3x3 max-pool stride 2 padding 1; CIFAR: none), then the stride-2 3x3
 * conv of the first block of layer2..layer4 (padding 1; the 1x1 stride-2 shortcut gives the same size).
 */
export function downsamplingLayers(name: BackboneName, stem: Stem): Downsample[] {
  const stages: Downsample[] = [1, 2, 3].map(() => ({ kernel: 3, stride: 2, padding: 1 }));
  switch (name) {
    case 'convnet-s':
      return [1, 2, 3].map(() => ({ kernel: 2, stride: 2, padding: 0 }));
    case 'resnet18':
    case 'resnet50':
      return stem === 'imagenet'
        ? [{ kernel: 7, stride: 2, padding: 3 }, { kernel: 3, stride: 2, padding: 1 }, ...stages]
        : stages;
  }
}

/** The side of the last feature map for an input side `size` (0 or less: some layer has no output). */
export function featureMapSide(size: number, layers: readonly Downsample[]): number {
  let h = size;
  for (const { kernel, stride, padding } of layers) {
    if (h + 2 * padding < kernel) return 0;
    h = Math.floor((h + 2 * padding - kernel) / stride) + 1;
  }
  return h;
}

/**
 * The smallest square input (pixels per side) a backbone accepts: every shrinking layer must leave at
 * least one pixel. convnet-s: 8 (8 -> 4 -> 2 -> 1); ResNet-18/50, either stem: 1 (every stride-2 layer is
 * padded, so a side h becomes ceil(h / 2) >= 1).
 */
export function minInputSize(name: BackboneName, stem: Stem): number {
  const layers = downsamplingLayers(name, stem);
  let size = 1;
  while (featureMapSide(size, layers) < 1) size++;
  return size;
}

export function createBackbone(name: BackboneName, inChannels: number, stem: Stem, rng: Rng): Backbone {
  switch (name) {
    case 'convnet-s':
      return new ConvNetS(inChannels, rng);
    case 'resnet18':
      return new ResNet(18, inChannels, stem, rng);
    case 'resnet50':
      return new ResNet(50, inChannels, stem, rng);
  }
}
