/** Entry points of shaders/sgd.wgsl: the fused SGD update (PyTorch's rule), one thread per parameter element. */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32 } from './common.ts';

export const sgd = declareKernels('sgd', {
  /** skip[0] != 0 (both entries): leave param and buf as they are (a loss-scaled step whose gradients overflowed) */
  sgd_plain: {
    params: { n: 'u32', lr: 'f32', wd: 'f32' },
    bindings: { param: writeF32, grad: readF32, skip: readU32 },
  },
  /** first: the parameter's first step (the momentum buffer is initialised to g') */
  sgd_momentum: {
    params: { n: 'u32', lr: 'f32', momentum: 'f32', wd: 'f32', nesterov: 'bool', first: 'bool' },
    bindings: { param: writeF32, grad: readF32, buf: writeF32, skip: readU32 },
  },
});
