/** Entry points of shaders/elementwise.wgsl: one thread per element over flat f32 arrays (1-D launch on grid()). */
import { declareKernels } from '../gpu/kernel.ts';

const f32Read = { access: 'read', type: 'f32' } as const;
const f32Out = { access: 'read_write', type: 'f32' } as const;

export const elementwise = declareKernels('elementwise', {
  /** out[i] = value */
  fill: { params: { n: 'u32', value: 'f32' }, bindings: { out: f32Out } },
  /** out = alpha·a + beta (copy, scale, shift, negate) */
  affine: { params: { n: 'u32', alpha: 'f32', beta: 'f32' }, bindings: { a: f32Read, out: f32Out } },
  relu: { params: { n: 'u32' }, bindings: { a: f32Read, out: f32Out } },
  /** out = alpha·a + beta·b (add, sub, axpby) */
  axpby: { params: { n: 'u32', alpha: 'f32', beta: 'f32' }, bindings: { a: f32Read, b: f32Read, out: f32Out } },
  mul: { params: { n: 'u32' }, bindings: { a: f32Read, b: f32Read, out: f32Out } },
  /** out = grad where output > 0, else 0 (output: the ReLU's output, or its input: same sign pattern) */
  relu_backward: { params: { n: 'u32' }, bindings: { grad: f32Read, output: f32Read, out: f32Out } },
  /** acc += alpha·b, in place */
  accumulate: { params: { n: 'u32', alpha: 'f32' }, bindings: { acc: f32Out, b: f32Read } },
});
