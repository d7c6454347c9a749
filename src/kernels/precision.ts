/** Entry points of shaders/precision.wgsl: f32 <-> working-precision copies (`--precision f16`). */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

export const precision = declareKernels('precision', {
  /** dst = src rounded to the working precision */
  to_float: { params: { n: 'u32' }, bindings: { src: readF32, dst: writeFloat } },
  /** dst = src widened to f32 (exact) */
  from_float: { params: { n: 'u32' }, bindings: { src: readFloat, dst: writeF32 } },
  /** dst = src zero-padded from [rows, cols] to [rows_out, cols_out] (tensor-core GEMM operands) */
  pad_float: { params: { rows: 'u32', cols: 'u32', rows_out: 'u32', cols_out: 'u32' }, bindings: { src: readFloat, dst: writeFloat } },
  /** dst [rows, cols] = the leading columns of src [rows, cols_in] (a padded GEMM result) */
  crop_f32: { params: { rows: 'u32', cols: 'u32', cols_in: 'u32' }, bindings: { src: readF32, dst: writeF32 } },
});
