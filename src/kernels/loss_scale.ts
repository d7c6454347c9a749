/** Entry points of shaders/loss_scale.wgsl: dynamic loss scaling (`--precision f16`), PyTorch's GradScaler on the GPU. */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, writeF32, writeU32 } from './common.ts';

export const lossScale = declareKernels('loss_scale', {
  /** grad *= inverse[0] in place; state[0] = 1 when a gradient is inf or NaN */
  unscale_check: {
    params: { n: 'u32' },
    bindings: { grad: writeF32, inverse: readF32, state: { access: 'read_write', type: 'atomic<u32>' } },
  },
  /** halve the scale after an overflow, double it after growth_interval clean steps; clear the found-inf word */
  update_scale: {
    params: { growth_interval: 'u32' },
    bindings: { scale: writeF32, inverse: writeF32, state: writeU32 },
  },
});
