/**
 * A training epoch streamed from a large packed file, with host memory sampled (issue 12, "Done means": a
 * synthetic packed set of at least 200,000 images trains for an epoch's worth of iterations with flat host
 * memory). It writes --images synthetic RGB images of --side squared (10 kinds of coloured shapes with noise)
 * into a pack (or reuses --pack FILE), then runs the real trainer from `pack:FILE` (as `odc train --data pack:`)
 * with convnet-s at --size squared (imagenet augmentation: random resized crop of the stored image), and every
 * --every iterations records the process RSS, the JavaScript heap and the step time. The series is printed as
 * it comes and the fit of RSS against iterations (after the first --warmup) is printed at the end; the first
 * feature extraction of all N images (the initial clustering) is timed too.
 *   npx tsx bench/stream-epoch.ts [--images 200000] [--side 32] [--size 16] [--batch 256] [--k 100]
 *     [--iterations N (default: one epoch)] [--every 25] [--warmup 50] [--pack FILE] [--keep]
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { gpu, initGpu } from '../src/gpu/device.ts';
import { applyOverride, presetConfig } from '../src/config/settings.ts';
import { PackWriter } from '../src/data/pack.ts';
import { train } from '../src/odc/trainer.ts';
import { Rng } from '../src/util/rng.ts';
import { flagValue, positiveIntFlag, slope } from './common.ts';

const MiB = 1024 * 1024;

/**
 * Writes n images of side x side x 3: kind i % 10 is a filled square or disc of one of 5 colours at a random
 * place on a dark background, with uniform noise (so clustering has something to find, and no two are equal).
 */
function writeSyntheticPack(path: string, n: number, side: number): void {
  const writer = new PackWriter(path, { height: side, width: side, channels: 3 });
  const img = new Uint8Array(side * side * 3);
  const colours = [
    [220, 40, 40],
    [40, 200, 60],
    [50, 80, 230],
    [230, 210, 40],
    [200, 60, 210],
  ];
  const rng = new Rng(12);
  // noise from a cheap LCG: 600 M random bytes through Rng would dominate the bench's set-up
  let state = 1;
  for (let i = 0; i < n; i++) {
    const kind = i % 10;
    const [r, g, b] = colours[kind % 5];
    const disc = kind >= 5;
    const radius = side / 5 + rng.int(Math.max(1, side / 8));
    const cx = radius + rng.int(Math.max(1, side - 2 * radius));
    const cy = radius + rng.int(Math.max(1, side - 2 * radius));
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const inside = disc
          ? (x - cx) ** 2 + (y - cy) ** 2 < radius * radius
          : Math.max(Math.abs(x - cx), Math.abs(y - cy)) < radius;
        const o = (y * side + x) * 3;
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        const noise = state >>> 26; // 0..63
        img[o] = (inside ? r : 20) + (noise >> 1);
        img[o + 1] = (inside ? g : 20) + (noise & 31);
        img[o + 2] = (inside ? b : 20) + ((noise * 7) & 31);
      }
    }
    writer.append(img, kind, `#${i}`);
  }
  writer.finish({ numClasses: 10, source: 'bench/stream-epoch.ts', stored: `synthetic ${side}x${side}` });
}

interface Sample {
  iteration: number;
  rssMiB: number;
  heapMiB: number;
  externalMiB: number;
  stepMs: number;
}

async function main(): Promise<void> {
  const images = positiveIntFlag('images', 200_000);
  const side = positiveIntFlag('side', 32);
  const size = positiveIntFlag('size', 16);
  const batch = positiveIntFlag('batch', 256);
  const k = positiveIntFlag('k', 100);
  const every = positiveIntFlag('every', 25);
  const warmup = positiveIntFlag('warmup', 50);
  const given = flagValue('pack');
  const keep = process.argv.includes('--keep');
  const dir = mkdtempSync(join(tmpdir(), 'odc-stream-epoch-'));
  const packPath = given ?? join(dir, 'synthetic.odcpack');
  try {
    if (!given || !existsSync(given)) {
      const t0 = performance.now();
      writeSyntheticPack(packPath, images, side);
      console.log(
        `wrote ${packPath}: ${images} images of ${side}x${side}x3, ${(statSync(packPath).size / MiB).toFixed(0)} MiB, in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
      );
    }
    await initGpu();
    let config = presetConfig('demo');
    for (const o of [
      'data.source=pack',
      `data.path=${packPath}`,
      'data.limit=0',
      `data.imageSize=${size}`,
      'augment=imagenet',
      'model.neckHidden=128',
      'model.featureDim=64',
      `optim.batchSize=${batch}`,
      'optim.epochs=1',
      `odc.k=${k}`,
      'odc.minCluster=20',
      'odc.centroidInterval=20',
      'log.interval=50',
    ])
      config = applyOverride(config, o);
    const perEpoch = Math.ceil(images / batch);
    const iterations = positiveIntFlag('iterations', perEpoch);
    const outDir = join(dir, 'run');
    const samples: Sample[] = [];
    const startRss = process.memoryUsage().rss / MiB;
    console.log(
      `stream-epoch: convnet-s ODC at ${size}x${size} from ${images} packed images of ${side}x${side}x3, batch ${batch} ` +
        `(${perEpoch} iterations an epoch; running ${iterations}), K ${k}, D 64; ${gpu().adapterName}; RSS before training ${startRss.toFixed(0)} MiB`,
    );
    console.log(' iteration  RSS MiB  heap MiB  external MiB  ms/step  load');
    const started = performance.now();
    let firstStep = 0;
    let last = 0;
    await train({
      config,
      outDir,
      quiet: true,
      stopAfterIterations: iterations < perEpoch ? iterations : undefined,
      afterIteration: (iteration) => {
        const now = performance.now();
        if (iteration === 1) {
          firstStep = now;
          console.log(
            `initial clustering (extraction of ${images} images + k-means) and the first step: ${((now - started) / 1000).toFixed(0)} s`,
          );
        }
        if (iteration !== 1 && iteration % every !== 0 && iteration !== iterations) return;
        const m = process.memoryUsage();
        const sample: Sample = {
          iteration,
          rssMiB: m.rss / MiB,
          heapMiB: m.heapUsed / MiB,
          externalMiB: (m.external + m.arrayBuffers) / MiB,
          stepMs: iteration === 1 ? 0 : (now - last) / (iteration - samples[samples.length - 1].iteration),
        };
        last = now;
        samples.push(sample);
        console.log(
          [
            sample.iteration,
            sample.rssMiB.toFixed(0),
            sample.heapMiB.toFixed(1),
            sample.externalMiB.toFixed(1),
            sample.stepMs.toFixed(0),
            loadavg()[0].toFixed(1),
          ]
            .map((v, i) => String(v).padStart([10, 8, 9, 13, 8, 5][i]))
            .join(' '),
        );
      },
    });
    const seconds = (performance.now() - firstStep) / 1000;
    const judged = samples.filter((s) => s.iteration >= warmup);
    const fit = (pick: (s: Sample) => number) =>
      slope(
        judged.map((s) => s.iteration),
        judged.map(pick),
      );
    const span = judged.length ? judged[judged.length - 1].iteration - judged[0].iteration : 0;
    console.log(
      `\n${samples[samples.length - 1].iteration} iterations (${((samples[samples.length - 1].iteration * batch) / images).toFixed(2)} epochs) ` +
        `in ${(seconds / 60).toFixed(1)} min after the first, ${((samples[samples.length - 1].iteration * batch) / seconds).toFixed(0)} img/s; ` +
        `${cpus().length} vCPUs, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    );
    if (judged.length >= 2) {
      const rss = judged.map((s) => s.rssMiB);
      console.log(
        `RSS over iterations ${judged[0].iteration}..${judged[judged.length - 1].iteration}: ${Math.min(...rss).toFixed(0)}..${Math.max(...rss).toFixed(0)} MiB, ` +
          `fit slope ${(fit((s) => s.rssMiB) * 1000).toFixed(2)} MiB per 1000 iterations (${(fit((s) => s.rssMiB) * span).toFixed(1)} MiB over the span); ` +
          `heap slope ${(fit((s) => s.heapMiB) * 1000).toFixed(2)} MiB per 1000 iterations; pack ${(statSync(packPath).size / MiB).toFixed(0)} MiB`,
      );
    }
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir}`);
  }
}

await main();
process.exit(0);
