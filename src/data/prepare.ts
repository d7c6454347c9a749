/**
 * `odc prepare`: a data source -> a packed file (src/data/pack.ts) of fixed-size uint8 images, labels
 * and image names, for sets too large to hold in memory.
 *
 * Image folders (class sub-folders or flat) are decoded and resized in parallel worker threads (sharp
 * where it loads, else the project's pure-JS decoders; src/data/decode-stored.ts), at most a few jobs
 * ahead of the writer, which writes the images in folder order. IDX and CIFAR sources are loaded as the
 * registry loads them and copied (resized with the js path's resize + crop when --size differs).
 * The file appears under its name only when complete (write to `.partial`, fsync, rename): an
 * interrupted prepare is restarted from the beginning and never leaves a file that looks complete.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { imageBytes } from './dataset.ts';
import { decodeStored, loadSharp, type DecodeJob, type DecoderName, type StoredImage } from './decode-stored.ts';
import { fitImage, listImageFolder, NATIVE_IMAGE_EXT, toChannels } from './image-folder.ts';
import { PackWriter } from './pack.ts';
import { maxImagePixels } from './png.ts';
import { loadDataset } from './registry.ts';
import type { WorkerAnswer, WorkerRequest } from './prepare-worker.ts';

export interface PrepareOptions {
  /** A data spec as --data takes it: `folder:DIR`, `cifar10:DIR`, `idx:IMAGES,LABELS`, ... */
  data: string;
  /** The .odcpack file to write. */
  out: string;
  /** Stored side: shorter side resized to it, then centre-cropped (required for folders of mixed sizes). */
  size?: number;
  /** Stored channels (default: 3 for folders, the source's own otherwise). */
  channels?: 1 | 3;
  /** Decoder threads for folders (default: the cores available; 0 decodes on the calling thread). */
  workers?: number;
  decoder?: DecoderName | 'auto';
  /** Skip images that cannot be decoded (listed in the result) instead of failing. */
  skipBad?: boolean;
  split?: 'train' | 'test';
  maxPixels?: number;
  /** Progress to stderr (a bar on a terminal, a line per 10% otherwise); false: silent. */
  progress?: boolean;
}

export interface PrepareResult {
  path: string;
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
  /** Images skipped with --skip-bad, by path, with the reason. */
  skipped: Array<{ path: string; reason: string }>;
  decoder: DecoderName | 'loader';
  workers: number;
  seconds: number;
}

/** Runs a prepare; errors name the file (and --skip-bad) when an image cannot be read. */
export async function prepare(options: PrepareOptions): Promise<PrepareResult> {
  const started = performance.now();
  if (options.size !== undefined && !(Number.isInteger(options.size) && options.size > 0))
    throw new RangeError(`--size ${options.size}: give a positive whole number of pixels`);
  const colon = options.data.indexOf(':');
  const kind = (colon < 0 ? options.data : options.data.slice(0, colon)).toLowerCase();
  const result =
    kind === 'folder' ? await prepareFolder(options.data.slice(colon + 1), options) : await prepareLoaded(options);
  return { ...result, seconds: (performance.now() - started) / 1000 };
}

type Prepared = Omit<PrepareResult, 'seconds'>;

/** A source a loader reads in full (IDX, CIFAR, the mnist package): copied image by image. */
async function prepareLoaded(options: PrepareOptions): Promise<Prepared> {
  const ds = await loadDataset(options.data, { split: options.split ?? 'train' });
  const size = options.size;
  const channels = options.channels ?? ds.channels;
  const height = size ?? ds.height;
  const width = size ?? ds.width;
  const writer = new PackWriter(options.out, { height, width, channels });
  const bar = new ProgressBar(ds.n, options.progress !== false);
  try {
    const per = imageBytes(ds);
    for (let i = 0; i < ds.n; i++) {
      const img = {
        width: ds.width,
        height: ds.height,
        channels: ds.channels,
        data: ds.images.subarray(i * per, (i + 1) * per),
      };
      const fitted = size === undefined ? img : fitImage(img, size, size, 'resize-crop');
      writer.append(toChannels(fitted, channels), ds.labels ? ds.labels[i] : -1, `${ds.name}#${i}`);
      bar.tick();
    }
    const stored = size === undefined ? 'as loaded' : `shorter side resized to ${size} (bilinear) + centre crop`;
    writer.finish({ numClasses: ds.labels ? ds.numClasses : null, source: options.data, stored });
  } catch (err) {
    writer.abort();
    throw err;
  } finally {
    bar.end();
  }
  return { path: options.out, n: writer.n, height, width, channels, skipped: [], decoder: 'loader', workers: 0 };
}

async function prepareFolder(dir: string, options: PrepareOptions): Promise<Prepared> {
  const decoder = await chooseDecoder(options.decoder ?? 'auto');
  const { files, classes } = listImageFolder(dir, decoder === 'sharp' ? NATIVE_IMAGE_EXT : undefined);
  const channels = options.channels ?? 3;
  const maxPixels = maxImagePixels(options.maxPixels);
  const workers = Math.max(0, Math.min(options.workers ?? availableParallelism(), files.length));
  const jobs: DecodeJob[] = files.map((f) => ({
    path: f.path,
    size: options.size ?? null,
    channels,
    maxPixels,
    decoder,
  }));
  const skipped: Array<{ path: string; reason: string }> = [];
  const bar = new ProgressBar(files.length, options.progress !== false);
  let writer: PackWriter | null = null;
  let shape: { height: number; width: number } | null = null;
  const pool = workers > 0 ? new DecoderPool(workers) : null;
  try {
    await forEachInOrder(
      jobs,
      pool ? (job) => pool.decode(job) : decodeStored,
      2 * Math.max(workers, 1),
      (i, outcome) => {
        bar.tick();
        if (outcome instanceof Error) {
          if (!options.skipBad)
            throw new Error(
              `${outcome.message.startsWith(files[i].path) ? '' : files[i].path + ': '}${outcome.message}${/--skip-bad/.test(outcome.message) ? '' : ' (--skip-bad skips such images)'}`,
            );
          skipped.push({ path: files[i].path, reason: outcome.message });
          return;
        }
        shape ??= { height: outcome.height, width: outcome.width };
        if (outcome.height !== shape.height || outcome.width !== shape.width) {
          throw new Error(
            `${files[i].path}: is ${outcome.width}x${outcome.height}, but the first image is ${shape.width}x${shape.height}: pass --size to store every image at one size`,
          );
        }
        writer ??= new PackWriter(options.out, { ...shape, channels });
        writer.append(outcome.data, files[i].label, files[i].path);
      },
    );
    if (!writer || !shape)
      throw new Error(
        `${dir}: none of its ${files.length} images could be decoded (first: ${skipped[0]?.reason ?? 'none'})`,
      );
    const w: PackWriter = writer;
    const stored =
      options.size === undefined ? 'own size' : `shorter side resized to ${options.size} + centre crop (${decoder})`;
    w.finish({
      numClasses: classes.length > 0 ? classes.length : null,
      classNames: classes.length > 0 ? classes : null,
      source: `folder:${dir}`,
      stored,
    });
    const s: { height: number; width: number } = shape;
    return { path: options.out, n: w.n, ...s, channels, skipped, decoder, workers };
  } catch (err) {
    (writer as PackWriter | null)?.abort();
    throw err;
  } finally {
    bar.end();
    await pool?.close();
  }
}

/** `auto`: sharp where it loads, else js. Asking for sharp where it does not load is an error. */
async function chooseDecoder(choice: DecoderName | 'auto'): Promise<DecoderName> {
  if (choice === 'js') return 'js';
  const sharp = await loadSharp();
  if (sharp) return 'sharp';
  if (choice === 'sharp')
    throw new Error(
      '--decoder sharp: the sharp package does not load on this platform/runtime: use --decoder js (or auto)',
    );
  return 'js';
}

/**
 * Runs `work` on every item with at most `ahead` unfinished, and hands the outcomes (a value, or the
 * Error it failed with) to `use` strictly in item order. A throw from `use` stops the run.
 */
async function forEachInOrder<T, R>(
  items: readonly T[],
  work: (item: T) => Promise<R>,
  ahead: number,
  use: (i: number, outcome: R | Error) => void,
): Promise<void> {
  const results = new Map<number, R | Error>();
  let next = 0;
  let started = 0;
  let settled = 0;
  let failure: unknown = null;
  await new Promise<void>((resolve) => {
    const launch = (): void => {
      while (failure === null && started < items.length && started - next < ahead) {
        const i = started++;
        work(items[i]).then(
          (r) => settle(i, r),
          (e: unknown) => settle(i, e instanceof Error ? e : new Error(String(e))),
        );
      }
      // after a failure, wait for the jobs in flight (nothing of theirs is used)
      if ((failure !== null && settled === started) || next === items.length) resolve();
    };
    const settle = (i: number, outcome: R | Error): void => {
      settled++;
      results.set(i, outcome);
      while (failure === null && results.has(next)) {
        const r = results.get(next)!;
        results.delete(next);
        try {
          use(next, r);
        } catch (err) {
          failure = err;
        }
        next++;
      }
      launch();
    };
    launch();
  });
  if (failure !== null) throw failure;
}

/** Worker threads decoding one job each at a time (src/data/prepare-worker.ts). */
class DecoderPool {
  private readonly workers: Worker[];
  private readonly idle: Worker[];
  private readonly waiting: Array<{
    request: WorkerRequest;
    resolve: (img: StoredImage) => void;
    reject: (err: Error) => void;
  }> = [];
  private readonly running = new Map<number, { resolve: (img: StoredImage) => void; reject: (err: Error) => void }>();
  private nextId = 0;

  private broken: Error | null = null;

  constructor(count: number) {
    this.workers = Array.from({ length: count }, () => {
      const w = startWorker(
        new URL(`./prepare-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url),
      );
      w.on('message', (answer: WorkerAnswer) => this.answered(w, answer));
      w.on('error', (err: Error) =>
        this.failAll(new Error(`a decoder thread failed: ${err.message} (--workers 0 decodes without threads)`)),
      );
      return w;
    });
    this.idle = [...this.workers];
  }

  decode(job: DecodeJob): Promise<StoredImage> {
    if (this.broken) return Promise.reject(this.broken);
    return new Promise((resolve, reject) => {
      this.waiting.push({ request: { id: this.nextId++, job }, resolve, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private pump(): void {
    while (this.idle.length > 0 && this.waiting.length > 0) {
      const w = this.idle.pop()!;
      const { request, resolve, reject } = this.waiting.shift()!;
      this.running.set(request.id, { resolve, reject });
      w.postMessage(request);
    }
  }

  private answered(w: Worker, answer: WorkerAnswer): void {
    const pending = this.running.get(answer.id);
    this.running.delete(answer.id);
    this.idle.push(w);
    if (answer.ok) pending?.resolve({ width: answer.width, height: answer.height, data: answer.data });
    else pending?.reject(new Error(answer.error));
    this.pump();
  }

  private failAll(err: Error): void {
    this.broken ??= err;
    for (const p of this.running.values()) p.reject(err);
    for (const p of this.waiting) p.reject(err);
    this.running.clear();
    this.waiting.length = 0;
  }
}

/**
 * A worker thread running a module. Bun and Deno run TypeScript themselves; Node runs this project's
 * TypeScript through tsx, whose loader a worker does not inherit, so the worker registers it first.
 */
function startWorker(url: URL): Worker {
  const nativeTs = 'Bun' in globalThis || 'Deno' in globalThis;
  if (nativeTs || !url.pathname.endsWith('.ts')) return new Worker(url);
  const tsx = import.meta.resolve('tsx/esm/api'); // from here: the worker's own resolution starts at the working folder
  const boot = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); })`;
  return new Worker(boot, { eval: true });
}

/** A progress bar on stderr: redrawn in place on a terminal, a line every 10% otherwise. */
class ProgressBar {
  private done = 0;
  private lastDraw = 0;
  private lastDecile = 0;
  private readonly start = performance.now();
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly total: number,
    private readonly enabled: boolean,
  ) {}

  tick(): void {
    this.done++;
    if (!this.enabled) return;
    const now = performance.now();
    const decile = Math.floor((10 * this.done) / this.total);
    if (this.tty ? now - this.lastDraw > 100 || this.done === this.total : decile > this.lastDecile) {
      this.lastDraw = now;
      this.lastDecile = decile;
      process.stderr.write((this.tty ? '\r' : '') + this.line(now) + (this.tty ? '' : '\n'));
    }
  }

  end(): void {
    if (this.enabled && this.tty && this.done > 0) process.stderr.write('\n');
  }

  private line(now: number): string {
    const seconds = (now - this.start) / 1000;
    const rate = this.done / Math.max(seconds, 1e-3);
    const width = 30;
    const filled = Math.round((width * this.done) / this.total);
    const eta = (this.total - this.done) / Math.max(rate, 1e-9);
    return `prepare [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${this.done}/${this.total} ${rate.toFixed(0)} img/s, ${eta.toFixed(0)} s left`;
  }
}
