/**
 * CPU float64 reference of the augmentation (src/data/augment.ts) for given per-sample parameters.
 * Written independently of the kernel: it materialises each intermediate image the way torchvision does
 * (crop, then resize the crop; flip the image; rotate through torchvision's inverse affine matrix and
 * affine grid; then whole-image colour ops), where the kernel composes everything per output pixel.
 *
 * Nearest-neighbour rotation picks round(source coordinate) (half to even, as grid_sample's nearbyint);
 * where that coordinate lies within `tieEps` of a .5 rounding boundary, f32 (GPU) and f64 may pick
 * different pixels: such output pixels are flagged in `ambiguous` for the tests to skip.
 */
import type { Geometry, SampleParams } from '../data/augment.ts';

interface Img {
  h: number;
  w: number;
  c: number;
  /** HWC float64 */
  d: Float64Array;
}

export interface RefAugmentResult {
  /** [B, outH, outW, C] normalised values */
  data: Float64Array;
  /** 1 where a rotation rounding tie makes the output pixel ambiguous (per B*outH*outW pixel). */
  ambiguous: Uint8Array;
}

export interface RefImages {
  height: number;
  width: number;
  channels: 1 | 3;
  images: Uint8Array;
}

function bilinearResize(src: Img, outH: number, outW: number): Img {
  // torch.nn.functional.interpolate(mode='bilinear', align_corners=False, antialias=False)
  const d = new Float64Array(outH * outW * src.c);
  const scaleY = src.h / outH;
  const scaleX = src.w / outW;
  for (let y = 0; y < outH; y++) {
    const fy = Math.max(scaleY * (y + 0.5) - 0.5, 0);
    const y0 = Math.floor(fy);
    const y1 = y0 < src.h - 1 ? y0 + 1 : y0;
    const wy = fy - y0;
    for (let x = 0; x < outW; x++) {
      const fx = Math.max(scaleX * (x + 0.5) - 0.5, 0);
      const x0 = Math.floor(fx);
      const x1 = x0 < src.w - 1 ? x0 + 1 : x0;
      const wx = fx - x0;
      for (let k = 0; k < src.c; k++) {
        const at = (yy: number, xx: number): number => src.d[(yy * src.w + xx) * src.c + k];
        d[(y * outW + x) * src.c + k] =
          (1 - wy) * (1 - wx) * at(y0, x0) +
          (1 - wy) * wx * at(y0, x1) +
          wy * (1 - wx) * at(y1, x0) +
          wy * wx * at(y1, x1);
      }
    }
  }
  return { h: outH, w: outW, c: src.c, d };
}

function crop(src: Img, top: number, left: number, h: number, w: number): Img {
  const d = new Float64Array(h * w * src.c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < src.c; k++) d[(y * w + x) * src.c + k] = src.d[((top + y) * src.w + left + x) * src.c + k];
    }
  }
  return { h, w, c: src.c, d };
}

function geometry(src: Img, g: Geometry, outH: number, outW: number): Img {
  if (g.kind === 'crop') return bilinearResize(crop(src, g.top, g.left, g.height, g.width), outH, outW);
  return crop(bilinearResize(src, g.height, g.width), g.top, g.left, outH, outW);
}

function hflip(src: Img): Img {
  const d = new Float64Array(src.d.length);
  for (let y = 0; y < src.h; y++) {
    for (let x = 0; x < src.w; x++) {
      for (let k = 0; k < src.c; k++) d[(y * src.w + x) * src.c + k] = src.d[(y * src.w + (src.w - 1 - x)) * src.c + k];
    }
  }
  return { ...src, d };
}

function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff < 0.5) return f;
  if (diff > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision F.rotate (tensor path): inverse affine matrix of -angle, affine grid, grid_sample nearest. */
function rotate(src: Img, angle: number, tieEps: number, ambiguous: Uint8Array, ambOffset: number): Img {
  const rot = (-angle * Math.PI) / 180;
  const a = Math.cos(rot);
  const b = -Math.sin(rot);
  const c = Math.sin(rot);
  const dd = Math.cos(rot);
  const m = [dd, -b, 0, -c, a, 0]; // inverse of [[a, b], [c, d]], centre (0, 0)
  const out = new Float64Array(src.d.length);
  const { h, w } = src;
  for (let y = 0; y < h; y++) {
    const gy0 = -h * 0.5 + 0.5 + y; // base grid (pixel centres relative to the image centre)
    for (let x = 0; x < w; x++) {
      const gx0 = -w * 0.5 + 0.5 + x;
      const gx = (m[0] * gx0 + m[1] * gy0 + m[2]) / (0.5 * w); // normalised to [-1, 1]
      const gy = (m[3] * gx0 + m[4] * gy0 + m[5]) / (0.5 * h);
      const ix = ((gx + 1) * w - 1) / 2; // grid_sample, align_corners=False
      const iy = ((gy + 1) * h - 1) / 2;
      const near = (v: number): boolean => Math.abs(v - Math.floor(v) - 0.5) < tieEps;
      if (near(ix) || near(iy)) ambiguous[ambOffset + y * w + x] = 1;
      const sx = roundHalfEven(ix);
      const sy = roundHalfEven(iy);
      if (sx < 0 || sy < 0 || sx >= w || sy >= h) continue; // black fill
      for (let k = 0; k < src.c; k++) out[(y * w + x) * src.c + k] = src.d[(sy * w + sx) * src.c + k];
    }
  }
  return { ...src, d: out };
}

const clamp01 = (v: number): number => Math.min(1, Math.max(0, v));

function gray(img: Img, p: number): number {
  const d = img.d;
  return img.c === 1 ? d[p] : 0.2989 * d[3 * p] + 0.587 * d[3 * p + 1] + 0.114 * d[3 * p + 2];
}

function blend(img: Img, other: (p: number) => number, f: number): Img {
  const d = new Float64Array(img.d.length);
  for (let p = 0; p < img.h * img.w; p++) {
    const o = other(p);
    for (let k = 0; k < img.c; k++) d[p * img.c + k] = clamp01(f * img.d[p * img.c + k] + (1 - f) * o);
  }
  return { ...img, d };
}

function rgbToHsv(r: number, g: number, b: number): [number, number, number] {
  const maxc = Math.max(r, g, b);
  const minc = Math.min(r, g, b);
  const eqc = maxc === minc;
  const cr = maxc - minc;
  const s = cr / (eqc ? 1 : maxc);
  const div = eqc ? 1 : cr;
  const rc = (maxc - r) / div;
  const gc = (maxc - g) / div;
  const bc = (maxc - b) / div;
  const hr = maxc === r ? bc - gc : 0;
  const hg = maxc === g && maxc !== r ? 2 + rc - bc : 0;
  const hb = maxc !== g && maxc !== r ? 4 + gc - rc : 0;
  const h = ((((hr + hg + hb) / 6 + 1) % 1) + 1) % 1;
  return [h, s, maxc];
}

function hsvToRgb(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = clamp01(v * (1 - s));
  const q = clamp01(v * (1 - s * f));
  const t = clamp01(v * (1 - s * (1 - f)));
  const r = [v, q, p, p, t, v];
  const g = [t, v, v, q, p, p];
  const b = [p, p, t, v, v, q];
  const k = ((i % 6) + 6) % 6;
  return [r[k], g[k], b[k]];
}

function colorOp(img: Img, op: number, s: SampleParams): Img {
  const n = img.h * img.w;
  switch (op) {
    case 0:
      return blend(img, () => 0, s.brightness);
    case 1: {
      let sum = 0;
      for (let p = 0; p < n; p++) sum += gray(img, p);
      const mean = sum / n;
      return blend(img, () => mean, s.contrast);
    }
    case 2:
      return img.c === 1 ? img : blend(img, (p) => gray(img, p), s.saturation);
    case 3: {
      if (img.c === 1) return img;
      const d = new Float64Array(img.d.length);
      for (let p = 0; p < n; p++) {
        const [h, sat, v] = rgbToHsv(img.d[3 * p], img.d[3 * p + 1], img.d[3 * p + 2]);
        const hh = (((h + s.hue) % 1) + 1) % 1;
        const rgb = hsvToRgb(hh, sat, v);
        d.set(rgb, 3 * p);
      }
      return { ...img, d };
    }
    default:
      return img;
  }
}

/**
 * The augmented batch for images[indices[b]] with samples[b], output outH x outW, normalised with
 * mean/std (first C values). `tieEps` bounds the rotation rounding ties flagged as ambiguous.
 */
export function refAugment(
  ds: RefImages,
  indices: ArrayLike<number>,
  samples: readonly SampleParams[],
  outH: number,
  outW: number,
  mean: readonly number[],
  std: readonly number[],
  tieEps = 1e-4,
): RefAugmentResult {
  const { height, width, channels } = ds;
  const per = height * width * channels;
  const B = indices.length;
  const data = new Float64Array(B * outH * outW * channels);
  const ambiguous = new Uint8Array(B * outH * outW);
  for (let b = 0; b < B; b++) {
    const s = samples[b];
    const bytes = ds.images.subarray(indices[b] * per, (indices[b] + 1) * per);
    let img: Img = { h: height, w: width, c: channels, d: Float64Array.from(bytes, (v) => v / 255) };
    img = geometry(img, s.geometry, outH, outW);
    if (s.flip) img = hflip(img);
    if (s.angle !== 0) img = rotate(img, s.angle, tieEps, ambiguous, b * outH * outW);
    for (const op of s.order) img = colorOp(img, op, s);
    if (s.grayscale && channels === 3) {
      const d = new Float64Array(img.d.length);
      for (let p = 0; p < outH * outW; p++) d.fill(gray(img, p), 3 * p, 3 * p + 3);
      img = { ...img, d };
    }
    for (let p = 0; p < outH * outW; p++) {
      for (let k = 0; k < channels; k++) {
        data[(b * outH * outW + p) * channels + k] = (img.d[p * channels + k] - mean[k]) / std[k];
      }
    }
  }
  return { data, ambiguous };
}
