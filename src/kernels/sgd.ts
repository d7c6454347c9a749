/**
 * Entry points of shaders/sgd.wgsl: the multi-tensor SGD update (PyTorch's rule), one thread per parameter
 * element, several parameters of one group per dispatch. Slot s has its own param_s / grad_s / buf_s bindings,
 * its element count n_s, its first-step flag first_s (the momentum buffer starts as g') and its first workgroup
 * start_s (slot 0 starts at 0; an unused slot at 0xffffffff). `sgd_wide` (5 slots, 15 storage buffers) runs
 * where the adapter offers 16 storage buffers per stage, `sgd_pair` (2 slots, 6) within WebGPU's default 8; each
 * also binds `skip`: when skip[0] != 0 nothing changes (dynamic loss scaling found an inf/NaN gradient).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32 } from './common.ts';

const hyper = { lr: 'f32', momentum: 'f32', wd: 'f32', nesterov: 'bool', use_momentum: 'bool' } as const;

export const sgd = declareKernels('sgd', {
  sgd_pair: {
    params: { ...hyper, start_1: 'u32', n_0: 'u32', n_1: 'u32', first_0: 'bool', first_1: 'bool' },
    bindings: {
      param_0: writeF32,
      grad_0: readF32,
      buf_0: writeF32,
      param_1: writeF32,
      grad_1: readF32,
      buf_1: writeF32,
      skip: readU32,
    },
  },
  sgd_wide: {
    params: {
      ...hyper,
      start_1: 'u32',
      start_2: 'u32',
      start_3: 'u32',
      start_4: 'u32',
      n_0: 'u32',
      n_1: 'u32',
      n_2: 'u32',
      n_3: 'u32',
      n_4: 'u32',
      first_0: 'bool',
      first_1: 'bool',
      first_2: 'bool',
      first_3: 'bool',
      first_4: 'bool',
    },
    bindings: {
      param_0: writeF32,
      grad_0: readF32,
      buf_0: writeF32,
      param_1: writeF32,
      grad_1: readF32,
      buf_1: writeF32,
      param_2: writeF32,
      grad_2: readF32,
      buf_2: writeF32,
      param_3: writeF32,
      grad_3: readF32,
      buf_3: writeF32,
      param_4: writeF32,
      grad_4: readF32,
      buf_4: writeF32,
      skip: readU32,
    },
  },
});
