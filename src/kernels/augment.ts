/**
 * Entry points of shaders/augment.wgsl: GPU data augmentation over images packed 4 bytes per u32 in
 * shards of per_shard whole images; a launch covers one shard (shard_id) and skips samples whose image
 * lies in another. sp holds 24 floats per sample: sy oy ylo yhi | sx ox xlo xhi | flip rotate cos sin |
 * brightness contrast saturation hue | op0 op1 op2 op3 | gray nops _ _ (src/data/augment.ts encodeParams).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32 } from './common.ts';

const geometry = {
  batch: 'u32',
  channels: 'u32',
  src_w: 'u32',
  out_h: 'u32',
  out_w: 'u32',
  per_shard: 'u32',
  image_bytes: 'u32',
  n_images: 'u32',
  shard_id: 'u32',
} as const;
const inputs = { shard: readU32, indices: readU32, sp: readF32 } as const;

export const augment = declareKernels('augment', {
  /** means[b] = the mean grayscale of sample b right before its contrast op (one workgroup per sample) */
  contrast_mean: { params: geometry, bindings: { ...inputs, means: writeF32 } },
  /**
   * One output pixel (all channels) per thread, NHWC; need_mean: the contrast means were computed (else
   * `means` is a placeholder); nan_bits: the NaN written for an index outside the data set; then
   * (x - mean) · istd per channel.
   */
  augment: {
    params: {
      ...geometry,
      need_mean: 'bool',
      nan_bits: 'u32',
      mean0: 'f32',
      mean1: 'f32',
      mean2: 'f32',
      istd0: 'f32',
      istd1: 'f32',
      istd2: 'f32',
    },
    bindings: { ...inputs, means: readF32, out: writeF32 },
  },
});
