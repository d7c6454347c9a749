/**
 * CPU float64 reference for conv2d (src/ops/conv.ts): direct loops over NHWC x and [KH, KW, Cin, Cout]
 * weights, zero padding, no im2col. The backward pass scatters each output gradient back along the
 * same loops, so it shares no index algebra with the GPU's dgrad/wgrad GEMMs.
 */
import { refArray, type RefArray } from './array.ts';

export interface RefConvOptions {
  stride?: number;
  padding?: number;
}

function outSize(n: number, k: number, stride: number, pad: number): number {
  return Math.floor((n + 2 * pad - k) / stride) + 1;
}

/** Calls visit(outIndex, xIndex, wIndex) for every in-bounds product of the convolution. */
function forEachProduct(
  xShape: number[],
  wShape: number[],
  stride: number,
  pad: number,
  visit: (o: number, xi: number, wi: number) => void,
): number[] {
  const [N, H, W, Cin] = xShape;
  const [KH, KW, , Cout] = wShape;
  const OH = outSize(H, KH, stride, pad);
  const OW = outSize(W, KW, stride, pad);
  for (let n = 0; n < N; n++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        for (let kh = 0; kh < KH; kh++) {
          const ih = oh * stride - pad + kh;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = ow * stride - pad + kw;
            if (iw < 0 || iw >= W) continue;
            for (let ci = 0; ci < Cin; ci++) {
              const xi = ((n * H + ih) * W + iw) * Cin + ci;
              for (let co = 0; co < Cout; co++) {
                visit(((n * OH + oh) * OW + ow) * Cout + co, xi, ((kh * KW + kw) * Cin + ci) * Cout + co);
              }
            }
          }
        }
      }
    }
  }
  return [N, OH, OW, Cout];
}

/** out[n, oh, ow, co] = Σ x[n, oh·s - p + kh, ow·s - p + kw, ci] · w[kh, kw, ci, co]. */
export function refConv2d(x: RefArray, w: RefArray, opts: RefConvOptions = {}): RefArray {
  const stride = opts.stride ?? 1;
  const pad = opts.padding ?? 0;
  const [N, H, W] = x.shape;
  const [KH, KW, , Cout] = w.shape;
  const out = refArray([N, outSize(H, KH, stride, pad), outSize(W, KW, stride, pad), Cout]);
  forEachProduct(x.shape, w.shape, stride, pad, (o, xi, wi) => {
    out.data[o] += x.data[xi] * w.data[wi];
  });
  return out;
}

/** Gradients of sum(G ⊙ conv2d(x, w)) with respect to x and w. */
export function refConv2dBackward(
  g: RefArray,
  x: RefArray,
  w: RefArray,
  opts: RefConvOptions = {},
): { dx: RefArray; dw: RefArray } {
  const dx = refArray(x.shape);
  const dw = refArray(w.shape);
  forEachProduct(x.shape, w.shape, opts.stride ?? 1, opts.padding ?? 0, (o, xi, wi) => {
    dx.data[xi] += g.data[o] * w.data[wi];
    dw.data[wi] += g.data[o] * x.data[xi];
  });
  return { dx, dw };
}
