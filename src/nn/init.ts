/**
 * Parameter initialisers (values drawn on the host from a seeded Rng, then uploaded once).
 * Kaiming-normal fan_in with ReLU gain is PyTorch's `kaiming_normal_(mode='fan_in', nonlinearity='relu')`.
 */
import { Tensor, sizeOf, type Shape } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';

/** Normal(0, std) values. */
export function normalInit(shape: Shape, std: number, rng: Rng): Tensor<'f32'> {
  const data = new Float32Array(sizeOf(shape));
  for (let i = 0; i < data.length; i++) data[i] = rng.normal() * std;
  return Tensor.from(data, shape);
}

/** Kaiming-normal, mode fan_in, ReLU gain: std = sqrt(2 / fanIn). */
export function kaimingNormal(shape: Shape, fanIn: number, rng: Rng): Tensor<'f32'> {
  return normalInit(shape, Math.sqrt(2 / fanIn), rng);
}

/** A tensor of one constant value (zeros for biases, ones for BN weights). */
export function constantInit(shape: Shape, value: number): Tensor<'f32'> {
  return Tensor.from(new Float32Array(sizeOf(shape)).fill(value), shape);
}
