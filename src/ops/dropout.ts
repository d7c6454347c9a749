/**
 * Inverted dropout: keep each element with probability 1 - p and scale it by 1 / (1 - p). The mask is a
 * counter-based hash of (seed, element index) computed in WGSL (shaders/dropout.wgsl), so it is
 * reproducible, needs no stored RNG state or mask tensor, and the backward pass reapplies it to the
 * gradient. src/ref/dropout.ts computes the same mask on the CPU.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { dropout as kernels } from '../kernels/dropout.ts';
import { Tensor, expectDType } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

/** The u32 threshold below which an element is dropped: floor(p·2^32), clamped to the u32 range. */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.floor(p * 2 ** 32), 0xffffffff);
}

function applyMask(x: Tensor<'f32'>, p: number, seed: number): Tensor<'f32'> {
  const out = Tensor.empty(x.shape, 'f32');
  // p = 1 drops everything (the hash can still equal the top threshold, so the scale is 0 too).
  const scale = p === 1 ? 0 : 1 / (1 - p);
  dispatchKernel(kernels.dropout, {
    params: { n: x.size, seed, threshold: dropoutThreshold(p), scale },
    bindings: { src: x.buffer, dst: out.buffer },
    workgroups: grid(Math.ceil(x.size / 256)),
  });
  return out;
}

/**
 * Dropout with drop probability p in [0, 1] and an integer seed in [0, 2^32). In eval mode, or with
 * p = 0, returns a view of x recorded as the identity.
 */
export function dropout(x: Tensor<'f32'>, p: number, seed: number, training: boolean): Tensor<'f32'> {
  expectDType(x, 'f32', 'dropout');
  if (typeof p !== 'number' || !(p >= 0 && p <= 1))
    throw new RangeError(`dropout: p must be in [0, 1], got ${String(p)}`);
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`dropout: seed must be an integer in [0, 2^32), got ${String(seed)}`);
  }
  if (typeof training !== 'boolean')
    throw new TypeError(`dropout: training must be a boolean, got ${String(training)}`);
  if (!training || p === 0) return record(x.view(), 'dropout', [x], (g) => [g.view()]);
  const out = applyMask(x, p, seed);
  return record(out, 'dropout', [x], (g) => [applyMask(g, p, seed)]);
}
