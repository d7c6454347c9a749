/**
 * Soak: a long real training run (the trainer itself, checkpoints and epoch ends included) that logs, every
 * `--every` iterations, the live GPU buffers and their bytes, the pool's cached buffers, the process RSS and
 * the mean step time, then says whether each stayed flat within the bands below and writes the numbers
 * to the "Soak" section of bench/RESULTS.md. A bench, not a test: it takes minutes.
 *   npx tsx bench/soak.ts [--steps 1000] [--batch 16] [--every 50] [--limit 2000] [--k 40] [--no-write]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gpu, initGpu } from '../src/gpu/device.ts';
import { applyOverride, presetConfig } from '../src/config/settings.ts';
import { loadTrainingData } from '../src/data/training-data.ts';
import { train } from '../src/odc/trainer.ts';
import { positiveIntFlag, slope } from './common.ts';

/** What "flat" means, judged over the steps after the warm-up (the first `WARMUP_STEPS`). */
const WARMUP_STEPS = 100;
const BANDS = {
  /** Live GPU buffers at an iteration's end: exactly the same at every sample. */
  liveBuffers: 0,
  /** RSS growth over the judged steps (least-squares slope times their count), MiB. */
  rssMiB: 32,
  /** Pool bytes (live + cached for reuse) growth over the judged steps, MiB. */
  poolMiB: 4,
  /** Median step time of the last third of the judged steps over that of the first third. */
  stepTimeRatio: 1.5,
} as const;

interface Sample {
  step: number;
  liveBuffers: number;
  liveMiB: number;
  cachedBuffers: number;
  cachedMiB: number;
  rssMiB: number;
  /** JavaScript heap in use (V8), to tell a JS-side leak from a native one. */
  heapMiB: number;
  /** Mean milliseconds per iteration since the previous sample. */
  stepMs: number;
}

const MiB = 1024 * 1024;

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface Verdict {
  name: string;
  measured: string;
  band: string;
  flat: boolean;
}

function judge(samples: readonly Sample[], stepTimes: readonly number[], warmup: number): Verdict[] {
  const judged = samples.filter((s) => s.step >= warmup);
  const steps = judged.map((s) => s.step);
  const span = steps[steps.length - 1] - steps[0];
  const live = judged.map((s) => s.liveBuffers);
  const liveSpread = Math.max(...live) - Math.min(...live);
  const rssGrowth =
    slope(
      steps,
      judged.map((s) => s.rssMiB),
    ) * span;
  // The second half alone: a plateau reached slowly shows as far less growth here than over the whole span.
  const secondHalf = judged.filter((s) => s.step >= steps[0] + span / 2);
  const rssLateGrowth =
    slope(
      secondHalf.map((s) => s.step),
      secondHalf.map((s) => s.rssMiB),
    ) *
    (span / 2);
  const poolGrowth =
    slope(
      steps,
      judged.map((s) => s.liveMiB + s.cachedMiB),
    ) * span;
  const times = stepTimes.slice(warmup);
  const third = Math.floor(times.length / 3);
  const ratio = median(times.slice(-third)) / median(times.slice(0, third));
  return [
    {
      name: 'live GPU buffers',
      measured: `${Math.min(...live)}..${Math.max(...live)}`,
      band: 'constant',
      flat: liveSpread <= BANDS.liveBuffers,
    },
    {
      name: 'RSS growth (fit)',
      measured: `${rssGrowth.toFixed(1)} MiB over ${span} steps (${rssLateGrowth.toFixed(1)} MiB over the last ${span / 2})`,
      band: `< ${BANDS.rssMiB} MiB`,
      flat: rssGrowth < BANDS.rssMiB,
    },
    {
      name: 'pool bytes growth (fit)',
      measured: `${poolGrowth.toFixed(2)} MiB over ${span} steps`,
      band: `< ${BANDS.poolMiB} MiB`,
      flat: poolGrowth < BANDS.poolMiB,
    },
    {
      name: 'step time, last / first third (medians)',
      measured: ratio.toFixed(2),
      band: `< ${BANDS.stepTimeRatio}`,
      flat: ratio < BANDS.stepTimeRatio,
    },
  ];
}

/** Replaces (or appends) the "## Soak" section of bench/RESULTS.md. */
function writeResults(section: string): void {
  const path = fileURLToPath(new URL('./RESULTS.md', import.meta.url));
  const text = readFileSync(path, 'utf8');
  const start = text.indexOf('\n## Soak');
  let next = start < 0 ? -1 : text.indexOf('\n## ', start + 1);
  if (next < 0) next = text.length;
  const before = start < 0 ? text.replace(/\n*$/, '\n') : text.slice(0, start + 1);
  const after = start < 0 ? '' : text.slice(next);
  writeFileSync(path, `${before}\n${section.trim()}\n${after}`);
}

async function main(): Promise<void> {
  const steps = positiveIntFlag('steps', 1000);
  const batch = positiveIntFlag('batch', 16);
  const every = positiveIntFlag('every', 50);
  const limit = positiveIntFlag('limit', 2000);
  const k = positiveIntFlag('k', 40);
  const write = !process.argv.includes('--no-write');
  const command = `npx tsx bench/soak.ts --steps ${steps} --batch ${batch} --every ${every} --limit ${limit} --k ${k}`;
  await initGpu();
  let config = presetConfig('demo');
  for (const o of [`optim.batchSize=${batch}`, `data.limit=${limit}`, `odc.k=${k}`]) config = applyOverride(config, o);
  const dataset = await loadTrainingData(config);
  const perEpoch = Math.ceil(dataset.n / batch);
  config = applyOverride(config, `optim.epochs=${Math.ceil(steps / perEpoch)}`);
  const outDir = mkdtempSync(join(tmpdir(), 'odc-soak-'));
  const samples: Sample[] = [];
  const stepTimes: number[] = [];
  let last = performance.now();
  let windowStart = last;
  console.log(
    `soak: ${steps} steps of convnet-s ODC, batch ${batch}, ${dataset.n} images (${perEpoch} steps per epoch), K ${k}; sample every ${every}`,
  );
  console.log('  step  live buf  live MiB  cached buf  cached MiB  RSS MiB  heap MiB  ms/step');
  const started = performance.now();
  try {
    await train({
      config,
      outDir,
      dataset,
      quiet: true,
      stopAfterIterations: steps,
      afterIteration: (iteration) => {
        const now = performance.now();
        stepTimes.push(now - last);
        last = now;
        if (iteration % every !== 0) return;
        const pool = gpu().pool;
        const sample: Sample = {
          step: iteration,
          liveBuffers: pool.liveCount,
          liveMiB: pool.liveByteCount / MiB,
          cachedBuffers: pool.cached.count,
          cachedMiB: pool.cached.bytes / MiB,
          rssMiB: process.memoryUsage().rss / MiB,
          heapMiB: process.memoryUsage().heapUsed / MiB,
          stepMs: (now - windowStart) / every,
        };
        windowStart = now;
        samples.push(sample);
        console.log(
          [
            sample.step,
            sample.liveBuffers,
            sample.liveMiB.toFixed(2),
            sample.cachedBuffers,
            sample.cachedMiB.toFixed(2),
            sample.rssMiB.toFixed(0),
            sample.heapMiB.toFixed(1),
            sample.stepMs.toFixed(0),
          ]
            .map((v, i) => String(v).padStart([6, 9, 9, 11, 11, 8, 9, 8][i]))
            .join(' '),
        );
      },
    });
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
  const minutes = (performance.now() - started) / 60000;
  const warmup = Math.min(WARMUP_STEPS, Math.floor(steps / 10));
  const verdicts = judge(samples, stepTimes, warmup);
  console.log(`\n${steps} steps in ${minutes.toFixed(1)} min; judged over steps ${warmup}..${steps}:`);
  for (const v of verdicts) console.log(`  ${v.flat ? 'flat ' : 'GROWS'}  ${v.name}: ${v.measured} (band ${v.band})`);
  if (!write) return;
  const g = gpu();
  const table = samples
    .filter((s, i) => i === 0 || s.step % (every * 2) === 0 || i === samples.length - 1)
    .map(
      (s) =>
        `| ${s.step} | ${s.liveBuffers} | ${s.liveMiB.toFixed(2)} | ${s.cachedBuffers} | ${s.cachedMiB.toFixed(2)} | ${s.rssMiB.toFixed(0)} | ${s.heapMiB.toFixed(1)} | ${s.stepMs.toFixed(0)} |`,
    );
  writeResults(`
## Soak (\`bench/soak.ts\`): ${steps} training steps

What: the real trainer (\`train()\`: augmentation, forward, loss, memory update, backward, SGD, centroid
recomputes, small-cluster handling, logging reads, epoch ends with NMI and a checkpoint each) for ${steps} steps of
convnet-s ODC at batch ${batch} on ${dataset.n} embedded MNIST digits (${perEpoch} steps per epoch), K ${k}. Every ${every}
steps it records the live GPU buffers (\`gpu().pool.liveCount\`) and their MiB, the released buffers the pool
keeps for reuse, the process RSS, the JavaScript heap in use and the mean step time since the previous sample. Flat is judged over steps
${warmup}..${steps} (the first ${warmup} fill the pool and the pipeline cache).

Command: \`${command}\`; run on ${new Date().toISOString().slice(0, 10)} under ${g.runtime} with ${g.implementation}, ${g.adapterName},
${cpus().length} vCPUs, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, **shared with four other jobs running GPU (lavapipe = CPU) tests**, so step
times are noisy; ${minutes.toFixed(1)} min in all.

| measure | measured | band | verdict |
|---|---|---|---|
${verdicts.map((v) => `| ${v.name} | ${v.measured} | ${v.band} | ${v.flat ? 'flat' : '**grows**'} |`).join('\n')}

| step | live buffers | live MiB | cached buffers | cached MiB | RSS MiB | JS heap MiB | ms / step |
|---:|---:|---:|---:|---:|---:|---:|---:|
${table.join('\n')}
`);
  console.log('wrote the Soak section of bench/RESULTS.md');
}

await main();
process.exit(0);
