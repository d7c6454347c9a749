/**
 * A PNG decoder (ISO/IEC 15948): signature, chunk CRCs, IHDR/PLTE/IDAT/IEND, zlib inflate (node:zlib),
 * the five row filters, Adam7 interlacing, bit depths 1/2/4/8/16 and colour types gray, RGB, palette,
 * gray+alpha and RGBA. The result is 8-bit gray (1 channel) or RGB (3 channels): alpha is dropped as
 * PIL's convert('RGB') does (torchvision's image-folder loader), palette images become RGB, 16-bit
 * samples are scaled to 8 bits with round(v * 255 / 65535), and 1/2/4-bit gray is scaled to 0..255.
 * Ancillary chunks are skipped (their CRC is still checked). Errors name the file and the problem.
 * Against decompression bombs (as PIL's MAX_IMAGE_PIXELS), the size declared in IHDR is checked against a
 * pixel limit before anything is allocated, and inflate may produce at most the bytes that size needs.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { crc32 } from '../util/crc32.ts';

export interface DecodedImage {
  width: number;
  height: number;
  channels: 1 | 3;
  /** height * width * channels bytes, HWC. */
  data: Uint8Array;
}

/** PIL's default Image.MAX_IMAGE_PIXELS: 1024 * 1024 * 1024 // 4 // 3 pixels. */
export const DEFAULT_MAX_IMAGE_PIXELS = 89_478_485;

/**
 * The largest image (width * height pixels) the decoders accept: `override` when given, else the
 * environment variable ODC_MAX_IMAGE_PIXELS, else DEFAULT_MAX_IMAGE_PIXELS.
 */
export function maxImagePixels(override?: number): number {
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env
    .ODC_MAX_IMAGE_PIXELS;
  const [value, source] =
    override !== undefined
      ? [override, 'maxImagePixels']
      : env !== undefined && env !== ''
        ? [Number(env), 'ODC_MAX_IMAGE_PIXELS']
        : [DEFAULT_MAX_IMAGE_PIXELS, ''];
  if (!Number.isSafeInteger(value) || value < 1)
    throw new RangeError(`${source} must be a positive whole number of pixels, got "${String(override ?? env)}"`);
  return value;
}

/** Throws a clear error when a declared width x height exceeds the pixel limit. */
export function checkImagePixels(width: number, height: number, file: string, limit: number): void {
  if (width * height > limit) {
    throw new Error(
      `${file}: declares ${width}x${height} = ${width * height} pixels, over the limit of ${limit} (a decompression bomb or a corrupt header); ` +
        'if the image is genuine, raise the limit with the environment variable ODC_MAX_IMAGE_PIXELS',
    );
  }
}

/** Bytes inflate may yield beyond what the header needs (some encoders leave a little trailing data). */
const INFLATE_SLACK = 4096;

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** CRC-32 (the PNG/zlib polynomial) of bytes[start, end). */
export { crc32 };

/** True when bytes start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

const CHANNELS_OF: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS_OF: Record<number, number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

// Adam7 passes: [x0, y0, dx, dy]
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decodes a PNG file's bytes; `file` is used in error messages; `maxPixels` as maxImagePixels. */
export function decodePng(bytes: Uint8Array, file = 'PNG data', maxPixels?: number): DecodedImage {
  const pixelLimit = maxImagePixels(maxPixels);
  const fail = (msg: string): never => {
    throw new Error(`${file}: ${msg}`);
  };
  if (!isPng(bytes)) fail('not a PNG file (bad signature)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let width = 0;
  let height = 0;
  let depth = 0;
  let colorType = -1;
  let interlace = 0;
  let palette: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  let ended = false;
  while (!ended) {
    if (pos + 8 > bytes.length) fail(`truncated: no IEND chunk (file ends at byte ${bytes.length})`);
    const length = view.getUint32(pos);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    const dataStart = pos + 8;
    const dataEnd = dataStart + length;
    if (length > 0x7fffffff || dataEnd + 4 > bytes.length)
      fail(
        `truncated: chunk ${type} at byte ${pos} needs ${length} data bytes + CRC, the file ends at byte ${bytes.length}`,
      );
    const stored = view.getUint32(dataEnd);
    const actual = crc32(bytes, pos + 4, dataEnd);
    if (stored !== actual)
      fail(
        `bad CRC in chunk ${type} at byte ${pos} (stored 0x${stored.toString(16)}, computed 0x${actual.toString(16)}): corrupt file`,
      );
    const data = bytes.subarray(dataStart, dataEnd);
    if (pos === 8 && type !== 'IHDR') fail(`first chunk is ${type}, expected IHDR`);
    switch (type) {
      case 'IHDR': {
        if (length !== 13) fail(`IHDR has ${length} bytes, expected 13`);
        width = view.getUint32(dataStart);
        height = view.getUint32(dataStart + 4);
        depth = data[8];
        colorType = data[9];
        interlace = data[12];
        if (width === 0 || height === 0) fail(`empty image ${width}x${height}`);
        if (!(colorType in CHANNELS_OF)) fail(`unknown colour type ${colorType}`);
        if (!DEPTHS_OF[colorType].includes(depth))
          fail(`bit depth ${depth} is not allowed for colour type ${colorType}`);
        if (data[10] !== 0 || data[11] !== 0) fail(`unknown compression (${data[10]}) or filter method (${data[11]})`);
        if (interlace > 1) fail(`unknown interlace method ${interlace}`);
        checkImagePixels(width, height, file, pixelLimit);
        break;
      }
      case 'PLTE':
        if (length % 3 !== 0 || length === 0 || length > 768)
          fail(`PLTE has ${length} bytes (must be 3..768, a multiple of 3)`);
        palette = data;
        break;
      case 'IDAT':
        idat.push(data);
        break;
      case 'IEND':
        ended = true;
        break;
      default:
        if ((bytes[pos + 4] & 0x20) === 0) fail(`unknown critical chunk ${type}`);
    }
    pos = dataEnd + 4;
  }
  if (idat.length === 0) fail('no IDAT chunk (no image data)');
  if (colorType === 3 && !palette) fail('palette image without a PLTE chunk');

  const total = idat.reduce((s, d) => s + d.length, 0);
  const compressed = new Uint8Array(total);
  let off = 0;
  for (const d of idat) {
    compressed.set(d, off);
    off += d.length;
  }
  const samplesPerPixel = CHANNELS_OF[colorType];
  const bitsPerPixel = samplesPerPixel * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3); // filter byte distance
  const passes = interlace === 1 ? ADAM7 : ([[0, 0, 1, 1]] as const);
  let needed = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw > 0 && ph > 0) needed += ph * (Math.ceil((pw * bitsPerPixel) / 8) + 1);
  }
  let raw: Uint8Array;
  try {
    raw = new Uint8Array(inflateSync(compressed, { maxOutputLength: needed + INFLATE_SLACK }));
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      return fail(
        `the compressed image data inflates to more than the ${needed} bytes a ${width}x${height} image needs (a decompression bomb or a corrupt file)`,
      );
    }
    return fail(`corrupt or truncated compressed image data (${(err as Error).message})`);
  }

  // samples[i] holds the full-resolution sample values (0..2^depth-1), samplesPerPixel per pixel.
  const samples = new Uint16Array(width * height * samplesPerPixel);
  let cursor = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * bitsPerPixel) / 8);
    const need = ph * (rowBytes + 1);
    if (cursor + need > raw.length)
      fail(`image data too short: ${raw.length} bytes after inflate, ${width}x${height} needs more (truncated)`);
    let prev: Uint8Array = new Uint8Array(rowBytes);
    for (let y = 0; y < ph; y++) {
      const filterType = raw[cursor];
      const row = raw.subarray(cursor + 1, cursor + 1 + rowBytes);
      cursor += rowBytes + 1;
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? row[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        let v: number;
        switch (filterType) {
          case 0:
            v = row[i];
            break;
          case 1:
            v = row[i] + a;
            break;
          case 2:
            v = row[i] + b;
            break;
          case 3:
            v = row[i] + ((a + b) >> 1);
            break;
          case 4:
            v = row[i] + paeth(a, b, c);
            break;
          default:
            return fail(`unknown filter type ${filterType} in row ${y}`);
        }
        row[i] = v & 0xff;
      }
      prev = row;
      const yy = y0 + y * dy;
      for (let x = 0; x < pw; x++) {
        const xx = x0 + x * dx;
        const dst = (yy * width + xx) * samplesPerPixel;
        for (let s = 0; s < samplesPerPixel; s++) {
          const k = x * samplesPerPixel + s;
          let v: number;
          if (depth === 8) v = row[k];
          else if (depth === 16) v = (row[2 * k] << 8) | row[2 * k + 1];
          else {
            const bit = k * depth;
            v = (row[bit >> 3] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
          }
          samples[dst + s] = v;
        }
      }
    }
  }

  const gray = colorType === 0 || colorType === 4;
  const channels: 1 | 3 = gray ? 1 : 3;
  const out = new Uint8Array(width * height * channels);
  const maxv = (1 << depth) - 1;
  const to8 = (v: number): number => (depth === 8 ? v : Math.round((v * 255) / maxv));
  for (let p = 0; p < width * height; p++) {
    const s = p * samplesPerPixel;
    if (colorType === 3) {
      const idx = samples[s];
      if (3 * idx + 2 >= palette!.length)
        fail(`pixel ${p} uses palette entry ${idx}, the palette has ${palette!.length / 3}`);
      out[3 * p] = palette![3 * idx];
      out[3 * p + 1] = palette![3 * idx + 1];
      out[3 * p + 2] = palette![3 * idx + 2];
    } else if (gray) {
      out[p] = to8(samples[s]);
    } else {
      out[3 * p] = to8(samples[s]);
      out[3 * p + 1] = to8(samples[s + 1]);
      out[3 * p + 2] = to8(samples[s + 2]);
    }
  }
  return { width, height, channels, data: out };
}

// ---------------------------------------------------------------------------------------------------
// A minimal encoder (8-bit, any colour type, one filter type per image or cycling per row): tests write
// PNG fixtures with it. Not used for loading.

export interface EncodeOptions {
  colorType?: 0 | 2 | 3 | 4 | 6;
  /** Filter type for every row, or 'cycle' to use 0..4 in turn (exercises every filter). */
  filter?: 0 | 1 | 2 | 3 | 4 | 'cycle';
  palette?: Uint8Array;
}

/** One PNG chunk: length, type, data and the CRC-32 of type + data (the encoder's, and tests' crafted files). */
export function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  v.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

/** Encodes width x height pixels given as raw samples for the colour type (8-bit). */
export function encodePng(width: number, height: number, pixels: Uint8Array, options: EncodeOptions = {}): Uint8Array {
  const colorType = options.colorType ?? 2;
  const spp = CHANNELS_OF[colorType];
  const rowBytes = width * spp;
  if (pixels.length !== rowBytes * height)
    throw new RangeError(`encodePng: ${pixels.length} bytes for ${width}x${height}x${spp}`);
  const filtered = new Uint8Array(height * (rowBytes + 1));
  for (let y = 0; y < height; y++) {
    const f = options.filter === 'cycle' ? y % 5 : (options.filter ?? 0);
    filtered[y * (rowBytes + 1)] = f;
    for (let i = 0; i < rowBytes; i++) {
      const x = pixels[y * rowBytes + i];
      const a = i >= spp ? pixels[y * rowBytes + i - spp] : 0;
      const b = y > 0 ? pixels[(y - 1) * rowBytes + i] : 0;
      const c = i >= spp && y > 0 ? pixels[(y - 1) * rowBytes + i - spp] : 0;
      const pred = f === 0 ? 0 : f === 1 ? a : f === 2 ? b : f === 3 ? (a + b) >> 1 : paeth(a, b, c);
      filtered[y * (rowBytes + 1) + 1 + i] = (x - pred) & 0xff;
    }
  }
  return assemblePng({ width, height, depth: 8, colorType, interlace: 0 }, filtered, options.palette);
}

export interface PngHeader {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlace: 0 | 1;
}

/**
 * A PNG file from a header and the already-filtered scanlines (filter byte + row bytes, pass after pass
 * when interlaced): tests build 16-bit, sub-byte and interlaced files with it.
 */
export function assemblePng(header: PngHeader, filtered: Uint8Array, palette?: Uint8Array): Uint8Array {
  const ihdr = new Uint8Array(13);
  const hv = new DataView(ihdr.buffer);
  hv.setUint32(0, header.width);
  hv.setUint32(4, header.height);
  ihdr[8] = header.depth;
  ihdr[9] = header.colorType;
  ihdr[12] = header.interlace;
  const parts = [Uint8Array.from(SIGNATURE), pngChunk('IHDR', ihdr)];
  if (header.colorType === 3) parts.push(pngChunk('PLTE', palette ?? new Uint8Array(768)));
  // two IDAT chunks: decoders must concatenate them
  const z = new Uint8Array(deflateSync(filtered));
  const cut = z.length >> 1;
  parts.push(
    pngChunk('IDAT', z.subarray(0, cut)),
    pngChunk('IDAT', z.subarray(cut)),
    pngChunk('IEND', new Uint8Array(0)),
  );
  return concatBytes(parts);
}

/** The byte arrays one after another in one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
