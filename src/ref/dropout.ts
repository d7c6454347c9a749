/**
 * CPU reference for dropout (src/ops/dropout.ts): the same counter-based hash as shaders/dropout.wgsl,
 * in u32 arithmetic (Math.imul, >>> 0), so tests can compare masks exactly.
 */
import { refArray, type RefArray } from './array.ts';

function mix32(v: number): number {
  let x = v >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** The 32-bit hash of (seed, index) that decides element `index`'s fate. */
export function dropoutHash(seed: number, index: number): number {
  const key = mix32((seed ^ 0x9e3779b9) >>> 0);
  return mix32((mix32((index ^ key) >>> 0) + key) >>> 0);
}

/** 1 where element i is kept (hash >= floor(p·2^32)), 0 where it is dropped. */
export function dropoutMask(seed: number, n: number, p: number): Uint8Array {
  const threshold = Math.min(Math.floor(p * 2 ** 32), 0xffffffff);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = dropoutHash(seed, i) >= threshold ? 1 : 0;
  return mask;
}

/** Inverted dropout of x in training mode (also its own backward: apply it to the gradient). */
export function refDropout(x: RefArray, p: number, seed: number): RefArray {
  const mask = dropoutMask(seed, x.data.length, p);
  const scale = p === 1 ? 0 : 1 / (1 - p);
  const out = refArray(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = mask[i] ? x.data[i] * scale : 0;
  return out;
}
