/** Entry point of shaders/dropout.wgsl: inverted dropout with a counter-based mask (keep when hash(seed, i) >= threshold). */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, writeF32 } from './common.ts';

export const dropout = declareKernels('dropout', {
  dropout: {
    params: { n: 'u32', seed: 'u32', threshold: 'u32', scale: 'f32' },
    bindings: { src: readF32, dst: writeF32 },
  },
});
