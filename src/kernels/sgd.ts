/** Entry points of shaders/sgd.wgsl: the fused SGD update (PyTorch's rule), one thread per parameter element. */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, writeF32 } from './common.ts';

export const sgd = declareKernels('sgd', {
  sgd_plain: { params: { n: 'u32', lr: 'f32', wd: 'f32' }, bindings: { param: writeF32, grad: readF32 } },
  /** first: the parameter's first step (the momentum buffer is initialised to g') */
  sgd_momentum: {
    params: { n: 'u32', lr: 'f32', momentum: 'f32', wd: 'f32', nesterov: 'bool', first: 'bool' },
    bindings: { param: writeF32, grad: readF32, buf: writeF32 },
  },
});
