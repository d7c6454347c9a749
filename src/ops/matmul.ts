/**
 * matmul and linear, and the shared GEMM launcher that conv2d (src/ops/conv.ts) reuses.
 *
 * One WGSL GEMM body (shaders/gemm.wgsl) with read-A / read-B / write-C hooks selected by a compile-time
 * MODE serves matmul (with transposes and a fused bias epilogue), implicit-GEMM conv forward, dgrad and
 * wgrad. Its variants (src/ops/gemm-variants.ts: register blocks for CPU adapters such as lavapipe,
 * workgroup-memory tiles for GPUs) are chosen per adapter and shape class by src/gpu/variants.ts. Split-K writes partial products into a
 * temporary buffer that a second kernel sums in a fixed order, so results are deterministic.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel, type DefineValues, type Precision } from '../gpu/kernel.ts';
import { elementwise } from '../kernels/elementwise.ts';
import { gemm, type GEMM_MODES } from '../kernels/gemm.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { fixedSubgroupSize, gemmChoice, gemmDefault, gemmShapeClass, type GemmVariant } from './gemm-variants.ts';
import { elementBytes, inWorkingPrecision, writeThroughF32 } from './precision.ts';
import { tensorCoreGemmFor } from './tensor-core-choice.ts';

export type { PlainGemm } from './tensor-core-choice.ts';

export type GemmMode = (typeof GEMM_MODES)[number];

/**
 * The variant an M×N×K GEMM of `mode` runs with: the one per-adapter choice (src/gpu/variants.ts) for its
 * shape class (f16 operands have classes of their own), today's fixed table (gemmDefault) unless tuned, pinned or forced.
 */
export function gemmVariant(
  mode: GemmMode,
  M: number,
  N: number,
  K: number,
  precision: Precision = 'f32',
): GemmVariant {
  const g = gpu();
  return gemmChoice.choose(g, gemmShapeClass(mode, M, N, K, precision), gemmDefault(g, N, M));
}

/** Convolution geometry for the conv modes; phase fields only for dgrad (MODE 2). */
export interface ConvParams {
  batch: number;
  H: number;
  W: number;
  Cin: number;
  OH: number;
  OW: number;
  Cout: number;
  KH: number;
  KW: number;
  stride: number;
  pad: number;
  phase?: { ph: number; pw: number; t0h: number; t0w: number; Ht: number; Wt: number; KHp: number; KWp: number };
}

/** Shape of the GEMM and, for conv modes, of the convolution. */
export interface GemmSpec {
  mode: GemmMode;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  /** B is stored transposed: matmul's b as [N, K]; conv_dgrad's b as the weight itself [KH, KW, Cin, Cout] (else per tap [Cout, Cin]). */
  transB?: boolean;
  a: GPUBuffer;
  b: GPUBuffer;
  bias?: GPUBuffer | null;
  out: GPUBuffer;
  conv?: ConvParams;
  /** The element type of a and b (f16 under `--precision f16`); accumulation is f32. */
  precision?: Precision;
  /** The element type of out: f16 for an activation under `--precision f16` (rounded on store), else f32. */
  outPrecision?: Precision;
  /**
   * C := A·B + C: add the product into what out holds (f32 out; a gradient into the one already collected, as
   * autograd's sum of the two would, bit for bit), instead of overwriting it.
   */
  accumulate?: boolean;
  /** Force a split count (tests); default chosen from the variant's occupancy target. */
  splits?: number;
}

function kernelDefines(
  v: GemmVariant,
  mode: GemmMode,
  transA: boolean,
  transB: boolean,
  hasBias: boolean,
  accumulate: boolean,
  vecB: boolean,
  outType: Precision,
): DefineValues<typeof gemm.gemm_regs.defines> {
  return {
    C_T: outType,
    VEC_B: vecB,
    MODE: mode,
    TRANS_A: transA,
    TRANS_B: transB,
    HAS_BIAS: hasBias,
    ACCUMULATE: accumulate,
    TM: v.tm,
    TN: v.tn,
    WGM: v.wgm,
    WGN: v.wgn,
    TK: v.tk,
    COLS_STRIDED: v.strided ?? false,
    CONFLICT_FREE: v.conflictFree ?? false,
    NBUF: v.buffers ?? 1,
    SUBGROUP: v.subgroup ?? false,
    SG_SIZE: (v.subgroup && fixedSubgroupSize(gpu())) || 1,
    SG_SHUFFLE: v.subgroup ? 'subgroupShuffle(v, lane)' : 'v',
  };
}

/** Records C = A·B for a GemmSpec (writes every element of spec.out; C += A·B with `accumulate`). Never reads back. */
export function runGemm(spec: GemmSpec): void {
  const g = gpu();
  if (spec.accumulate && (spec.outPrecision ?? 'f32') !== 'f32')
    throw new RangeError('gemm: accumulate needs an f32 output (a gradient)');
  // The tensor cores serve f16 plain GEMMs (matmul mode, A not transposed, no bias, default split) once their
  // self-check passed, where the per-shape choice (src/ops/tensor-core-choice.ts) does not say `off`.
  const tensorCoreGemm =
    spec.precision === 'f16' &&
    spec.mode === 'matmul' &&
    !spec.transA &&
    !spec.bias &&
    spec.splits === undefined &&
    spec.M > 0 &&
    spec.N > 0 &&
    spec.K > 0
      ? tensorCoreGemmFor('matmul', spec.M, spec.N, spec.K)
      : null;
  if (tensorCoreGemm) {
    const bt = spec.transB ? g.pool.acquire(spec.N * spec.K * 2) : null;
    if (bt) transpose(spec.b, spec.N, spec.K, bt, 1, 'f16');
    // The subgroup-matrix kernel has no epilogue: accumulating, it writes a temporary that is added afterwards.
    const product = spec.accumulate ? g.pool.acquire(spec.M * spec.N * 4) : spec.out;
    writeThroughF32(product, spec.M * spec.N, spec.outPrecision ?? 'f32', (out) =>
      tensorCoreGemm(spec.a, bt ?? spec.b, out, spec.M, spec.N, spec.K),
    );
    if (spec.accumulate) {
      dispatchKernel(elementwise.accumulate, {
        params: { n: spec.M * spec.N, alpha: 1 },
        bindings: { acc: spec.out, b: product },
        workgroups: grid(Math.ceil((spec.M * spec.N) / 256)),
      });
      g.pool.release(product);
    }
    if (bt) g.pool.release(bt);
    return;
  }
  const v = gemmVariant(spec.mode, spec.M, spec.N, spec.K, spec.precision);
  // B read transposed (matmul's bᵀ, dgrad's untransposed weight): gemm_regs loads 4 k of a column as one vec4
  // where the k-runs are 4-aligned, as fast as the plain layout and bit-identical to transposing first.
  const btVec4 = !!spec.transB && (spec.mode === 'conv_dgrad' ? spec.conv!.Cout : spec.K) % 4 === 0;
  if (spec.transB && !btVec4 && v.body === 'regs' && (spec.mode === 'conv_dgrad' || (spec.M >= 64 && spec.K > 0))) {
    // Otherwise lavapipe's scalar Bᵀ reads ran at ~40% of the plain GEMM (2.6 vs 7 GFLOP/s per core):
    // transposing B first costs ~25 ns per element of B, which M >= 64 rows amortise.
    const taps = spec.mode === 'conv_dgrad' ? spec.conv!.KH * spec.conv!.KW : 1;
    const cols = spec.mode === 'conv_dgrad' ? spec.conv!.Cout : spec.K;
    const bt = g.pool.acquire(taps * spec.N * cols * elementBytes(spec.precision));
    transpose(spec.b, spec.N, cols, bt, taps, spec.precision);
    runGemm({ ...spec, transB: false, b: bt });
    g.pool.release(bt);
    return;
  }
  const { M, N, K } = spec;
  if (M === 0 || N === 0) return;
  const hasBias = !!spec.bias;
  const vecB = N % 4 === 0 && !spec.transB;
  const outType = spec.outPrecision ?? 'f32';
  const bm = v.wgm * v.tm;
  const bn = v.wgn * v.tn;
  const tilesM = Math.ceil(M / bm);
  const tilesN = Math.ceil(N / bn);
  const tiles = tilesM * tilesN;
  let splits = spec.splits ?? 1;
  // dgrad phases scatter their rows into dx, which a [splits, M, N] partial buffer cannot hold.
  if (spec.splits === undefined && tiles < v.minWorkgroups && spec.mode !== 'conv_dgrad') {
    splits = Math.min(Math.ceil(v.minWorkgroups / tiles), Math.max(1, Math.floor(K / v.minKChunk)));
  }
  // Keep the partial buffer within one binding.
  while (splits > 1 && splits * M * N * 4 > g.limits.maxStorageBufferBindingSize) splits = Math.ceil(splits / 2);
  splits = Math.max(1, Math.min(splits, Math.max(K, 1)));
  let kchunk = Math.ceil(K / splits);
  if (v.body === 'tiled') kchunk = Math.ceil(kchunk / v.tk) * v.tk;
  splits = Math.max(1, Math.ceil(K / Math.max(kchunk, 1)));
  const c = spec.conv ?? { batch: 0, H: 0, W: 0, Cin: 0, OH: 0, OW: 0, Cout: 0, KH: 0, KW: 0, stride: 1, pad: 0 };
  const ph = c.phase ?? { ph: 0, pw: 0, t0h: 0, t0w: 0, Ht: 1, Wt: 1, KHp: 1, KWp: 1 };
  const { H, W, Cin, OH, OW, Cout, KW, stride, pad } = c;
  const geometry = {
    M,
    N,
    K,
    kchunk: Math.max(kchunk, 1),
    tilesN,
    splits,
    H,
    W,
    Cin,
    OH,
    OW,
    Cout,
    KW,
    stride,
    pad,
    ...ph,
    bt_vec4: btVec4,
  };
  const maxDim = g.limits.maxComputeWorkgroupsPerDimension;
  if (tilesN * splits > maxDim)
    throw new RangeError(`gemm: ${tilesN * splits} column tiles exceed ${maxDim} workgroups`);
  const [gx, gy] = grid(tilesM);
  const partial = splits > 1 ? g.pool.acquire(splits * M * N * 4) : null;
  const dummyBias = spec.bias ?? spec.a;
  // Split-K partials are f32; sum_splits rounds an f16 output.
  const accumulate = !!spec.accumulate;
  const defines = kernelDefines(
    v,
    spec.mode,
    !!spec.transA,
    !!spec.transB,
    hasBias,
    accumulate && !partial,
    vecB,
    partial ? 'f32' : outType,
  );
  dispatchKernel(v.body === 'regs' ? gemm.gemm_regs : gemm.gemm_tiled, {
    params: geometry,
    bindings: { A: spec.a, B: spec.b, bias: dummyBias, C: partial ?? spec.out },
    defines,
    precision: spec.precision ?? 'f32',
    workgroups: [gx, gy, tilesN * splits],
  });
  if (partial) {
    dispatchKernel(gemm.sum_splits, {
      params: { M, N, splits },
      bindings: { parts: partial, bias: dummyBias, out: spec.out },
      defines: { HAS_BIAS: hasBias, ACCUMULATE: accumulate },
      precision: outType,
      workgroups: grid(Math.ceil((M * N) / 256)),
    });
    g.pool.release(partial);
  }
}

/** out[b, cols, rows] = src[b, rows, cols]ᵀ for each of `batches` row-major matrices. */
export function transpose(
  src: GPUBuffer,
  rows: number,
  cols: number,
  out: GPUBuffer,
  batches = 1,
  precision: Precision = 'f32',
): void {
  dispatchKernel(gemm.transpose2d, {
    params: { rows, cols, batches },
    bindings: { src, dst: out },
    precision,
    workgroups: grid(Math.ceil((batches * rows * cols) / 256)),
  });
}

/** Column sums of a row-major [rows, cols] buffer into out[cols] (bias gradients), in a fixed order. */
export function columnSums(src: GPUBuffer, rows: number, cols: number, out: GPUBuffer): void {
  dispatchKernel(gemm.column_sums, {
    params: { rows, cols },
    bindings: { src, dst: out },
    workgroups: grid(Math.ceil(cols / 64)),
  });
}

function fillZero(out: Tensor<'f32'>): void {
  gpu().write(out.buffer, new Float32Array(out.size));
}

function expectMatrix(t: Tensor, op: string, what: string): void {
  expectDType(t, 'f32', `${op}: ${what}`);
  if (t.rank !== 2) throw new RangeError(`${op}: ${what} must be 2-D, got shape ${fmtShape(t.shape)}`);
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * C = op(A)·op(B) for 2-D f32 tensors; op transposes when transA/transB is set. Differentiable in both.
 * Under the f16 working precision (src/ops/precision.ts) the GEMM reads f16 copies and accumulates in f32.
 */
export function matmul(a: Tensor<'f32'>, b: Tensor<'f32'>, opts: MatmulOptions = {}): Tensor<'f32'> {
  expectMatrix(a, 'matmul', 'A');
  expectMatrix(b, 'matmul', 'B');
  const transA = !!opts.transA;
  const transB = !!opts.transB;
  const [M, Ka] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [Kb, N] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (Ka !== Kb) {
    throw new RangeError(
      `matmul: inner dimensions differ: op(A) is [${M}, ${Ka}] (A ${fmtShape(a.shape)}${transA ? ' transposed' : ''}), ` +
        `op(B) is [${Kb}, ${N}] (B ${fmtShape(b.shape)}${transB ? ' transposed' : ''})`,
    );
  }
  const out = Tensor.empty([M, N], 'f32');
  if (Ka === 0) fillZero(out);
  else
    inWorkingPrecision([a, b], ([ab, bb], precision) =>
      runGemm({ mode: 'matmul', M, N, K: Ka, transA, transB, a: ab, b: bb, out: out.buffer, precision }),
    );
  return record(out, 'matmul', [a, b], (g) => {
    // C = op(A)·op(B): dop(A) = G·op(B)ᵀ, dop(B) = op(A)ᵀ·G, transposed back where op transposes.
    let da: Tensor<'f32'> | null = null;
    let db: Tensor<'f32'> | null = null;
    if (a.requiresGrad)
      da = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
    if (b.requiresGrad)
      db = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
    return [da, db];
  });
}

/** y = x·Wᵀ + b with x [B, in], weight [out, in], bias [out] (fused into the GEMM store). */
export function linear(x: Tensor<'f32'>, weight: Tensor<'f32'>, bias: Tensor<'f32'> | null): Tensor<'f32'> {
  expectMatrix(x, 'linear', 'x');
  expectMatrix(weight, 'linear', 'weight');
  const [rows, inF] = x.shape;
  const [outF, inW] = weight.shape;
  if (inF !== inW)
    throw new RangeError(
      `linear: x ${fmtShape(x.shape)} has ${inF} features but weight ${fmtShape(weight.shape)} expects ${inW} (weight is [out, in])`,
    );
  if (bias) {
    expectDType(bias, 'f32', 'linear: bias');
    if (bias.rank !== 1 || bias.shape[0] !== outF)
      throw new RangeError(`linear: bias must have shape [${outF}], got ${fmtShape(bias.shape)}`);
  }
  const out = Tensor.empty([rows, outF], 'f32');
  if (inF === 0) {
    fillZero(out);
    if (bias && rows > 0)
      runGemm({
        mode: 'matmul',
        M: rows,
        N: outF,
        K: 0,
        a: x.buffer,
        b: weight.buffer,
        bias: bias.buffer,
        out: out.buffer,
      });
  } else {
    inWorkingPrecision([x, weight], ([xb, wb], precision) =>
      runGemm({
        mode: 'matmul',
        M: rows,
        N: outF,
        K: inF,
        transB: true,
        a: xb,
        b: wb,
        bias: bias?.buffer ?? null,
        out: out.buffer,
        precision,
      }),
    );
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return record(out, 'linear', inputs, (g) => {
    const dx = x.requiresGrad ? matmul(g, weight) : null;
    const dw = weight.requiresGrad ? matmul(g, x, { transA: true }) : null;
    let db: Tensor<'f32'> | null = null;
    if (bias?.requiresGrad) {
      db = Tensor.empty([outF], 'f32');
      if (rows === 0) fillZero(db);
      else columnSums(g.buffer, rows, outF, db.buffer);
    }
    return bias ? [dx, dw, db] : [dx, dw];
  });
}
