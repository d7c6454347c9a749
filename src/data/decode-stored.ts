/**
 * Decoding one image file to its stored form for a pack: shorter side resized to `size`, centre-cropped
 * to size x size (FFCV's and torchvision's Resize + CenterCrop), `channels` channels, 8 bits. Two
 * decoders with the same contract:
 *   sharp (libvips, native, prebuilt for Linux/macOS/Windows): PNG, JPEG, WebP, AVIF, TIFF, GIF; EXIF
 *     orientation honoured; CMYK, 16-bit, palette and gray converted to 8-bit sRGB (or gray); resize with
 *     its default Lanczos-3 kernel (antialiased);
 *   js (this project's PNG decoder and jpeg-js, in src/data/image-folder.ts): PNG and JPEG, bilinear
 *     resize without antialiasing, EXIF orientation not read: the fallback where sharp does not load, and
 *     bit-identical to what `--data folder:DIR` loads in memory.
 * This file runs in prepare's worker threads and on the main thread (workers 0).
 */
import { decodeImageFile, fitImage, toChannels } from './image-folder.ts';

export type DecoderName = 'sharp' | 'js';

/** What one decode asks. */
export interface DecodeJob {
  path: string;
  /** Stored side (square); null keeps the image's own size (then every image must have the first one's). */
  size: number | null;
  channels: 1 | 3;
  maxPixels: number;
  decoder: DecoderName;
}

/** A decoded image in its stored form: width * height * channels bytes, HWC. */
export interface StoredImage {
  width: number;
  height: number;
  data: Uint8Array;
}

interface SharpChain {
  rotate(): SharpChain;
  resize(w: number, h: number, o: { fit: 'cover'; position: 'centre' }): SharpChain;
  removeAlpha(): SharpChain;
  toColourspace(space: string): SharpChain;
  raw(o: { depth: 'uchar' }): SharpChain;
  toBuffer(o: {
    resolveWithObject: true;
  }): Promise<{ data: Uint8Array; info: { width: number; height: number; channels: number } }>;
}
type SharpFactory = ((input: string, options: { limitInputPixels: number; failOn: 'warning' }) => SharpChain) & {
  concurrency(n: number): number;
};

let sharpModule: Promise<SharpFactory | null> | null = null;

/** The sharp module, or null where it does not load (not installed, no prebuilt binary for this platform). */
export function loadSharp(): Promise<SharpFactory | null> {
  sharpModule ??= import('sharp').then(
    (m: { default: unknown }) => m.default as SharpFactory,
    () => null,
  );
  return sharpModule;
}

/** Decodes `job.path` to its stored form; errors name the file. */
export async function decodeStored(job: DecodeJob): Promise<StoredImage> {
  if (job.decoder === 'sharp') {
    const sharp = await loadSharp();
    if (!sharp) throw new Error('the sharp decoder does not load here: use --decoder js');
    let chain = sharp(job.path, { limitInputPixels: job.maxPixels, failOn: 'warning' }).rotate();
    if (job.size !== null) chain = chain.resize(job.size, job.size, { fit: 'cover', position: 'centre' });
    chain = chain.removeAlpha().toColourspace(job.channels === 3 ? 'srgb' : 'b-w');
    try {
      const { data, info } = await chain.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels !== job.channels)
        throw new Error(`decoded to ${info.channels} channels, expected ${job.channels}`);
      return {
        width: info.width,
        height: info.height,
        data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      };
    } catch (err) {
      throw new Error(
        `${job.path}: cannot decode the image (${err instanceof Error ? err.message : String(err)}): replace or remove it`,
      );
    }
  }
  const img = decodeImageFile(job.path, job.maxPixels);
  const fitted = job.size === null ? img : fitImage(img, job.size, job.size, 'resize-crop');
  return { width: fitted.width, height: fitted.height, data: toChannels(fitted, job.channels) };
}
