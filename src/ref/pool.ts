/**
 * CPU float64 reference for pooling (src/ops/pool.ts), NHWC, written plainly by looping over windows.
 * Max: padding never wins, ties go to the first element in row-major window order.
 * Average: count_include_pad (divide by kernel²).
 */
import { refArray, type RefArray } from './array.ts';

export interface RefPoolOptions {
  kernel: number;
  stride: number;
  padding: number;
}

function outSize(x: RefArray, o: RefPoolOptions): [number, number, number, number] {
  const [n, h, w, c] = x.shape;
  return [
    n,
    Math.floor((h + 2 * o.padding - o.kernel) / o.stride) + 1,
    Math.floor((w + 2 * o.padding - o.kernel) / o.stride) + 1,
    c,
  ];
}

/** Calls visit(outIndex, inIndex) for every (output, in-bounds input) pair, windows in row-major order. */
function forEachWindow(x: RefArray, o: RefPoolOptions, visit: (out: number, inp: number) => void): void {
  const [n, h, w, c] = x.shape;
  const [, oh, ow] = outSize(x, o);
  for (let b = 0; b < n; b++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let ch = 0; ch < c; ch++) {
          const out = ((b * oh + oy) * ow + ox) * c + ch;
          for (let ky = 0; ky < o.kernel; ky++) {
            const iy = oy * o.stride - o.padding + ky;
            if (iy < 0 || iy >= h) continue;
            for (let kx = 0; kx < o.kernel; kx++) {
              const ix = ox * o.stride - o.padding + kx;
              if (ix < 0 || ix >= w) continue;
              visit(out, ((b * h + iy) * w + ix) * c + ch);
            }
          }
        }
      }
    }
  }
}

/** Max pooling; `argmax` holds the flat input index chosen for each output. */
export function refMaxPool2d(x: RefArray, o: RefPoolOptions): { out: RefArray; argmax: Int32Array } {
  const out = refArray(outSize(x, o));
  const argmax = new Int32Array(out.data.length).fill(-1);
  forEachWindow(x, o, (oi, ii) => {
    if (argmax[oi] < 0 || x.data[ii] > out.data[oi]) {
      out.data[oi] = x.data[ii];
      argmax[oi] = ii;
    }
  });
  return { out, argmax };
}

export function refMaxPool2dBackward(g: RefArray, x: RefArray, o: RefPoolOptions): RefArray {
  const { argmax } = refMaxPool2d(x, o);
  const dx = refArray(x.shape);
  for (let oi = 0; oi < argmax.length; oi++) dx.data[argmax[oi]] += g.data[oi];
  return dx;
}

export function refAvgPool2d(x: RefArray, o: RefPoolOptions): RefArray {
  const out = refArray(outSize(x, o));
  forEachWindow(x, o, (oi, ii) => {
    out.data[oi] += x.data[ii];
  });
  for (let i = 0; i < out.data.length; i++) out.data[i] /= o.kernel * o.kernel;
  return out;
}

export function refAvgPool2dBackward(g: RefArray, x: RefArray, o: RefPoolOptions): RefArray {
  const dx = refArray(x.shape);
  forEachWindow(x, o, (oi, ii) => {
    dx.data[ii] += g.data[oi] / (o.kernel * o.kernel);
  });
  return dx;
}

export function refGlobalAvgPool(x: RefArray): RefArray {
  const [n, h, w, c] = x.shape;
  const out = refArray([n, c]);
  for (let b = 0; b < n; b++) {
    for (let s = 0; s < h * w; s++)
      for (let ch = 0; ch < c; ch++) out.data[b * c + ch] += x.data[(b * h * w + s) * c + ch];
  }
  for (let i = 0; i < out.data.length; i++) out.data[i] /= h * w;
  return out;
}

export function refGlobalAvgPoolBackward(g: RefArray, x: RefArray): RefArray {
  const [n, h, w, c] = x.shape;
  const dx = refArray(x.shape);
  for (let b = 0; b < n; b++) {
    for (let s = 0; s < h * w; s++)
      for (let ch = 0; ch < c; ch++) dx.data[(b * h * w + s) * c + ch] = g.data[b * c + ch] / (h * w);
  }
  return dx;
}
