/**
 * JPEG decoding through the npm package `jpeg-js` (pure JavaScript, no native code, so it works the same
 * under Node, Bun and Deno): baseline and progressive JPEG, gray or YCbCr/Adobe colour. Returns 8-bit gray
 * (1 channel) for single-component files, RGB otherwise.
 */
import { decode } from 'jpeg-js';
import { checkImagePixels, maxImagePixels, type DecodedImage } from './png.ts';

/** True when bytes start with the JPEG SOI marker. */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * The width and height of the first start-of-frame marker, read from the segment headers without
 * decoding, or null when the file ends before one (the decoder then reports the damage).
 */
export function jpegFrameSize(bytes: Uint8Array): { width: number; height: number } | null {
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) return null;
    const marker = bytes[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2; // markers without a length
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null; // scan data or end before any frame header
    const length = (bytes[pos + 2] << 8) | bytes[pos + 3];
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      if (pos + 9 > bytes.length) return null;
      return { height: (bytes[pos + 5] << 8) | bytes[pos + 6], width: (bytes[pos + 7] << 8) | bytes[pos + 8] };
    }
    pos += 2 + length;
  }
  return null;
}

/** Decodes a JPEG file's bytes; `file` names it in error messages; `maxPixels` as maxImagePixels. */
export function decodeJpeg(bytes: Uint8Array, file = 'JPEG data', maxPixels?: number): DecodedImage {
  if (!isJpeg(bytes)) throw new Error(`${file}: not a JPEG file (no SOI marker)`);
  const limit = maxImagePixels(maxPixels);
  const frame = jpegFrameSize(bytes);
  if (frame) checkImagePixels(frame.width, frame.height, file, limit);
  let img: { width: number; height: number; data: Uint8Array };
  try {
    // the decoder's own limits back up the header check (a frame size hidden behind a damaged segment)
    img = decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024, maxResolutionInMP: limit / 1e6 });
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
