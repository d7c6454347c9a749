/**
 * Row ops (shaders/rows.wgsl): L2 normalisation of rows, row argmax, gather/scatter of rows by a u32
 * index, and counting equal entries of two u32 vectors. Everything is deterministic (no atomics).
 *
 * Index entries outside [0, N) are never used to address memory (checking them would need a readback):
 * gatherRows returns a zero row for them (and their gradient is dropped); scatterRows ignores them.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { rows as kernels } from '../kernels/rows.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { zeros } from './elementwise.ts';

/** scatterRows up to this many rows compares positions pairwise; above, it marks winners in an [N] scratch. */
const SCATTER_PAIRWISE_MAX = 1024;

function expectMatrix(x: Tensor, op: string, what: string): [number, number] {
  expectDType(x, 'f32', `${op}: ${what}`);
  if (x.rank !== 2)
    throw new RangeError(`${op}: ${what} must be a rank-2 [rows, cols] tensor, got ${fmtShape(x.shape)}`);
  return [x.shape[0], x.shape[1]];
}

function expectIndex(index: Tensor, op: string, what = 'index'): number {
  expectDType(index, 'u32', `${op}: ${what}`);
  if (index.rank !== 1)
    throw new RangeError(`${op}: ${what} must be a rank-1 [B] u32 tensor, got ${fmtShape(index.shape)}`);
  return index.shape[0];
}

/**
 * How the row normaliser keeps a zero row finite. The two rules give different numbers, so each caller
 * names the one it needs:
 * - 'add': x / (||x|| + eps), eps 1e-10 by default: ODC-SPEC's rule for the memory (and its k-means).
 * - 'clamp': x / max(||x||, eps), eps 1e-12 by default: PyTorch's F.normalize (the kNN evaluation).
 */
export type NormEpsilon = 'add' | 'clamp';

export interface NormalizeRowsOptions {
  epsilon: NormEpsilon;
  /** The epsilon's size (default 1e-10 for 'add', 1e-12 for 'clamp'). */
  eps?: number;
  /**
   * How ||x||^2 is summed: 'workgroup' (default; 64 lanes per row, then a fixed tree) or 'serial' (one
   * thread per row, in order over the row: the order of the ODC memory's momentum update). Both are
   * deterministic; they differ in the last bits.
   */
  summation?: 'workgroup' | 'serial';
  /** Write into this [B, D] tensor (not recorded for autograd) instead of a new one. */
  out?: Tensor<'f32'>;
}

/**
 * The row normaliser: each row of x [B, D] divided by its L2 norm under the named epsilon rule. A new
 * tensor is differentiable under 'add' (the gradient is recomputed from x, nothing saved); the 'clamp'
 * rule and `out` are for features that need no gradient.
 */
export function normalizeRows(x: Tensor<'f32'>, options: NormalizeRowsOptions): Tensor<'f32'> {
  const [rows, cols] = expectMatrix(x, 'normalizeRows', 'x');
  const rule = options.epsilon;
  if (rule !== 'add' && rule !== 'clamp')
    throw new RangeError(`normalizeRows: epsilon must be 'add' or 'clamp', got ${String(rule)}`);
  const eps = options.eps ?? (rule === 'add' ? 1e-10 : 1e-12);
  if (!(eps >= 0)) throw new RangeError(`normalizeRows: eps must be >= 0, got ${eps}`);
  const out = options.out ?? Tensor.empty([rows, cols], 'f32');
  if (options.out) expectMatrixOf(options.out, rows, cols, 'normalizeRows: out');
  const params = { rows, cols, eps, eps_rule: rule };
  if (options.summation === 'serial') {
    dispatchKernel(kernels.l2n_serial, {
      params,
      bindings: { x: x.buffer, y: out.buffer },
      workgroups: grid(Math.ceil(rows / 256)),
    });
  } else {
    dispatchKernel(kernels.l2n_forward, { params, bindings: { x: x.buffer, y: out.buffer }, workgroups: grid(rows) });
  }
  if (options.out || !x.requiresGrad) return out;
  if (rule !== 'add')
    throw new Error(
      "normalizeRows: the 'clamp' rule has no gradient here; use 'add' for a differentiable normalisation",
    );
  return record(out, 'normalizeRows', [x], (g) => {
    const gx = Tensor.empty([rows, cols], 'f32');
    dispatchKernel(kernels.l2n_backward, {
      params: { rows, cols, eps },
      bindings: { x: x.buffer, gy: g.buffer, gx: gx.buffer },
      workgroups: grid(rows),
    });
    return [gx];
  });
}

function expectMatrixOf(t: Tensor, rows: number, cols: number, what: string): void {
  expectDType(t, 'f32', what);
  if (t.rank !== 2 || t.shape[0] !== rows || t.shape[1] !== cols)
    throw new RangeError(`${what} must be [${rows}, ${cols}], got ${fmtShape(t.shape)}`);
}

/**
 * Index of the largest entry of each row of [B, K] (u32 [B]). Ties go to the lowest index. NaN-safe
 * rule (torch.argmax's): a NaN counts as larger than every number, so a row containing NaN returns the
 * index of its first NaN. -0 and +0 are equal (the lower index wins).
 */
export function argmaxRows(x: Tensor<'f32'>): Tensor<'u32'> {
  const [rows, cols] = expectMatrix(x, 'argmaxRows', 'x');
  if (cols === 0 && rows > 0) throw new RangeError(`argmaxRows: rows of ${fmtShape(x.shape)} are empty`);
  const out = Tensor.empty([rows], 'u32');
  dispatchKernel(kernels.argmax_rows, {
    params: { rows, cols },
    bindings: { x: x.buffer, amax: out.buffer },
    workgroups: grid(rows),
  });
  return out;
}

/** flag[b] = 1 for the first (or last) in-range occurrence of each index value, else 0. */
function markOwners(index: Tensor<'u32'>, count: number, which: 'first' | 'last'): Tensor<'u32'> {
  const b = index.size;
  const flag = Tensor.empty([b], 'u32');
  dispatchKernel(which === 'first' ? kernels.mark_first : kernels.mark_last, {
    params: { rows: b, count },
    bindings: { idx: index.buffer, flag: flag.buffer },
    workgroups: grid(Math.ceil(b / 256)),
  });
  return flag;
}

/**
 * out[b] = x[index[b]] for x [N, D], index u32 [B]: [B, D]. Differentiable in x: the gradient row n is
 * the sum, in increasing b, of the gradient rows b with index[b] == n (one writer per row, no atomics,
 * bit-reproducible); rows never indexed get 0. An out-of-range index gives a zero row. The backward
 * does O(B^2 * D) work in the worst case (each first occurrence scans the later positions): meant for
 * batch-sized B; the forward is O(B * D) for any B.
 */
export function gatherRows(x: Tensor<'f32'>, index: Tensor<'u32'>): Tensor<'f32'> {
  const [n, d] = expectMatrix(x, 'gatherRows', 'x');
  const b = expectIndex(index, 'gatherRows');
  const out = Tensor.empty([b, d], 'f32');
  dispatchKernel(kernels.gather_forward, {
    params: { rows: b, cols: d, count: n },
    bindings: { x: x.buffer, index: index.buffer, gathered: out.buffer },
    workgroups: grid(Math.ceil((b * d) / 256)),
  });
  return record(out, 'gatherRows', [x], (g) => {
    const gx = zeros([n, d]);
    const owner = markOwners(index, n, 'first');
    dispatchKernel(kernels.gather_backward, {
      params: { rows: b, cols: d },
      bindings: { rowsrc: g.buffer, index: index.buffer, owner: owner.buffer, rowdst: gx.buffer },
      workgroups: grid(Math.ceil((b * d) / 256)),
    });
    owner.dispose();
    return [gx];
  });
}

/**
 * dst[index[b]] = src[b] in place, for dst [N, D], src [B, D]. With duplicate indices the LAST
 * occurrence wins (deterministically: the winning position per destination row is marked first, then
 * only winners copy; up to 1024 rows by pairwise comparison, above by a u32 atomicMax into an [N]
 * scratch, whose result does not depend on execution order). Rows not indexed are untouched; out-of-range indices are ignored. Not recorded for
 * autograd: dst must not require grad.
 */
export function scatterRows(dst: Tensor<'f32'>, index: Tensor<'u32'>, src: Tensor<'f32'>): void {
  const [n, d] = expectMatrix(dst, 'scatterRows', 'dst');
  const [bs, ds] = expectMatrix(src, 'scatterRows', 'src');
  const b = expectIndex(index, 'scatterRows');
  if (ds !== d || bs !== b) {
    throw new RangeError(
      `scatterRows: src must be [${b}, ${d}] (index length, dst row length), got ${fmtShape(src.shape)}`,
    );
  }
  if (dst.requiresGrad) throw new Error('scatterRows: dst requires grad; in-place writes are not differentiable');
  if (src.buffer === dst.buffer) throw new Error('scatterRows: src and dst share storage');
  if (b <= SCATTER_PAIRWISE_MAX) {
    // Small batches: each position checks the later ones (O(B^2), no [N] scratch).
    const owner = markOwners(index, n, 'last');
    dispatchKernel(kernels.scatter_rows, {
      params: { rows: b, cols: d },
      bindings: { rowsrc: src.buffer, index: index.buffer, owner: owner.buffer, rowdst: dst.buffer },
      workgroups: grid(Math.ceil((b * d) / 256)),
    });
    owner.dispose();
    return;
  }
  // Large batches: per destination row, 1 + the last position writing it (u32 atomicMax, order-free).
  const win = Tensor.empty([n], 'u32');
  dispatchKernel(kernels.fill_u32, {
    params: { count: n },
    bindings: { out: win.buffer },
    workgroups: grid(Math.ceil(n / 256)),
  });
  dispatchKernel(kernels.mark_winner, {
    params: { rows: b, count: n },
    bindings: { idx: index.buffer, win: win.buffer },
    workgroups: grid(Math.ceil(b / 256)),
  });
  dispatchKernel(kernels.scatter_rows_win, {
    params: { rows: b, cols: d, count: n },
    bindings: { rowsrc: src.buffer, index: index.buffer, win: win.buffer, rowdst: dst.buffer },
    workgroups: grid(Math.ceil((b * d) / 256)),
  });
  win.dispose();
}

/** Number of positions where two u32 vectors of equal length are equal, as a u32 [1] (no readback). */
export function countEqual(a: Tensor<'u32'>, b: Tensor<'u32'>): Tensor<'u32'> {
  const n = expectIndex(a, 'countEqual', 'a');
  const m = expectIndex(b, 'countEqual', 'b');
  if (n !== m) throw new RangeError(`countEqual: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
  const out = Tensor.empty([1], 'u32');
  dispatchKernel(kernels.count_equal, {
    params: { count: n },
    bindings: { ua: a.buffer, ub: b.buffer, total: out.buffer },
    workgroups: [1],
  });
  return out;
}
