/**
 * JPEG decoding through the npm package `jpeg-js` (pure JavaScript, no native code, so it works the same
 * under Node, Bun and Deno): baseline and progressive JPEG, gray or YCbCr/Adobe colour. Returns 8-bit gray
 * (1 channel) for single-component files, RGB otherwise, turned upright by the EXIF orientation tag (as
 * phones store photos; sharp's rotate() and PIL's exif_transpose do the same).
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
    img = decode(bytes, {
      useTArray: true,
      formatAsRGBA: true,
      maxMemoryUsageInMB: 1024,
      maxResolutionInMP: limit / 1e6,
    });
  } catch (err) {
    throw new Error(`${file}: corrupt or unsupported JPEG (${(err as Error).message})`);
  }
  const { width, height, data } = img;
  if (!(width > 0 && height > 0) || data.length !== width * height * 4)
    throw new Error(`${file}: corrupt JPEG (decoded ${width}x${height} with ${data.length} bytes)`);
  let gray = true;
  for (let p = 0; p < width * height && gray; p++)
    gray = data[4 * p] === data[4 * p + 1] && data[4 * p] === data[4 * p + 2];
  const channels: 1 | 3 = gray ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < channels; c++) out[p * channels + c] = data[4 * p + c];
  }
  return orientImage({ width, height, channels, data: out }, jpegOrientation(bytes));
}

/** The EXIF orientation (1..8) of a JPEG's APP1 segment, 1 when it has none or it cannot be read. */
export function jpegOrientation(bytes: Uint8Array): number {
  let pos = 2;
  while (pos + 4 <= bytes.length && bytes[pos] === 0xff) {
    const marker = bytes[pos + 1];
    if (marker === 0xda || marker === 0xd9) return 1;
    const length = (bytes[pos + 2] << 8) | bytes[pos + 3];
    const body = pos + 4;
    const exif = marker === 0xe1 && length >= 16 && String.fromCharCode(...bytes.subarray(body, body + 4)) === 'Exif';
    if (exif) {
      const tiff = body + 6;
      const end = Math.min(bytes.length, pos + 2 + length);
      const little = bytes[tiff] === 0x49;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const u16 = (at: number): number => (at + 2 <= end ? view.getUint16(at, little) : 0);
      const u32 = (at: number): number => (at + 4 <= end ? view.getUint32(at, little) : 0);
      const ifd = tiff + u32(tiff + 4);
      const count = u16(ifd);
      for (let i = 0; i < count; i++) {
        const entry = ifd + 2 + 12 * i;
        if (u16(entry) === 0x0112) {
          const o = u16(entry + 8);
          return o >= 1 && o <= 8 ? o : 1;
        }
      }
      return 1;
    }
    pos += 2 + length;
  }
  return 1;
}

/** The image as displayed under EXIF orientation `o` (2-4 mirror/rotate in place, 5-8 swap the sides). */
export function orientImage(img: DecodedImage, o: number): DecodedImage {
  if (o <= 1 || o > 8) return img;
  const { width: w, height: h, channels: c, data } = img;
  const swap = o >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // the stored pixel shown at (x, y)
      const [sx, sy] =
        o === 2
          ? [w - 1 - x, y]
          : o === 3
            ? [w - 1 - x, h - 1 - y]
            : o === 4
              ? [x, h - 1 - y]
              : o === 5
                ? [y, x]
                : o === 6
                  ? [y, h - 1 - x]
                  : o === 7
                    ? [w - 1 - y, h - 1 - x]
                    : [w - 1 - y, x];
      for (let k = 0; k < c; k++) out[(y * ow + x) * c + k] = data[(sy * w + sx) * c + k];
    }
  }
  return { width: ow, height: oh, channels: c, data: out };
}
