/** Entry points of shaders/precision.wgsl: f32 <-> working-precision copies (`--precision f16`). */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

export const precision = declareKernels('precision', {
  /** dst = src rounded to the working precision */
  to_float: { params: { n: 'u32' }, bindings: { src: readF32, dst: writeFloat } },
  /** dst = src widened to f32 (exact) */
  from_float: { params: { n: 'u32' }, bindings: { src: readFloat, dst: writeF32 } },
  /** dst = src zero-padded from [rows, cols] to [rows_out, cols_out] (tensor-core GEMM operands) */
  pad_float: {
    params: { rows: 'u32', cols: 'u32', rows_out: 'u32', cols_out: 'u32' },
    bindings: { src: readFloat, dst: writeFloat },
  },
  /** dst [N·OH·OW, KH·KW·Cin] = the im2col matrix of an NHWC input (the tensor-core conv forward's A) */
  im2col_float: {
    params: {
      M: 'u32',
      K: 'u32',
      H: 'u32',
      W: 'u32',
      Cin: 'u32',
      OH: 'u32',
      OW: 'u32',
      KW: 'u32',
      stride: 'u32',
      pad: 'u32',
    },
    bindings: { src: readFloat, dst: writeFloat },
  },
  /** dst [rows, cols] = the leading columns of src [rows, cols_in] (a padded GEMM result) */
  crop_f32: { params: { rows: 'u32', cols: 'u32', cols_in: 'u32' }, bindings: { src: readF32, dst: writeF32 } },
});
