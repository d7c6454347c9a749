/**
 * Entry points of shaders/rows.wgsl: row ops over [rows, cols] matrices (L2 normalisation, argmax, gather and
 * scatter of rows by a u32 index, counting equal entries). count: rows of the indexed matrix, or elements
 * to compare (count_equal). Index entries outside [0, count) never address memory.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readU32, writeF32, writeU32 } from './common.ts';

/** The epsilon rule of the row normaliser (src/ops/rows.ts's NormEpsilon). */
export const EPSILON_RULES = ['add', 'clamp'] as const;
const normalize = { rows: 'u32', cols: 'u32', eps: 'f32', eps_rule: EPSILON_RULES } as const;
const scatter = { rowsrc: readF32, index: readU32, owner: readU32, rowdst: writeF32 } as const;

export const rows = declareKernels('rows', {
  /** y = x / divisor per row, divisor ‖x‖ + eps ('add') or max(‖x‖, eps) ('clamp'): 64 lanes per row, tree-summed */
  l2n_forward: { params: normalize, bindings: { x: readF32, y: writeF32 } },
  /** the same with one thread per row summing in order over the row */
  l2n_serial: { params: normalize, bindings: { x: readF32, y: writeF32 } },
  l2n_backward: {
    params: { rows: 'u32', cols: 'u32', eps: 'f32' },
    bindings: { x: readF32, gy: readF32, gx: writeF32 },
  },
  argmax_rows: { params: { rows: 'u32', cols: 'u32' }, bindings: { x: readF32, amax: writeU32 } },
  /** gathered [rows, cols] = x [count, cols] at index [rows] (zero rows for out-of-range indices) */
  gather_forward: {
    params: { rows: 'u32', cols: 'u32', count: 'u32' },
    bindings: { x: readF32, index: readU32, gathered: writeF32 },
  },
  mark_first: { params: { rows: 'u32', count: 'u32' }, bindings: { idx: readU32, flag: writeU32 } },
  mark_last: { params: { rows: 'u32', count: 'u32' }, bindings: { idx: readU32, flag: writeU32 } },
  /** rowdst [count, cols] (pre-zeroed) += rowsrc rows by index; owner: the first row of each index */
  gather_backward: { params: { rows: 'u32', cols: 'u32' }, bindings: scatter },
  scatter_rows: { params: { rows: 'u32', cols: 'u32' }, bindings: scatter },
  fill_u32: { params: { count: 'u32' }, bindings: { out: writeU32 } },
  /** win[idx[b]] = max over b of b + 1 (atomic): the last row wins */
  mark_winner: {
    params: { rows: 'u32', count: 'u32' },
    bindings: { idx: readU32, win: { access: 'read_write', type: 'atomic<u32>' } },
  },
  scatter_rows_win: {
    params: { rows: 'u32', cols: 'u32', count: 'u32' },
    bindings: { rowsrc: readF32, index: readU32, win: readU32, rowdst: writeF32 },
  },
  count_equal: { params: { count: 'u32' }, bindings: { ua: readU32, ub: readU32, total: writeU32 } },
});
