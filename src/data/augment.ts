/**
 * GPU data augmentation (spec 3.1): the images are on the GPU (uploaded once, or a batch at a time when
 * they stream from a source; see GpuAugmenter); each call turns a batch of image indices into an augmented, normalised NHWC f32 batch [B, outH, outW, C] with one kernel launch
 * (shaders/augment.wgsl), plus a small per-sample reduction before it when contrast jitter needs each
 * image's mean grayscale (and one launch of each per image buffer when the images need several). The
 * random parameters of each sample are drawn on the host from a seeded Rng (`sampleParams`) and uploaded
 * as a small buffer, so a batch is reproducible from the generator state.
 *
 * Semantics: torchvision's transforms applied to a float image in [0, 1] (tensor semantics: every colour
 * op clamps to [0, 1]; nothing is rounded to 8 bits between ops, unlike PIL images), in this order:
 *   RandomResizedCrop(out, scale, ratio, bilinear) - RandomHorizontalFlip(p) - RandomRotation(deg,
 *   nearest, black fill, no expand) - ColorJitter(b, c, s, h; the four ops in a random order per sample)
 *   - RandomGrayscale(p) - Normalize(mean, std).
 * Deviation: the resize is plain bilinear (align_corners=False) without torchvision's antialiasing.
 * For crops upscaled to the output (CIFAR, MNIST: the crop is never larger than the output) the two are
 * identical; for crops shrunk by a large factor (ImageNet-sized photos) antialiasing would blur more.
 * Gray (1-channel) data sets: saturation, hue and grayscale are the identity (as in torchvision).
 *
 * Eval mode (`extract`): Resize(evalResize) on the shorter side + CenterCrop(out) + Normalize, no
 * randomness.
 *
 * Memory: the images are stored as bytes (4 per u32) in storage buffers ("shards") of at most
 * maxStorageBufferBindingSize bytes each (128 MiB on lavapipe and most GPUs), whole images per buffer,
 * one kernel launch per shard: e.g. 60,000 x 28 x 28 = 47 MB is one buffer, CIFAR-10's 50,000 x 32 x 32 x 3
 * = 154 MB two. At most MAX_SHARDS (8, i.e. 1 GiB at 128 MiB each); larger data sets, and sources that
 * do not hold their images in memory (packed files), stream instead: one staging buffer per batch.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { augment as kernels } from '../kernels/augment.ts';
import { keep } from '../tensor/scope.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';
import { imageBytes, type ImageDataset } from './dataset.ts';
import { asSource, type ImageSource } from './source.ts';

export interface CropConfig {
  /** Range of the crop's area as a fraction of the image's. */
  scale: readonly [number, number];
  /** Range of the crop's aspect ratio width / height (sampled log-uniformly). */
  ratio: readonly [number, number];
}

export interface JitterConfig {
  /** Factor uniform in [max(0, 1 - b), 1 + b]; 0 disables. */
  brightness: number;
  contrast: number;
  saturation: number;
  /** Shift uniform in [-h, h] (h <= 0.5); 0 disables. */
  hue: number;
}

export interface AugmentConfig {
  outHeight: number;
  outWidth: number;
  /** RandomResizedCrop; null: the eval geometry (resize + center crop) also in training. */
  crop: CropConfig | null;
  flipP: number;
  /** Uniform angle in [-deg, deg]; 0 disables. */
  rotationDeg: number;
  jitter: JitterConfig | null;
  grayscaleP: number;
  /** Per channel (the first C are used). */
  mean: readonly number[];
  std: readonly number[];
  /** Eval: the shorter side is resized to this before the center crop. */
  evalResize: number;
}

/** Jitter op codes, in the order of torchvision's ColorJitter.fn_idx values. */
export const OP_BRIGHTNESS = 0;
export const OP_CONTRAST = 1;
export const OP_SATURATION = 2;
export const OP_HUE = 3;
export const OP_NONE = 4;

export type Geometry =
  /** A crop of the source image, resized to the output (RandomResizedCrop). */
  | { kind: 'crop'; top: number; left: number; height: number; width: number }
  /** Resize the whole image to height x width, then crop the output at (top, left) (eval). */
  | { kind: 'resize-crop'; height: number; width: number; top: number; left: number };

/** The random choices for one sample: everything the kernel (and the CPU reference) needs. */
export interface SampleParams {
  geometry: Geometry;
  flip: boolean;
  /** Degrees, counter-clockwise as torchvision's rotate. */
  angle: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
  /** Jitter ops to apply in this order (codes OP_*), disabled ops left out. */
  order: number[];
  grayscale: boolean;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

/** ODC's ImageNet training augmentation (spec 3.1); eval = Resize 256 + CenterCrop 224. */
export function imagenetPreset(overrides: Partial<AugmentConfig> = {}): AugmentConfig {
  return {
    outHeight: 224,
    outWidth: 224,
    crop: { scale: [0.08, 1], ratio: [3 / 4, 4 / 3] },
    flipP: 0.5,
    rotationDeg: 2,
    jitter: { brightness: 0.4, contrast: 0.4, saturation: 1.0, hue: 0.5 },
    grayscaleP: 0.2,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    evalResize: 256,
    ...overrides,
  };
}

/** The spec 3.1 values at CIFAR's 32x32 (eval: the 32x32 image itself). */
export function cifarPreset(overrides: Partial<AugmentConfig> = {}): AugmentConfig {
  return imagenetPreset({ outHeight: 32, outWidth: 32, evalResize: 32, ...overrides });
}

/**
 * Grayscale digits (MNIST, Fashion-MNIST): only what keeps a digit a digit: a mild random resized crop
 * (scale 0.6..1, ratio 0.8..1.25), rotation within +-10 degrees, brightness and contrast jitter 0.4,
 * no flip, no saturation/hue/grayscale; normalised with MNIST's mean 0.1307 and std 0.3081.
 */
export function mnistPreset(overrides: Partial<AugmentConfig> = {}): AugmentConfig {
  return {
    outHeight: 28,
    outWidth: 28,
    crop: { scale: [0.6, 1], ratio: [0.8, 1.25] },
    flipP: 0,
    rotationDeg: 10,
    jitter: { brightness: 0.4, contrast: 0.4, saturation: 0, hue: 0 },
    grayscaleP: 0,
    mean: [0.1307],
    std: [0.3081],
    evalResize: 28,
    ...overrides,
  };
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One sample's random choices as plain numbers, in a record reused from sample to sample: the training path draws
 * a batch through one record straight into the kernel's parameter block, with no object per sample (issue 9: the
 * objects were a third of a resnet18 step's allocations); `sampleParams` turns records into SampleParams.
 */
class SampleDraw {
  /** The geometry: a crop (RandomResizedCrop) or a resize + crop (eval), with Geometry's fields. */
  crop = true;
  top = 0;
  left = 0;
  height = 0;
  width = 0;
  flip = false;
  angle = 0;
  brightness = 1;
  contrast = 1;
  saturation = 1;
  hue = 0;
  /** The jitter ops to apply, order[0..ops). */
  readonly order = [OP_NONE, OP_NONE, OP_NONE, OP_NONE];
  ops = 0;
  grayscale = false;
  /** Scratch for the shuffle of the jitter order. */
  readonly perm = [OP_BRIGHTNESS, OP_CONTRAST, OP_SATURATION, OP_HUE];

  setGeometry(g: Geometry): void {
    this.crop = g.kind === 'crop';
    this.top = g.top;
    this.left = g.left;
    this.height = g.height;
    this.width = g.width;
  }

  geometry(): Geometry {
    const { top, left, height, width } = this;
    return this.crop ? { kind: 'crop', top, left, height, width } : { kind: 'resize-crop', height, width, top, left };
  }

  /** The record of given parameters (a jitter order beyond 4 ops is cut, as the kernel reads 4). */
  setParams(s: SampleParams): void {
    this.setGeometry(s.geometry);
    this.flip = s.flip;
    this.angle = s.angle;
    this.brightness = s.brightness;
    this.contrast = s.contrast;
    this.saturation = s.saturation;
    this.hue = s.hue;
    this.ops = Math.min(s.order.length, 4);
    for (let k = 0; k < this.ops; k++) this.order[k] = s.order[k];
    this.grayscale = s.grayscale;
  }

  params(): SampleParams {
    return {
      geometry: this.geometry(),
      flip: this.flip,
      angle: this.angle,
      brightness: this.brightness,
      contrast: this.contrast,
      saturation: this.saturation,
      hue: this.hue,
      order: this.order.slice(0, this.ops),
      grayscale: this.grayscale,
    };
  }

  get hasContrast(): boolean {
    for (let k = 0; k < this.ops; k++) if (this.order[k] === OP_CONTRAST) return true;
    return false;
  }
}

/** torchvision RandomResizedCrop.get_params: 10 attempts, then a center crop within the ratio range. */
export function sampleCrop(rng: Rng, height: number, width: number, crop: CropConfig): Geometry {
  const d = new SampleDraw();
  drawCrop(rng, height, width, crop, d);
  return d.geometry();
}

/** sampleCrop into a record. */
function drawCrop(rng: Rng, height: number, width: number, crop: CropConfig, d: SampleDraw): void {
  d.crop = true;
  const area = height * width;
  const logLo = Math.log(crop.ratio[0]);
  const logHi = Math.log(crop.ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.range(crop.scale[0], crop.scale[1]);
    const aspect = Math.exp(rng.range(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      d.top = rng.int(height - h + 1);
      d.left = rng.int(width - w + 1);
      d.height = h;
      d.width = w;
      return;
    }
  }
  const inRatio = width / height;
  const lo = Math.min(crop.ratio[0], crop.ratio[1]);
  const hi = Math.max(crop.ratio[0], crop.ratio[1]);
  let w = width;
  let h = height;
  if (inRatio < lo) h = roundHalfEven(w / lo);
  else if (inRatio > hi) w = roundHalfEven(h * hi);
  d.top = Math.floor((height - h) / 2);
  d.left = Math.floor((width - w) / 2);
  d.height = h;
  d.width = w;
}

/** Eval geometry: torchvision Resize(size) on the shorter side, then CenterCrop(outH, outW). */
export function evalGeometry(height: number, width: number, config: AugmentConfig): Geometry {
  const r = config.evalResize;
  let rh: number;
  let rw: number;
  if (height <= width) {
    rh = r;
    rw = Math.floor((r * width) / height);
  } else {
    rw = r;
    rh = Math.floor((r * height) / width);
  }
  if (rh < config.outHeight || rw < config.outWidth) {
    throw new RangeError(
      `augment: evalResize ${r} makes a ${rw}x${rh} image, smaller than the ${config.outWidth}x${config.outHeight} output`,
    );
  }
  return {
    kind: 'resize-crop',
    height: rh,
    width: rw,
    top: roundHalfEven((rh - config.outHeight) / 2),
    left: roundHalfEven((rw - config.outWidth) / 2),
  };
}

/** Whether jitter op `op` (OP_*) is enabled. */
function jitterEnabled(j: JitterConfig, op: number): boolean {
  return (
    (op === OP_BRIGHTNESS
      ? j.brightness
      : op === OP_CONTRAST
        ? j.contrast
        : op === OP_SATURATION
          ? j.saturation
          : j.hue) > 0
  );
}

/**
 * Draws one sample's random parameters from rng into `d`, in a fixed order: crop (2 uniforms per attempt, 2
 * integers when one fits; `fixed`, the eval geometry, without a crop config), flip (1 if flipP > 0), angle (1 if
 * rotationDeg > 0), jitter order (a Fisher-Yates shuffle of 4) and factors (1 per enabled op), grayscale (1 if p > 0).
 */
function drawSample(
  rng: Rng,
  height: number,
  width: number,
  config: AugmentConfig,
  fixed: Geometry | null,
  d: SampleDraw,
): void {
  if (config.crop) drawCrop(rng, height, width, config.crop, d);
  else d.setGeometry(fixed!);
  d.flip = config.flipP > 0 ? rng.uniform() < config.flipP : false;
  d.angle = config.rotationDeg > 0 ? rng.range(-config.rotationDeg, config.rotationDeg) : 0;
  d.brightness = 1;
  d.contrast = 1;
  d.saturation = 1;
  d.hue = 0;
  d.ops = 0;
  const j = config.jitter;
  if (j) {
    const perm = d.perm;
    perm[0] = OP_BRIGHTNESS;
    perm[1] = OP_CONTRAST;
    perm[2] = OP_SATURATION;
    perm[3] = OP_HUE;
    rng.shuffle(perm);
    if (j.brightness > 0) d.brightness = rng.range(Math.max(0, 1 - j.brightness), 1 + j.brightness);
    if (j.contrast > 0) d.contrast = rng.range(Math.max(0, 1 - j.contrast), 1 + j.contrast);
    if (j.saturation > 0) d.saturation = rng.range(Math.max(0, 1 - j.saturation), 1 + j.saturation);
    if (j.hue > 0) d.hue = rng.range(-j.hue, j.hue);
    for (let k = 0; k < 4; k++) if (jitterEnabled(j, perm[k])) d.order[d.ops++] = perm[k];
  }
  d.grayscale = config.grayscaleP > 0 ? rng.uniform() < config.grayscaleP : false;
}

/** The random parameters of `count` samples (drawn as `drawSample` says). */
export function sampleParams(
  rng: Rng,
  count: number,
  height: number,
  width: number,
  config: AugmentConfig,
): SampleParams[] {
  const fixed = config.crop ? null : evalGeometry(height, width, config);
  const d = new SampleDraw();
  const out: SampleParams[] = [];
  for (let i = 0; i < count; i++) {
    drawSample(rng, height, width, config, fixed, d);
    out.push(d.params());
  }
  return out;
}

/** The eval parameters (no randomness) of `count` samples. */
export function evalParams(count: number, height: number, width: number, config: AugmentConfig): SampleParams[] {
  const geometry = evalGeometry(height, width, config);
  return Array.from({ length: count }, () => ({
    geometry,
    flip: false,
    angle: 0,
    brightness: 1,
    contrast: 1,
    saturation: 1,
    hue: 0,
    order: [],
    grayscale: false,
  }));
}

export const PARAM_STRIDE = 24;

/** Packs sample parameters into the kernel's per-sample float block (see shaders/augment.wgsl). */
export function encodeParams(
  samples: readonly SampleParams[],
  srcH: number,
  srcW: number,
  outH: number,
  outW: number,
): Float32Array {
  const out = new Float32Array(samples.length * PARAM_STRIDE);
  const d = new SampleDraw();
  for (let b = 0; b < samples.length; b++) {
    d.setParams(samples[b]);
    encodeSample(d, srcH, srcW, outH, outW, out, b * PARAM_STRIDE);
  }
  return out;
}

/** Writes one sample's block at out[o..o + PARAM_STRIDE), field by field. */
function encodeSample(
  d: SampleDraw,
  srcH: number,
  srcW: number,
  outH: number,
  outW: number,
  out: Float32Array,
  o: number,
): void {
  if (d.crop) {
    // source row of output row y: top + (y + 0.5) * h / outH - 0.5, clamped to the crop's rows
    const sy = d.height / outH;
    const sx = d.width / outW;
    out[o] = sy;
    out[o + 1] = d.top + 0.5 * sy - 0.5;
    out[o + 2] = d.top;
    out[o + 3] = d.top + d.height - 1;
    out[o + 4] = sx;
    out[o + 5] = d.left + 0.5 * sx - 0.5;
    out[o + 6] = d.left;
    out[o + 7] = d.left + d.width - 1;
  } else {
    // resized row y + top maps to source row (y + top + 0.5) * srcH / height - 0.5
    const sy = srcH / d.height;
    const sx = srcW / d.width;
    out[o] = sy;
    out[o + 1] = (d.top + 0.5) * sy - 0.5;
    out[o + 2] = 0;
    out[o + 3] = srcH - 1;
    out[o + 4] = sx;
    out[o + 5] = (d.left + 0.5) * sx - 0.5;
    out[o + 6] = 0;
    out[o + 7] = srcW - 1;
  }
  const rad = (d.angle * Math.PI) / 180;
  out[o + 8] = d.flip ? 1 : 0;
  out[o + 9] = d.angle !== 0 ? 1 : 0;
  out[o + 10] = Math.cos(rad);
  out[o + 11] = Math.sin(rad);
  out[o + 12] = d.brightness;
  out[o + 13] = d.contrast;
  out[o + 14] = d.saturation;
  out[o + 15] = d.hue;
  for (let k = 0; k < 4; k++) out[o + 16 + k] = k < d.ops ? d.order[k] : OP_NONE;
  out[o + 20] = d.grayscale ? 1 : 0;
  out[o + 21] = d.ops;
}

export interface AugmenterOptions {
  /** Largest image buffer in bytes (default: the device's maxStorageBufferBindingSize); tests lower it. */
  maxShardBytes?: number;
  /** Stream every batch from the source even when it holds its images in memory (tests, benches). */
  stream?: boolean;
}

const MAX_SHARDS = 8;
/** Batches read ahead of the one being augmented (prefetch), and so host buffers in the ring beyond it. */
const READ_AHEAD = 2;
/** GPU staging buffers a streaming augmenter cycles through (a write waits for no earlier batch's kernel). */
const GPU_RING = 2;

/** A batch read (or being read) from a streaming source into a host buffer of the ring. */
interface PendingRead {
  indices: Uint32Array;
  host: Uint8Array;
  done: Promise<void>;
  settled: boolean;
  failed: unknown;
}

/**
 * Produces augmented or eval batches from image indices. Two ways to hold the images:
 *   resident: an in-memory source whose images fit MAX_SHARDS bindings is uploaded once (as before
 *     sources existed), and a batch reads its images on the GPU by index;
 *   streaming: any other source (a packed file, or a set too large to upload): each batch's images are
 *     read on the host (`prefetch` starts the read of a coming batch in the background; `stage` waits
 *     for it), written into one of GPU_RING staging buffers and augmented from there. Host memory stays at
 *     READ_AHEAD + 1 batches of images, GPU memory at GPU_RING batches, whatever the source's size.
 * Both give bit-identical batches for the same images and parameters (the kernel sees the same bytes).
 */
export class GpuAugmenter {
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
  readonly n: number;
  readonly source: ImageSource;
  /** Whether batches stream from the source (see the class comment). */
  readonly streaming: boolean;
  /** Images per resident GPU buffer (0 when streaming). */
  readonly perShard: number;
  private readonly bindingLimit: number;
  private shards: Tensor<'u32'>[] = [];
  private readonly mean: number[];
  private readonly invStd: number[];
  private disposed = false;
  // streaming state
  private staging: Tensor<'u32'>[] = [];
  private stagingImages = 0;
  private nextStaging = 0;
  private positions: Tensor<'u32'> | null = null;
  private pending: PendingRead[] = [];
  /** Streaming batches served by a finished prefetch, and read when asked for (tests check the prefetch works). */
  readonly reads = { prefetched: 0, direct: 0 };
  private freeHost: Uint8Array[] = [];
  /** The record samples are drawn through, and the parameter block of the last batch size (reused per batch). */
  private readonly draw = new SampleDraw();
  private block = new Float32Array(0);

  constructor(
    images: ImageDataset | ImageSource,
    readonly config: AugmentConfig,
    options: AugmenterOptions = {},
  ) {
    const source = asSource(images);
    const { n, height, width, channels } = source;
    this.source = source;
    this.n = n;
    this.height = height;
    this.width = width;
    this.channels = channels;
    if (n === 0) throw new RangeError(`GpuAugmenter: data set "${source.name}" is empty`);
    if (!(config.outHeight > 0 && config.outWidth > 0))
      throw new RangeError(`GpuAugmenter: output size ${config.outWidth}x${config.outHeight} is invalid`);
    if (config.mean.length < channels || config.std.length < channels) {
      throw new RangeError(
        `GpuAugmenter: mean/std need ${channels} values for data set "${source.name}", got ${config.mean.length}/${config.std.length}`,
      );
    }
    if (config.jitter && !(config.jitter.hue >= 0 && config.jitter.hue <= 0.5))
      throw new RangeError(`GpuAugmenter: hue ${config.jitter.hue} must be in [0, 0.5]`);
    this.mean = config.mean.slice(0, channels).concat([0, 0, 0]).slice(0, 3);
    this.invStd = config.std
      .slice(0, channels)
      .map((s) => 1 / s)
      .concat([1, 1, 1])
      .slice(0, 3);
    const per = imageBytes(source);
    this.bindingLimit = Math.min(options.maxShardBytes ?? Infinity, gpu().limits.maxStorageBufferBindingSize);
    const perShard = Math.floor(this.bindingLimit / per);
    if (perShard === 0) {
      throw new RangeError(
        `GpuAugmenter: one image of data set "${source.name}" (${width}x${height}x${channels} = ${per} bytes) is larger than a GPU buffer binding ` +
          `(maxStorageBufferBindingSize = ${this.bindingLimit} bytes): store the images smaller (odc prepare --size)`,
      );
    }
    const resident = source.resident;
    this.streaming = options.stream === true || resident === null || Math.ceil(n / perShard) > MAX_SHARDS;
    this.perShard = this.streaming ? 0 : perShard;
    if (this.streaming || !resident) return;
    for (let first = 0; first < n; first += perShard) {
      const count = Math.min(perShard, n - first);
      const bytes = new Uint8Array(Math.ceil((count * per) / 4) * 4);
      bytes.set(resident.subarray(first * per, (first + count) * per));
      this.shards.push(keep(Tensor.from(new Uint32Array(bytes.buffer), [bytes.length / 4], 'u32')));
    }
  }

  /** Draws the random parameters of `count` samples (host only). */
  sample(count: number, rng: Rng): SampleParams[] {
    return sampleParams(rng, count, this.height, this.width, this.config);
  }

  /**
   * An augmented batch [B, outH, outW, C] for these image indices, parameters drawn from rng: the same draws as
   * `augmentWith(indices, sample(B, rng))`, written through one reused record into a reused block.
   */
  augment(indices: Tensor<'u32'> | Uint32Array, rng: Rng): Tensor<'f32'> {
    const count = indices instanceof Tensor ? indices.size : indices.length;
    const block = this.paramBlock(count);
    const fixed = this.config.crop ? null : evalGeometry(this.height, this.width, this.config);
    const d = this.draw;
    let contrast = false;
    // Drawn geometries fit by construction (drawCrop keeps crops inside the image; evalGeometry throws otherwise).
    for (let i = 0; i < count; i++) {
      drawSample(rng, this.height, this.width, this.config, fixed, d);
      encodeSample(d, this.height, this.width, this.config.outHeight, this.config.outWidth, block, i * PARAM_STRIDE);
      contrast ||= d.hasContrast;
    }
    return this.launch(indices, block, count, contrast);
  }

  /** The eval batch (resize + center crop + normalise) for feature extraction. */
  extract(indices: Tensor<'u32'> | Uint32Array): Tensor<'f32'> {
    const count = indices instanceof Tensor ? indices.size : indices.length;
    const block = this.paramBlock(count);
    const d = this.draw;
    d.setParams(evalParams(1, this.height, this.width, this.config)[0]);
    for (let i = 0; i < count; i++)
      encodeSample(d, this.height, this.width, this.config.outHeight, this.config.outWidth, block, i * PARAM_STRIDE);
    return this.launch(indices, block, count, false);
  }

  /**
   * Streaming: starts reading the images of a coming batch in the background (at most READ_AHEAD batches
   * ahead; further requests are ignored and read when used). Resident: nothing to do.
   */
  prefetch(indices: Uint32Array): void {
    if (!this.streaming || this.disposed || this.pending.length >= READ_AHEAD || indices.length === 0) return;
    for (let i = 0; i < indices.length; i++) if (!(indices[i] < this.n)) return; // augment reports it
    const host = this.hostBuffer(indices.length);
    const entry: PendingRead = {
      indices: indices.slice(),
      host,
      done: Promise.resolve(),
      settled: false,
      failed: null,
    };
    entry.done = this.source.readAsync(entry.indices, host).then(
      () => void (entry.settled = true),
      (err: unknown) => void ((entry.settled = true), (entry.failed = err)),
    );
    this.pending.push(entry);
  }

  /** Waits until a prefetched read of `indices` (if any) has finished, so `augment` uses it without blocking. */
  async stage(indices: Uint32Array): Promise<void> {
    const entry = this.pending.find((p) => sameIndices(p.indices, indices));
    if (entry) await entry.done;
  }

  /** A batch with the given per-sample parameters (tests pass fixed ones). */
  augmentWith(indices: Tensor<'u32'> | Uint32Array, samples: readonly SampleParams[], needMean = true): Tensor<'f32'> {
    const batch = indices instanceof Tensor ? indices.size : indices.length;
    if (samples.length !== batch)
      throw new RangeError(`GpuAugmenter: ${samples.length} parameter sets for ${batch} indices`);
    const block = this.paramBlock(batch);
    const d = this.draw;
    let contrast = false;
    samples.forEach((s, i) => {
      if (s.order.length > 4 || s.order.some((op) => !(op >= OP_BRIGHTNESS && op <= OP_HUE)))
        throw new RangeError(`GpuAugmenter: sample ${i}: bad jitter order [${s.order.join(', ')}]`);
      d.setParams(s);
      this.checkGeometry(d, i);
      encodeSample(d, this.height, this.width, this.config.outHeight, this.config.outWidth, block, i * PARAM_STRIDE);
      contrast ||= d.hasContrast;
    });
    return this.launch(indices, block, batch, needMean && contrast);
  }

  /**
   * The kernel's parameter block for `count` samples: one Float32Array reused while the batch size stays (the
   * upload copies it before the next batch writes it).
   */
  private paramBlock(count: number): Float32Array {
    if (this.block.length !== count * PARAM_STRIDE) this.block = new Float32Array(count * PARAM_STRIDE);
    return this.block;
  }

  /** Launches the batch of `indices` with its encoded parameters (`means`: contrast jitter needs image means). */
  private launch(
    indices: Tensor<'u32'> | Uint32Array,
    block: Float32Array,
    batch: number,
    needMean: boolean,
  ): Tensor<'f32'> {
    if (this.disposed) throw new Error('GpuAugmenter: used after dispose()');
    // validate everything before allocating anything
    if (indices instanceof Tensor) {
      expectDType(indices, 'u32', 'GpuAugmenter indices');
      if (indices.rank !== 1)
        throw new RangeError(`GpuAugmenter: indices must be a 1-D u32 tensor, got ${fmtShape(indices.shape)}`);
      if (this.streaming)
        throw new RangeError(
          `GpuAugmenter: data set "${this.source.name}" streams from the host; pass the indices as a Uint32Array`,
        );
    } else {
      for (let i = 0; i < indices.length; i++) {
        if (indices[i] >= this.n)
          throw new RangeError(
            `GpuAugmenter: index ${indices[i]} at position ${i} is outside data set "${this.source.name}" of ${this.n} images`,
          );
      }
    }
    const { outHeight: oh, outWidth: ow } = this.config;
    const out = Tensor.empty([batch, oh, ow, this.channels], 'f32');
    if (batch === 0) return out;
    // streaming: the batch's images go into a staging buffer and are addressed by position 0..B-1
    const shards = this.streaming ? [this.upload(indices as Uint32Array)] : this.shards;
    const perShard = this.streaming ? this.stagingImages : this.perShard;
    const idx = this.streaming
      ? this.positions!
      : indices instanceof Tensor
        ? indices
        : Tensor.from(indices, [indices.length], 'u32');
    const sp = Tensor.from(block, [block.length], 'f32');
    const means = needMean ? Tensor.empty([batch], 'f32') : null;
    const geometry = (shard: number) => ({
      batch,
      channels: this.channels,
      src_w: this.width,
      out_h: oh,
      out_w: ow,
      per_shard: perShard,
      image_bytes: imageBytes(this.source),
      n_images: this.streaming ? batch : this.n,
      shard_id: shard,
    });
    const inputs = (shard: Tensor<'u32'>) => ({ shard: shard.buffer, indices: idx.buffer, sp: sp.buffer });
    // One launch per shard and kernel (threads whose image lies in another shard return at once).
    if (means) {
      shards.forEach((shard, k) => {
        dispatchKernel(kernels.contrast_mean, {
          params: geometry(k),
          bindings: { ...inputs(shard), means: means.buffer },
          workgroups: grid(batch),
        });
      });
    }
    shards.forEach((shard, k) => {
      dispatchKernel(kernels.augment, {
        params: {
          ...geometry(k),
          need_mean: means !== null,
          nan_bits: 0x7fc00000,
          mean0: this.mean[0],
          mean1: this.mean[1],
          mean2: this.mean[2],
          istd0: this.invStd[0],
          istd1: this.invStd[1],
          istd2: this.invStd[2],
        },
        bindings: { ...inputs(shard), means: (means ?? sp).buffer, out: out.buffer },
        workgroups: grid(Math.ceil((batch * oh * ow) / 256)),
      });
    });
    means?.dispose();
    sp.dispose();
    if (idx !== indices && idx !== this.positions) idx.dispose();
    return out;
  }

  /** Streaming: the images of `indices` in the next staging buffer (a finished prefetch, else read now). */
  private upload(indices: Uint32Array): Tensor<'u32'> {
    const per = imageBytes(this.source);
    if (indices.length > this.stagingImages) this.growStaging(indices.length);
    // a read queued for these indices: those queued before it were for batches never asked for; later ones stay
    const at = this.pending.findIndex((p) => sameIndices(p.indices, indices));
    const stale = at < 0 ? [] : this.pending.splice(0, at + 1);
    const entry = stale.pop();
    if (entry && !entry.settled) stale.push(entry); // still reading (stage() was not awaited): read again now
    for (const p of stale) void p.done.then(() => this.freeHost.push(p.host));
    const used = entry?.settled ? entry : null;
    if (used?.failed) throw used.failed;
    const host = used ? used.host : this.hostBuffer(indices.length);
    if (used) this.reads.prefetched++;
    else {
      this.source.read(indices, host);
      this.reads.direct++;
    }
    const target = this.staging[this.nextStaging];
    this.nextStaging = (this.nextStaging + 1) % GPU_RING;
    const bytes = Math.ceil((indices.length * per) / 4) * 4;
    gpu().write(target.buffer, host.subarray(0, bytes));
    this.freeHost.push(host); // writeBuffer has copied it
    return target;
  }

  /** (Re)allocates the staging ring and the position list for batches of `images` images. */
  private growStaging(images: number): void {
    const per = imageBytes(this.source);
    const words = Math.ceil((images * per) / 4);
    if (words * 4 > this.bindingLimit) {
      throw new RangeError(
        `GpuAugmenter: a batch of ${images} images of ${per} bytes exceeds one GPU buffer binding (${this.bindingLimit} bytes): lower optim.batchSize or store the images smaller`,
      );
    }
    for (const t of this.staging) t.dispose();
    this.positions?.dispose();
    this.staging = Array.from({ length: GPU_RING }, () => keep(Tensor.empty([words], 'u32')));
    this.positions = keep(
      Tensor.from(
        Uint32Array.from({ length: images }, (_, i) => i),
        [images],
        'u32',
      ),
    );
    this.stagingImages = images;
    this.freeHost = [];
  }

  /** A host buffer of the ring large enough for `images` images (allocated when none is free). */
  private hostBuffer(images: number): Uint8Array {
    const need = Math.ceil((Math.max(images, this.stagingImages) * imageBytes(this.source)) / 4) * 4;
    let buf = this.freeHost.pop();
    while (buf && buf.length < need) buf = this.freeHost.pop();
    return buf ?? new Uint8Array(need);
  }

  private checkGeometry(d: SampleDraw, i: number): void {
    const ok = d.crop
      ? d.top >= 0 &&
        d.left >= 0 &&
        d.height >= 1 &&
        d.width >= 1 &&
        d.top + d.height <= this.height &&
        d.left + d.width <= this.width
      : d.top >= 0 &&
        d.left >= 0 &&
        d.top + this.config.outHeight <= d.height &&
        d.left + this.config.outWidth <= d.width;
    if (!ok)
      throw new RangeError(
        `GpuAugmenter: sample ${i}: geometry ${JSON.stringify(d.geometry())} does not fit a ${this.width}x${this.height} image / ${this.config.outWidth}x${this.config.outHeight} output`,
      );
  }

  /** Frees the GPU copy of the images (or the staging buffers); pending reads are left to finish. */
  dispose(): void {
    for (const t of [...this.shards, ...this.staging]) t.dispose();
    this.positions?.dispose();
    this.shards = [];
    this.staging = [];
    this.positions = null;
    this.pending = [];
    this.freeHost = [];
    this.disposed = true;
  }
}

function sameIndices(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
