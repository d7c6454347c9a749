/** Entry points of shaders/precision.wgsl: f32 <-> working-precision copies (`--precision f16`). */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

export const precision = declareKernels('precision', {
  /** dst = src rounded to the working precision */
  to_float: { params: { n: 'u32' }, bindings: { src: readF32, dst: writeFloat } },
  /** dst = src widened to f32 (exact) */
  from_float: { params: { n: 'u32' }, bindings: { src: readFloat, dst: writeF32 } },
});
