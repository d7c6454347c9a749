/**
 * Entry points of shaders/gemm.wgsl: the one tiled GEMM body (C[M, N] = A[M, K]·B[K, N]) behind matmul,
 * linear and the three conv passes, plus its small deterministic reductions. The GEMM's template constants
 * choose the operand mapping (MODE), transposes, bias and the tile shape of the variant
 * (src/ops/matmul.ts's GemmVariant); its parameters are the GEMM and conv geometry (kchunk: K per split;
 * tilesN: column tiles; ph..KWp: the stride phase of a conv dgrad GEMM).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, writeF32, writeFloat } from './common.ts';

/** How the GEMM's operands map onto tensors: a matrix product, or a conv pass in implicit-GEMM form. */
export const GEMM_MODES = ['matmul', 'conv_forward', 'conv_dgrad', 'conv_wgrad'] as const;

const geometry = {
  M: 'u32',
  N: 'u32',
  K: 'u32',
  kchunk: 'u32',
  tilesN: 'u32',
  splits: 'u32',
  H: 'u32',
  W: 'u32',
  Cin: 'u32',
  OH: 'u32',
  OW: 'u32',
  Cout: 'u32',
  KW: 'u32',
  stride: 'u32',
  pad: 'u32',
  ph: 'u32',
  pw: 'u32',
  t0h: 'u32',
  t0w: 'u32',
  Ht: 'u32',
  Wt: 'u32',
  KWp: 'u32',
  /** TRANS_B in gemm_regs: B's k-runs are 4-aligned (K, or dgrad's Cout, a multiple of 4), so 4 k load as one vec4 */
  bt_vec4: 'bool',
} as const;
/**
 * A and B in the working precision (f16 under `--precision f16`); accumulation and bias are f32; C holds
 * C_T: f16 for an f16 activation output (rounded on store), else f32 (gradients, split-K partials).
 */
const operands = {
  A: { access: 'read', type: 'float' },
  B: { access: 'read', type: 'vec4<float>' },
  bias: readF32,
  C: { access: 'read_write', type: 'C_T' },
} as const;
const template = {
  MODE: GEMM_MODES,
  TRANS_A: 'bool',
  TRANS_B: 'bool',
  HAS_BIAS: 'bool',
  /** C := A·B + C: add into what C holds (unsplit launches only; a split GEMM's sum_splits adds instead) */
  ACCUMULATE: 'bool',
  /** B rows are vec4-aligned (N % 4 == 0, B index k·N + n): load 4 columns at once */
  VEC_B: 'bool',
  /** gemm_regs: an invocation's j-th vec4 of columns is at tn·4 + j·WGN·4 (else TN adjacent columns) */
  COLS_STRIDED: 'bool',
  TM: 'u32',
  TN: 'u32',
  WGM: 'u32',
  WGN: 'u32',
  TK: 'u32',
  /** gemm_tiled: A rows padded by one float and columns interleaved by vec4 (no workgroup-memory bank conflicts) */
  CONFLICT_FREE: 'bool',
  /** gemm_tiled: 2 = double-buffered K loop */
  NBUF: 'u32',
  /** gemm_tiled: rows of A shared through subgroup shuffles, for a fixed subgroup size SG_SIZE */
  SUBGROUP: 'bool',
  SG_SIZE: 'u32',
  /** the shuffle of lane_shuffle: `subgroupShuffle(v, lane)`, or `v` where subgroups are off (entryModule then adds `enable subgroups;`) */
  SG_SHUFFLE: 'wgsl',
  /** the element type of C */
  C_T: 'storage',
} as const;
const sample = {
  MODE: 'conv_dgrad',
  TRANS_A: false,
  TRANS_B: true,
  HAS_BIAS: true,
  ACCUMULATE: true,
  VEC_B: true,
  COLS_STRIDED: true,
  TM: 4,
  TN: 4,
  WGM: 8,
  WGN: 8,
  TK: 4,
  CONFLICT_FREE: true,
  NBUF: 2,
  SUBGROUP: false,
  SG_SIZE: 1,
  SG_SHUFFLE: 'v',
  C_T: 'f32',
};

export const gemm = declareKernels('gemm', {
  /** TM×TN outputs per invocation in registers, no workgroup memory (fastest on lavapipe) */
  gemm_regs: { params: geometry, bindings: operands, defines: template, sample },
  /** A/B tiles staged in workgroup memory (real GPUs) */
  gemm_tiled: { params: geometry, bindings: operands, defines: template, sample },
  /** out = Σ over splits of the split-K partials (+ bias) (+ out with ACCUMULATE), in split order */
  sum_splits: {
    params: { M: 'u32', N: 'u32', splits: 'u32' },
    /** out in the working precision: an f16 activation output of a split GEMM is rounded here */
    bindings: { parts: readF32, bias: readF32, out: writeFloat },
    defines: { HAS_BIAS: 'bool', ACCUMULATE: 'bool' },
    sample: { HAS_BIAS: true, ACCUMULATE: true },
  },
  /** in the working precision: it transposes a GEMM's B operand, which may be an f16 copy */
  transpose2d: { params: { rows: 'u32', cols: 'u32', batches: 'u32' }, bindings: { src: readFloat, dst: writeFloat } },
  column_sums: { params: { rows: 'u32', cols: 'u32' }, bindings: { src: readF32, dst: writeF32 } },
});
