/**
 * odc-webgpu: the engine. Device set-up, tensors and their lifetime (tidy/keep), autograd, the ops (each a
 * WGSL kernel with a WGSL backward), nn layers, the backbones and ODC model, the optimiser, seeded RNG,
 * weights in safetensors (PyTorch names and layouts, both ways) and the clustering metrics.
 *
 * A user's script imports from here ('odc-webgpu'), 'odc-webgpu/odc', 'odc-webgpu/data' and
 * 'odc-webgpu/testing'; every other module is internal and may move.
 */

// device
export { initGpu, closeGpu, gpu, grid, Gpu, GpuDeviceLostError, GpuOutOfMemoryError } from './gpu/device.ts';
export type { GpuFeatures, GpuStats, KernelTime } from './gpu/device.ts';

// tensors, lifetime, autograd
export { Tensor, sizeOf, shapesEqual, fmtShape } from './tensor/tensor.ts';
export type { DType, Shape, TypedArrayFor } from './tensor/tensor.ts';
export { tidy, keep } from './tensor/scope.ts';
export { backward, noGrad, isGradEnabled } from './tensor/autograd.ts';

// ops
export {
  zeros,
  fill,
  clone,
  affine,
  scale,
  axpby,
  add,
  sub,
  mul,
  relu,
  assign,
  addInPlace,
} from './ops/elementwise.ts';
export { matmul, linear } from './ops/matmul.ts';
export type { MatmulOptions } from './ops/matmul.ts';
export { conv2d } from './ops/conv.ts';
export type { Conv2dOptions } from './ops/conv.ts';
export { batchNorm } from './ops/batchnorm.ts';
export type { BatchNormState } from './ops/batchnorm.ts';
export { dropout } from './ops/dropout.ts';
export { maxPool2d, avgPool2d, globalAvgPool } from './ops/pool.ts';
export type { PoolOptions } from './ops/pool.ts';
export { sum, mean, sumAxis0 } from './ops/reduce.ts';
export { normalizeRows, argmaxRows, gatherRows, scatterRows, countEqual } from './ops/rows.ts';
export type { NormEpsilon, NormalizeRowsOptions } from './ops/rows.ts';
export { reshape, flatten } from './ops/shape.ts';
export { weightedCrossEntropy } from './ops/loss.ts';
export type { CrossEntropyOptions } from './ops/loss.ts';

// layers and models
export { Module } from './nn/module.ts';
export { Conv2d, BatchNorm, Linear, Dropout, ReLU, MaxPool2d, GlobalAvgPool, Sequential } from './nn/layers.ts';
export { normalInit, kaimingNormal, constantInit } from './nn/init.ts';
export { Backbone, ConvNetS, ResNet, createBackbone, minInputSize } from './models/backbones.ts';
export type { BackboneName, Stem } from './models/backbones.ts';
export { OdcModel, Neck } from './models/odc-model.ts';
export type { OdcModelConfig } from './models/odc-model.ts';

// optimisation
export { SGD } from './optim/sgd.ts';
export type { ParamGroup, SgdDefaults } from './optim/sgd.ts';
export { stepLr } from './optim/schedule.ts';
export { Rng } from './util/rng.ts';

// weights and files
export {
  readSafetensors,
  writeSafetensors,
  encodeSafetensors,
  decodeSafetensors,
  toOIHW,
  fromOIHW,
  SafetensorsError,
} from './io/safetensors.ts';
export type { SafeTensor, SafetensorsFile, ReadTensor } from './io/safetensors.ts';
export { loadWeights, saveWeights, backboneStateDict, exportMetadata, torchvisionEdits } from './io/weights.ts';
export type { LoadWeightsReport } from './io/weights.ts';

// metrics
export { nmi } from './metrics/nmi.ts';
export { ari, clusteringAccuracy, accuracy, purity, confusionMatrix } from './metrics/metrics.ts';
