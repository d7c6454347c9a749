/**
 * Entry points of shaders/elementwise.wgsl: one thread per element over flat f32 arrays (1-D launch on grid()).
 * relu and axpby, and relu_backward's saved output, follow the working precision (f16 activations).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

export const elementwise = declareKernels('elementwise', {
  /** out[i] = value */
  fill: { params: { n: 'u32', value: 'f32' }, bindings: { out: writeF32 } },
  /** out = alpha·a + beta (copy, scale, shift, negate) */
  affine: { params: { n: 'u32', alpha: 'f32', beta: 'f32' }, bindings: { a: readF32, out: writeF32 } },
  relu: { params: { n: 'u32' }, bindings: { a: readFloat, out: writeFloat } },
  /** out = alpha·a + beta·b (add, sub, axpby) */
  axpby: { params: { n: 'u32', alpha: 'f32', beta: 'f32' }, bindings: { a: readFloat, b: readFloat, out: writeFloat } },
  mul: { params: { n: 'u32' }, bindings: { a: readF32, b: readF32, out: writeF32 } },
  /** out = grad where output > 0, else 0 (output: the ReLU's output, or its input: same sign pattern) */
  relu_backward: { params: { n: 'u32' }, bindings: { grad: readF32, output: readFloat, out: writeF32 } },
  /** acc += alpha·b, in place */
  accumulate: { params: { n: 'u32', alpha: 'f32' }, bindings: { acc: writeF32, b: readF32 } },
});
