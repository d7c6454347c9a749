/**
 * conv2d over NHWC activations with [KH, KW, Cin, Cout] weights (no bias, dilation 1, groups 1), as
 * implicit GEMM on the shared GEMM core (src/ops/matmul.ts, shaders/gemm.wgsl):
 *   forward  out[N·OH·OW, Cout]   = im2col(x) · W                    (MODE 1, im2col in the A hook)
 *   dgrad    dx[N·H·W, Cin]       = dy gathered · W flipped/ᵀ          (MODE 2, one GEMM per stride phase)
 *   wgrad    dW[KH·KW·Cin, Cout]  = im2col(x)ᵀ · dy, K = N·OH·OW      (MODE 3, split-K + ordered sum)
 * 1×1 stride-1 unpadded convs are plain matmuls (MODE 0). Under the f16 working precision
 * (src/ops/precision.ts) each pass reads f16 operands and accumulates in f32; the forward writes an f16
 * activation, the backward f32 gradients.
 */
import { Tensor, expectDType, expectFloat, fmtShape, type FloatDType } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { gpu, grid } from '../gpu/device.ts';
import type { Precision } from '../gpu/kernel.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { precision as precisionKernels } from '../kernels/precision.ts';
import { runGemm, type ConvParams, type PlainGemm } from './matmul.ts';
import { tensorCoreGemmFor } from './tensor-core-choice.ts';
import { inWorkingPrecision, writeThroughF32 } from './precision.ts';

export interface Conv2dOptions<D extends FloatDType = FloatDType> {
  stride?: number;
  padding?: number;
  /** The output's dtype: f32 (default), or f16 for an activation under `--precision f16` (rounded on store). */
  dtype?: D;
}

/** The convolution's geometry: ConvParams without the dgrad phase fields. */
export type ConvGeometry = Omit<ConvParams, 'phase'>;

function geometry(x: Tensor, weight: Tensor, opts: Conv2dOptions): ConvGeometry {
  expectFloat(x, 'conv2d: x');
  expectDType(weight, 'f32', 'conv2d: weight');
  if (x.rank !== 4) throw new RangeError(`conv2d: x must be NHWC [N, H, W, Cin], got shape ${fmtShape(x.shape)}`);
  if (weight.rank !== 4)
    throw new RangeError(`conv2d: weight must be [KH, KW, Cin, Cout], got shape ${fmtShape(weight.shape)}`);
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  if (!Number.isInteger(stride) || stride < 1)
    throw new RangeError(`conv2d: stride must be a positive integer, got ${stride}`);
  if (!Number.isInteger(pad) || pad < 0)
    throw new RangeError(`conv2d: padding must be a non-negative integer, got ${pad}`);
  const [batch, H, W, Cin] = x.shape;
  const [KH, KW, Cw, Cout] = weight.shape;
  if (Cw !== Cin) {
    throw new RangeError(
      `conv2d: x ${fmtShape(x.shape)} has Cin = ${Cin} but weight ${fmtShape(weight.shape)} expects Cin = ${Cw} (weight is [KH, KW, Cin, Cout])`,
    );
  }
  if (KH < 1 || KW < 1) throw new RangeError(`conv2d: empty kernel ${fmtShape(weight.shape)}`);
  const OH = Math.floor((H + 2 * pad - KH) / stride) + 1;
  const OW = Math.floor((W + 2 * pad - KW) / stride) + 1;
  if (OH < 1 || OW < 1) {
    throw new RangeError(
      `conv2d: a ${KH}x${KW} kernel does not fit input ${H}x${W} with padding ${pad} (output would be ${OH}x${OW})`,
    );
  }
  return { batch, H, W, Cin, OH, OW, Cout, KH, KW, stride, pad };
}

function isPointwise(g: ConvGeometry): boolean {
  return g.KH === 1 && g.KW === 1 && g.stride === 1 && g.pad === 0;
}

/** The conv forward's GEMM(s) into `out` (f32, or f16 rounded on store): a plain matmul (pointwise), the tensor cores (f16, where chosen) or implicit GEMM. */
export function convForwardGemm(
  x: GPUBuffer,
  w: GPUBuffer,
  out: GPUBuffer,
  g: ConvGeometry,
  precision: Precision,
  outPrecision: Precision = 'f32',
): void {
  const M = g.batch * g.OH * g.OW;
  const K = g.KH * g.KW * g.Cin;
  const tensorCores =
    precision === 'f16' && !isPointwise(g) && M > 0 && K > 0 && g.Cout > 0
      ? tensorCoreGemmFor('conv_forward', M, g.Cout, K)
      : null;
  if (isPointwise(g)) runGemm({ mode: 'matmul', M, N: g.Cout, K: g.Cin, a: x, b: w, out, precision, outPrecision });
  else if (tensorCores && M * K * 2 <= gpu().limits.maxStorageBufferBindingSize)
    writeThroughF32(out, M * g.Cout, outPrecision, (out32) => im2colGemm(tensorCores, x, w, out32, g));
  else runGemm({ mode: 'conv_forward', M, N: g.Cout, K, a: x, b: w, out, conv: g, precision, outPrecision });
}

/**
 * The tensor-core conv forward: the f16 im2col matrix [N·OH·OW, KH·KW·Cin], then one plain GEMM with the
 * [KH·KW·Cin, Cout] weight (the subgroup-matrix kernel reads whole blocks, which implicit GEMM's gathers
 * are not). Used only while the tensor-core path serves f16 GEMMs, when the matrix fits one binding.
 */
export function im2colGemm(gemm: PlainGemm, x: GPUBuffer, w: GPUBuffer, out: GPUBuffer, g: ConvGeometry): void {
  const M = g.batch * g.OH * g.OW;
  const K = g.KH * g.KW * g.Cin;
  const cols = gpu().pool.acquire(M * K * 2);
  dispatchKernel(precisionKernels.im2col_float, {
    params: { M, K, H: g.H, W: g.W, Cin: g.Cin, OH: g.OH, OW: g.OW, KW: g.KW, stride: g.stride, pad: g.pad },
    bindings: { src: x, dst: cols },
    precision: 'f16',
    workgroups: grid(Math.ceil((M * K) / 256)),
  });
  gemm(cols, w, out, M, g.Cout, K);
  gpu().pool.release(cols);
}

/**
 * dx from dy: out[N·H·W, Cin] (added into what out holds with `accumulate`), one GEMM per stride phase (ph, pw) — the input pixels with
 * (ih + pad) mod s = ph only meet kernel taps kh ≡ ph (mod s) — so no multiply is wasted on the zeros a
 * stride-s transposed convolution would otherwise insert. Phases no tap reaches are written as zeros.
 * The GEMM reads the weight transposed per tap (transB), with vec4 loads along Cout where Cout % 4 == 0 (strided
 * reads ran dgrad at a third of the forward's speed on lavapipe; runGemm transposes first where it cannot).
 */
function dgrad(
  dy: GPUBuffer,
  w: GPUBuffer,
  out: GPUBuffer,
  g: ConvGeometry,
  precision: Precision,
  accumulate: boolean,
): void {
  if (isPointwise(g)) {
    const M = g.batch * g.H * g.W;
    runGemm({ mode: 'matmul', M, N: g.Cin, K: g.Cout, transB: true, a: dy, b: w, out, precision, accumulate });
    return;
  }
  const s = g.stride;
  for (let ph = 0; ph < s; ph++) {
    for (let pw = 0; pw < s; pw++) {
      const t0h = Math.max(0, Math.ceil((g.pad - ph) / s));
      const t0w = Math.max(0, Math.ceil((g.pad - pw) / s));
      const Ht = Math.ceil((g.H + g.pad - ph) / s) - t0h;
      const Wt = Math.ceil((g.W + g.pad - pw) / s) - t0w;
      if (Ht <= 0 || Wt <= 0) continue;
      const KHp = Math.max(0, Math.ceil((g.KH - ph) / s));
      const KWp = Math.max(0, Math.ceil((g.KW - pw) / s));
      const phase = { ph, pw, t0h, t0w, Ht, Wt, KHp, KWp };
      runGemm({
        mode: 'conv_dgrad',
        M: g.batch * Ht * Wt,
        N: g.Cin,
        K: KHp * KWp * g.Cout,
        transB: true,
        a: dy,
        b: w,
        out,
        conv: { ...g, phase },
        precision,
        accumulate,
      });
    }
  }
}

/** dW from x and dy: out[KH·KW·Cin, Cout], split over the huge K = N·OH·OW. */
function wgrad(x: GPUBuffer, dy: GPUBuffer, out: GPUBuffer, g: ConvGeometry, precision: Precision): void {
  const K = g.batch * g.OH * g.OW;
  if (isPointwise(g)) runGemm({ mode: 'matmul', M: g.Cin, N: g.Cout, K, transA: true, a: x, b: dy, out, precision });
  else runGemm({ mode: 'conv_wgrad', M: g.KH * g.KW * g.Cin, N: g.Cout, K, a: x, b: dy, out, conv: g, precision });
}

/**
 * 2-D convolution: x NHWC [N, H, W, Cin], weight [KH, KW, Cin, Cout] → [N, OH, OW, Cout] with
 * OH = floor((H + 2·padding - KH) / stride) + 1. Differentiable in x and weight (the gradients are f32).
 * x may be f32 or f16; the output has `opts.dtype` (f32 unless asked).
 */
export function conv2d<D extends FloatDType = 'f32'>(
  x: Tensor<FloatDType>,
  weight: Tensor<'f32'>,
  opts: Conv2dOptions<D> = {},
): Tensor<D> {
  const g = geometry(x, weight, opts);
  const outType = opts.dtype ?? 'f32';
  if (outType !== 'f32' && outType !== 'f16')
    throw new TypeError(`conv2d: dtype must be f32 or f16, got ${String(outType)}`);
  const out = Tensor.empty([g.batch, g.OH, g.OW, g.Cout], outType as D);
  inWorkingPrecision([x, weight], ([xb, wb], precision) => convForwardGemm(xb, wb, out.buffer, g, precision, outType));
  return record(out, 'conv2d', [x, weight], (dy, pending) => {
    // x's gradient collected so far (a block input that also feeds the shortcut): dgrad adds into it in its epilogue.
    const collected = x.requiresGrad ? (pending?.[0] ?? null) : null;
    const dx = x.requiresGrad ? (collected ?? Tensor.empty(x.shape, 'f32')) : null;
    const dw = weight.requiresGrad ? Tensor.empty(weight.shape, 'f32') : null;
    // One working-precision copy of dy serves both GEMMs (under f16: one rounding dispatch fewer); the weight is
    // needed only for dx, x (last) only for dW.
    const operands: Array<Tensor<FloatDType>> = [dy];
    if (dx) operands.push(weight);
    if (dw) operands.push(x);
    inWorkingPrecision(operands, (buffers, precision) => {
      if (dx) dgrad(buffers[0], buffers[1], dx.buffer, g, precision, collected !== null);
      if (dw) wgrad(buffers[operands.length - 1], buffers[0], dw.buffer, g, precision);
    });
    return [dx, dw];
  });
}
