/**
 * JPEG decoding through the npm package `jpeg-js` (pure JavaScript, no native code, so it works the same
 * under Node, Bun and Deno): baseline and progressive JPEG, gray or YCbCr/Adobe colour. Returns 8-bit gray
 * (1 channel) for single-component files, RGB otherwise.
 */
import { decode } from 'jpeg-js';
import type { DecodedImage } from './png.ts';

/** True when bytes start with the JPEG SOI marker. */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Decodes a JPEG file's bytes; `file` names it in error messages. */
export function decodeJpeg(bytes: Uint8Array, file = 'JPEG data'): DecodedImage {
  if (!isJpeg(bytes)) throw new Error(`${file}: not a JPEG file (no SOI marker)`);
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
  } catch (err) {
    throw new Error(`${file}: corrupt or unsupported JPEG (${(err as Error).message})`);
  }
  const { width, height, data } = img;
  if (!(width > 0 && height > 0) || data.length !== width * height * 4) throw new Error(`${file}: corrupt JPEG (decoded ${width}x${height} with ${data.length} bytes)`);
  let gray = true;
  for (let p = 0; p < width * height && gray; p++) gray = data[4 * p] === data[4 * p + 1] && data[4 * p] === data[4 * p + 2];
  const channels: 1 | 3 = gray ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < channels; c++) out[p * channels + c] = data[4 * p + c];
  }
  return { width, height, channels, data: out };
}
