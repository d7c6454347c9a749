/**
 * A folder of PNG/JPEG images as one data set.
 *
 * Layout (torchvision ImageFolder): one sub-folder per class, classes numbered in sorted name order,
 * files sorted by name inside each; or a flat folder of images (no labels). Image files are recognised
 * by extension (.png, .jpg, .jpeg, any case) and decoded by their content (PNG signature / JPEG SOI).
 *
 * Sizes: all images of a data set must have one size. `size` (or `height`/`width`) gives it; images of
 * another size are brought to it by `fit`:
 *   - 'resize-crop' (default): resize the shorter side to the target (bilinear, half-pixel centres, no
 *     antialiasing), then center-crop: torchvision's Resize(s) + CenterCrop(s), keeps the aspect ratio;
 *   - 'stretch': bilinear resize to height x width (aspect ratio not kept);
 *   - 'center-crop': center-crop without resizing, zero-padding images smaller than the target.
 * Without a size, every image must already have the size of the first one.
 * Channels: `channels` 1 or 3; by default 3 if any image is colour, else 1. Gray images become RGB by
 * replication; colour images become gray with ITU-R 601-2 luma (L = 0.299 R + 0.587 G + 0.114 B, as PIL).
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { checkDataset, type ImageDataset } from './dataset.ts';
import { checkFolder, listFolder, readRegularFile } from './files.ts';
import { decodePng, isPng, maxImagePixels, type DecodedImage } from './png.ts';
import { decodeJpeg, isJpeg } from './jpeg.ts';

export type FitMode = 'resize-crop' | 'stretch' | 'center-crop';

export interface ImageFolderOptions {
  size?: number;
  height?: number;
  width?: number;
  fit?: FitMode;
  channels?: 1 | 3;
  name?: string;
  /** Largest accepted width * height per image (default: ODC_MAX_IMAGE_PIXELS, else PIL's 89,478,485). */
  maxImagePixels?: number;
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;
/** What `odc prepare` reads when the native decoder (sharp) is there: also WebP, AVIF and TIFF. */
export const NATIVE_IMAGE_EXT = /\.(png|jpe?g|webp|avif|tiff?)$/i;

/** Decodes one PNG or JPEG file (by content; a regular file only); `maxPixels` as maxImagePixels. */
export function decodeImageFile(path: string, maxPixels?: number): DecodedImage {
  const bytes = readRegularFile(path, 'image file');
  if (bytes.length === 0) throw new Error(`${path}: the image file is empty (0 bytes): replace or remove it`);
  if (isPng(bytes)) return decodePng(bytes, path, maxPixels);
  if (isJpeg(bytes)) return decodeJpeg(bytes, path, maxPixels);
  throw new Error(
    `${path}: neither a PNG nor a JPEG file (unknown signature ${[...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ')}): replace or remove it`,
  );
}

/** Bilinear resize (align_corners=False, source index clamped to the edges), HWC bytes, rounded. */
export function resizeBilinear(img: DecodedImage, outH: number, outW: number): DecodedImage {
  const { width: w, height: h, channels: c, data } = img;
  const out = new Uint8Array(outH * outW * c);
  const sy = h / outH;
  const sx = w / outW;
  for (let y = 0; y < outH; y++) {
    const fy = Math.max((y + 0.5) * sy - 0.5, 0);
    const y0 = Math.min(Math.floor(fy), h - 1);
    const y1 = Math.min(y0 + 1, h - 1);
    const ly = fy - y0;
    for (let x = 0; x < outW; x++) {
      const fx = Math.max((x + 0.5) * sx - 0.5, 0);
      const x0 = Math.min(Math.floor(fx), w - 1);
      const x1 = Math.min(x0 + 1, w - 1);
      const lx = fx - x0;
      for (let k = 0; k < c; k++) {
        const v =
          (1 - ly) * ((1 - lx) * data[(y0 * w + x0) * c + k] + lx * data[(y0 * w + x1) * c + k]) +
          ly * ((1 - lx) * data[(y1 * w + x0) * c + k] + lx * data[(y1 * w + x1) * c + k]);
        out[(y * outW + x) * c + k] = Math.min(255, Math.max(0, Math.round(v)));
      }
    }
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/** Python's round(): halves to even (torchvision's CenterCrop offsets). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Center crop to outH x outW (torchvision's rounding of the offsets), zero padding where smaller. */
export function centerCrop(img: DecodedImage, outH: number, outW: number): DecodedImage {
  const { width: w, height: h, channels: c, data } = img;
  const top = roundHalfEven((h - outH) / 2);
  const left = roundHalfEven((w - outW) / 2);
  const out = new Uint8Array(outH * outW * c);
  for (let y = 0; y < outH; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= h) continue;
    for (let x = 0; x < outW; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= w) continue;
      for (let k = 0; k < c; k++) out[(y * outW + x) * c + k] = data[(sy * w + sx) * c + k];
    }
  }
  return { width: outW, height: outH, channels: c, data: out };
}

/** Brings an image to outH x outW by the given fit mode. */
export function fitImage(img: DecodedImage, outH: number, outW: number, fit: FitMode): DecodedImage {
  if (img.height === outH && img.width === outW) return img;
  if (fit === 'stretch') return resizeBilinear(img, outH, outW);
  if (fit === 'center-crop') return centerCrop(img, outH, outW);
  // Resize the shorter side so the image covers outH x outW, then crop (Resize(s) + CenterCrop).
  const scale = Math.max(outH / img.height, outW / img.width);
  const rh = Math.max(outH, Math.round(img.height * scale));
  const rw = Math.max(outW, Math.round(img.width * scale));
  return centerCrop(resizeBilinear(img, rh, rw), outH, outW);
}

/** The image's pixels with `channels` channels (gray replicated to RGB; RGB to ITU-R 601-2 luma). */
export function toChannels(img: DecodedImage, channels: 1 | 3): Uint8Array {
  if (img.channels === channels) return img.data;
  const n = img.width * img.height;
  const out = new Uint8Array(n * channels);
  if (channels === 3) {
    for (let p = 0; p < n; p++) out[3 * p] = out[3 * p + 1] = out[3 * p + 2] = img.data[p];
  } else {
    for (let p = 0; p < n; p++) {
      const d = img.data;
      out[p] = Math.round((d[3 * p] * 299 + d[3 * p + 1] * 587 + d[3 * p + 2] * 114) / 1000);
    }
  }
  return out;
}

/** True for a folder (following links); entries that cannot be looked at count as files, checked on read. */
function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The image names in a folder (by extension), sorted; errors name the folder when it has none. */
function listImages(dir: string, role: string, ext: RegExp): string[] {
  const names = listFolder(dir, role);
  const images = names.filter((f) => ext.test(f) && !isFolder(join(dir, f))).sort();
  if (images.length === 0) {
    const others = names.filter((f) => !f.startsWith('.'));
    throw new Error(
      others.length === 0
        ? `${dir}: the ${role} is empty: put .png/.jpg/.jpeg images into it`
        : `${dir}: the ${role} has no .png/.jpg/.jpeg images (only ${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''}): put images into it`,
    );
  }
  return images;
}

/** The image files of a folder in data-set order, with labels (-1 in a flat folder) and the class names. */
export interface FolderListing {
  files: Array<{ path: string; label: number }>;
  classes: string[];
}

/** Lists an image folder: class sub-folders (labelled, torchvision's order) or flat (unlabelled). */
export function listImageFolder(dir: string, ext: RegExp = IMAGE_EXT): FolderListing {
  checkFolder(dir, 'image folder', { howToGet: 'expected a folder of PNG/JPEG files, or of class sub-folders' });
  const names = listFolder(dir, 'image folder');
  const classes = names.filter((f) => isFolder(join(dir, f))).sort();
  const files: Array<{ path: string; label: number }> = [];
  if (classes.length > 0) {
    const topLevel = names.filter((f) => ext.test(f) && !isFolder(join(dir, f)));
    if (topLevel.length > 0) {
      throw new Error(
        `${dir}: has both class sub-folders (${classes.slice(0, 3).join(', ')}${classes.length > 3 ? ', ...' : ''}) and images at the top level (${topLevel[0]}, ...); use one layout`,
      );
    }
    // as torchvision's ImageFolder, a class folder without images is an error (its class could never be seen)
    classes.forEach((cls, label) => {
      for (const f of listImages(join(dir, cls), `class folder "${cls}"`, ext))
        files.push({ path: join(dir, cls, f), label });
    });
  } else {
    for (const f of listImages(dir, 'image folder', ext)) files.push({ path: join(dir, f), label: -1 });
  }
  return { files, classes };
}

/** Loads a folder of images: class sub-folders (labelled) or flat (unlabelled). */
export function loadImageFolder(dir: string, options: ImageFolderOptions = {}): ImageDataset {
  const { files, classes } = listImageFolder(dir);
  const fit = options.fit ?? 'resize-crop';
  const limit = maxImagePixels(options.maxImagePixels);
  const decoded = files.map((f) => decodeImageFile(f.path, limit));
  let outH = options.height ?? options.size;
  let outW = options.width ?? options.size;
  if (outH === undefined || outW === undefined) {
    const first = decoded[0];
    decoded.forEach((img, i) => {
      if (img.height !== first.height || img.width !== first.width) {
        throw new Error(
          `${files[i].path}: is ${img.width}x${img.height}, but ${files[0].path} is ${first.width}x${first.height}; pass a size to resize all images to one size`,
        );
      }
    });
    outH ??= first.height;
    outW ??= first.width;
  }
  const channels: 1 | 3 = options.channels ?? (decoded.some((d) => d.channels === 3) ? 3 : 1);
  const per = outH * outW * channels;
  const images = new Uint8Array(files.length * per);
  decoded.forEach((img, i) => images.set(toChannels(fitImage(img, outH, outW, fit), channels), i * per));
  const labelled = classes.length > 0;
  return checkDataset({
    name: options.name ?? dir.replace(/\/+$/, '').replace(/^.*\//, ''),
    n: files.length,
    height: outH,
    width: outW,
    channels,
    images,
    labels: labelled ? Int32Array.from(files, (f) => f.label) : null,
    numClasses: labelled ? classes.length : null,
    ids: files.map((f) => f.path),
  });
}
