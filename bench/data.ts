/**
 * Data pipeline bench (issue 12): prepare throughput and the streaming loader.
 *   npx tsx bench/data.ts [--images 200] [--pack-images 20000] [--pack-size 64] [--batches 40] [--workers N[,M...]]
 *     [--no-stream]
 * 1. Makes --images JPEG photos of 500x375 (smooth gradients + noise, as photos compress) and as many
 *    PNGs, then times `prepare` (--size 256, centre crop) with sharp and with the pure-JS decoders, on one
 *    thread and on N (each of the --workers counts) worker threads; and Python PIL (decode + resize + crop + tobytes, one process) on the
 *    same files when python3 can import PIL.
 * 2. PNG decoding: this project's decoder (src/data/png.ts) against fast-png on the same files.
 * 3. Streaming (not with --no-stream): a packed set of --pack-images images of --pack-size squared x 3; batches of 256 random indices read by
 *    offset (readAsync), alone and with the GPU augmentation of each batch running (prefetch of the next).
 * The reference rate a GPU step needs: PyTorch's resnet50 on an H100, ~860 img/s.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { decode as fastPngDecode } from 'fast-png';
import { initGpu, gpu } from '../src/gpu/device.ts';
import { GpuAugmenter, imagenetPreset } from '../src/data/augment.ts';
import { decodePng, encodePng } from '../src/data/png.ts';
import { loadSharp } from '../src/data/decode-stored.ts';
import { openPack, PackWriter } from '../src/data/pack.ts';
import { prepare } from '../src/data/prepare.ts';
import { Rng } from '../src/util/rng.ts';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const images = flag('--images', 200);
const packImages = flag('--pack-images', 20000);
const batches = flag('--batches', 40);
const side = flag('--pack-size', 64);
const workerCounts = (
  process.argv.includes('--workers')
    ? process.argv[process.argv.indexOf('--workers') + 1]
    : String(availableParallelism())
)
  .split(',')
  .map(Number);
const cores = Math.max(...workerCounts);
const root = mkdtempSync(join(tmpdir(), 'odc-bench-data-'));
const rows: Array<[string, string]> = [];
const report = (name: string, value: string): void => {
  rows.push([name, value]);
  console.log(`${name.padEnd(58)} ${value}`);
};

/** A 500x375 photo-like RGB image: gradients, a few shapes and noise. */
function photo(seed: number): Uint8Array {
  const w = 500;
  const h = 375;
  const rng = new Rng(seed);
  const px = new Uint8Array(w * h * 3);
  const cx = rng.range(100, 400);
  const cy = rng.range(80, 300);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < 6000;
      px[o] = Math.min(255, (inside ? 180 : (x * 255) / w) + rng.range(0, 24));
      px[o + 1] = Math.min(255, (y * 255) / h + rng.range(0, 24));
      px[o + 2] = Math.min(255, (inside ? 40 : 128) + rng.range(0, 24));
    }
  }
  return px;
}

try {
  // 1. the photo folders
  const jpegDir = join(root, 'jpeg', 'photos');
  const pngDir = join(root, 'png', 'photos');
  mkdirSync(jpegDir, { recursive: true });
  mkdirSync(pngDir, { recursive: true });
  for (let i = 0; i < images; i++) {
    const px = photo(i);
    const rgba = new Uint8Array(500 * 375 * 4);
    for (let p = 0; p < 500 * 375; p++) rgba.set([px[3 * p], px[3 * p + 1], px[3 * p + 2], 255], 4 * p);
    writeFileSync(join(jpegDir, `${i}.jpg`), jpeg.encode({ data: rgba, width: 500, height: 375 }, 90).data);
    writeFileSync(join(pngDir, `${i}.png`), encodePng(500, 375, px));
  }
  console.log(
    `${images} JPEG and ${images} PNG photos of 500x375 in ${root}; ${workerCounts.join(', ')} worker threads`,
  );
  const sharp = await loadSharp();
  sharp?.concurrency(1); // one libvips thread on the main thread too: per-core numbers (workers set their own)
  // the threads' start-up (Node: tsx transpiles the worker's modules in each), timed on one image per worker
  const startDir = join(root, 'start', 'photos');
  mkdirSync(startDir, { recursive: true });
  for (let i = 0; i < cores; i++) writeFileSync(join(startDir, `${i}.png`), encodePng(8, 8, new Uint8Array(192)));
  const startup = new Map<number, number>();
  for (const workers of workerCounts) {
    const seconds = (
      await prepare({
        data: `folder:${join(root, 'start')}`,
        out: join(root, 's.odcpack'),
        size: 8,
        decoder: 'js',
        workers,
        progress: false,
      })
    ).seconds;
    startup.set(workers, seconds);
    report(`worker thread start-up (${workers} threads)`, `${seconds.toFixed(1)} s`);
  }
  for (const [kind, dir] of [
    ['JPEG', join(root, 'jpeg')],
    ['PNG', join(root, 'png')],
  ] as const) {
    for (const decoder of sharp ? (['sharp', 'js'] as const) : (['js'] as const)) {
      for (const workers of [0, ...workerCounts]) {
        const r = await prepare({
          data: `folder:${dir}`,
          out: join(root, 'x.odcpack'),
          size: 256,
          decoder,
          workers,
          progress: false,
        });
        const rate = r.n / r.seconds;
        // the rate after the threads' start-up, when the run outlasted the start-up measured alone (a loaded
        // machine's start-up varies by more than a short run lasts)
        const afterStartup = r.seconds - (startup.get(workers) ?? 0);
        const steady = afterStartup > 0.2 * r.seconds ? r.n / afterStartup : NaN;
        report(
          `prepare ${kind} 500x375 -> 256, ${decoder}, ${workers === 0 ? 'main thread' : `${workers} workers`}`,
          `${rate.toFixed(1)} img/s` +
            (workers === 0
              ? ''
              : Number.isNaN(steady)
                ? ', start-up not separable from this run'
                : `, ${steady.toFixed(1)} after start-up (${(steady / workers).toFixed(1)} per thread)`),
        );
      }
    }
    const py = `
import sys, time, os
from PIL import Image
d = sys.argv[1]
files = sorted(os.path.join(d, f) for f in os.listdir(d))
t = time.time()
for f in files:
    im = Image.open(f).convert('RGB')
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BILINEAR)
    l, t2 = (im.width - 256) // 2, (im.height - 256) // 2
    im.crop((l, t2, l + 256, t2 + 256)).tobytes()
print(len(files) / (time.time() - t))
`;
    for (const python of ['/usr/bin/python3', 'python3']) {
      try {
        const rate = Number(
          execFileSync(python, ['-c', py, join(dir, 'photos')], {
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'ignore'],
          }).trim(),
        );
        report(`PIL ${kind} 500x375 -> 256 (${python}, one process)`, `${rate.toFixed(1)} img/s`);
        break;
      } catch {
        if (python === 'python3') report(`PIL ${kind}`, 'not measured: no python3 with PIL here');
      }
    }
  }

  // 2. PNG decoders on the same files
  const pngs = Array.from({ length: Math.min(images, 50) }, (_, i) => readFileSync(join(pngDir, `${i}.png`)));
  for (const [name, decode] of [
    ['ours (src/data/png.ts)', (b: Uint8Array) => decodePng(b).data.length],
    ['fast-png', (b: Uint8Array) => fastPngDecode(b).data.length],
  ] as const) {
    decode(pngs[0]);
    const t = performance.now();
    for (const b of pngs) decode(b);
    report(`PNG decode 500x375 RGB, ${name}`, `${((performance.now() - t) / pngs.length).toFixed(2)} ms/image`);
  }

  // 3. streaming from a pack
  if (!process.argv.includes('--no-stream')) {
    const packPath = join(root, 'stream.odcpack');
    const t0 = performance.now();
    const writer = new PackWriter(packPath, { height: side, width: side, channels: 3 });
    const img = new Uint8Array(side * side * 3);
    for (let i = 0; i < packImages; i++) {
      img.fill(i & 255);
      writer.append(img, i % 10, `#${i}`);
    }
    writer.finish({ numClasses: 10, source: 'bench', stored: 'synthetic' });
    report(
      `write a pack of ${packImages} ${side}x${side}x3 images`,
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    const pack = openPack(packPath);
    const rng = new Rng(3);
    const batch = (): Uint32Array => Uint32Array.from({ length: 256 }, () => rng.int(packImages));
    const buf = new Uint8Array(256 * side * side * 3);
    let t = performance.now();
    for (let b = 0; b < batches; b++) await pack.readAsync(batch(), buf);
    report(
      `streaming read of ${side}x${side}x3, batch 256 random, no GPU work`,
      `${((batches * 256) / ((performance.now() - t) / 1000)).toFixed(0)} img/s`,
    );
    await initGpu();
    const aug = new GpuAugmenter(pack, imagenetPreset({ outHeight: 56, outWidth: 56, evalResize: side }));
    const order = Array.from({ length: batches + 1 }, batch);
    t = performance.now();
    for (let b = 0; b < batches; b++) {
      await aug.stage(order[b]);
      aug.prefetch(order[b + 1]);
      aug.augment(order[b], rng).dispose();
      if (b % 4 === 3) await gpu().sync();
    }
    await gpu().sync();
    report(
      `streaming + GPU augmentation (${gpu().adapterName}), batch 256`,
      `${((batches * 256) / ((performance.now() - t) / 1000)).toFixed(0)} img/s (a resnet50 step on an H100 needs ~860)`,
    );
    aug.dispose();
    pack.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
mkdirSync('bench/out', { recursive: true });
writeFileSync('bench/out/data.json', JSON.stringify(rows, null, 2));
process.exit(0);
