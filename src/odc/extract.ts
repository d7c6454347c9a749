/**
 * Feature extraction over a whole data set in evaluation mode (no augmentation, no dropout, BN with
 * running statistics), written batch by batch into one [N, D] GPU tensor with no readback.
 */
import { gpu } from '../gpu/device.ts';
import { noGrad } from '../tensor/autograd.ts';
import { tidy } from '../tensor/scope.ts';
import { Tensor, fmtShape } from '../tensor/tensor.ts';
import type { GpuAugmenter } from '../data/augment.ts';
import type { Module } from '../nn/module.ts';

/**
 * Runs `featuresOf` (e.g. backbone, or backbone + neck) on every image in index order and returns
 * [N, dim], or only images [rows.start, rows.start + rows.count) as [rows.count, dim] (one shard of the ODC
 * memory). The module tree `model` is put in eval mode for the pass and restored afterwards.
 */
export function extractFeatures(
  model: Module,
  featuresOf: (x: Tensor<'f32'>) => Tensor<'f32'>,
  augmenter: GpuAugmenter,
  dim: number,
  batchSize: number,
  rows: { start: number; count: number } = { start: 0, count: augmenter.n },
): Tensor<'f32'> {
  const first = rows.start;
  const n = rows.count;
  const out = Tensor.empty([n, dim], 'f32');
  const wasTraining = model.training;
  model.eval();
  try {
    for (let start = 0; start < n; start += batchSize) {
      const count = Math.min(batchSize, n - start);
      const idx = new Uint32Array(count);
      for (let i = 0; i < count; i++) idx[i] = first + start + i;
      tidy(() =>
        noGrad(() => {
          const f = featuresOf(augmenter.extract(idx));
          if (f.rank !== 2 || f.shape[1] !== dim || f.shape[0] !== count) {
            throw new RangeError(`extractFeatures: expected [${count}, ${dim}] features, got ${fmtShape(f.shape)}`);
          }
          gpu().copy(f.buffer, 0, out.buffer, start * dim * 4, count * dim * 4);
        }),
      );
    }
  } catch (err) {
    out.dispose();
    throw err;
  } finally {
    model.train(wasTraining);
  }
  return out;
}
