/**
 * Shared by the end-to-end training tests (train, deepcluster, resume, midepoch, checkpoint-meaning,
 * interrupt*, device-faults, quiet, report-run, ...): a tiny synthetic data set (also as IDX files for the
 * command line), a configuration small enough for lavapipe (with overrides) and the flags that give it, the
 * flags of a tiny run on the embedded digits, a byte-level checkpoint comparison, the clock-free part of a
 * run's log, and the command line in a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assert } from './helpers.ts';
import { presetConfig, applyOverride, type TrainConfig } from '../src/config/settings.ts';
import { readRecords } from '../src/odc/checkpoint-io.ts';
import { Rng } from '../src/util/rng.ts';
import type { ImageDataset } from '../src/data/dataset.ts';

/** 96 grayscale 8x8 images of 4 kinds (bars at different places) with noise. */
export function syntheticDataset(n = 96): ImageDataset {
  const rng = new Rng(42);
  const images = new Uint8Array(n * 64);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const kind = i % 4;
    labels[i] = kind;
    for (let y = 0; y < 8; y++) {
      for (let x = 0; x < 8; x++) {
        const on = kind === 0 ? y < 3 : kind === 1 ? y > 4 : kind === 2 ? x < 3 : x > 4;
        images[i * 64 + y * 8 + x] = Math.min(255, Math.round((on ? 200 : 20) + rng.range(0, 50)));
      }
    }
  }
  return { name: 'synthetic-bars', n, height: 8, width: 8, channels: 1, images, labels, numClasses: 4 };
}

/** `config` with `key=value` overrides applied in order (as `--set` applies them). */
export function withOverrides(config: TrainConfig, ...overrides: string[]): TrainConfig {
  return overrides.reduce((c, o) => applyOverride(c, o), config);
}

/** The demo preset made small enough for lavapipe (batch 16, 2 epochs, K 8, a narrow neck), then `overrides`. */
export function tinyConfig(...overrides: string[]): TrainConfig {
  return withOverrides(
    presetConfig('demo'),
    'optim.batchSize=16',
    'optim.epochs=2',
    'odc.k=8',
    'odc.minCluster=10',
    'odc.centroidInterval=3',
    'odc.kmeansIterations=5',
    'model.neckHidden=32',
    'model.featureDim=16',
    'log.interval=4',
    ...overrides,
  );
}

/**
 * Writes a data set as IDX files in `dir` (images, then labels, big-endian headers as MNIST's) and returns
 * the `idx:` source spec that loads it, for runs of the command line in a child process.
 */
export function writeIdxDataset(dir: string, ds: ImageDataset): string {
  const header = (magic: number, dims: number[]): Uint8Array => {
    const h = new DataView(new ArrayBuffer(4 + 4 * dims.length));
    h.setUint32(0, magic);
    dims.forEach((d, i) => h.setUint32(4 + 4 * i, d));
    return new Uint8Array(h.buffer);
  };
  const images = join(dir, 'images.idx');
  const labels = join(dir, 'labels.idx');
  writeFileSync(images, Buffer.concat([header(0x803, [ds.n, ds.height, ds.width]), ds.images]));
  writeFileSync(labels, Buffer.concat([header(0x801, [ds.n]), Uint8Array.from(ds.labels ?? new Int32Array(ds.n))]));
  return `idx:${images},${labels}`;
}

/** The command-line flags that reproduce tinyConfig() (the demo preset plus these). */
export const TINY_FLAGS = [
  '--batch-size',
  '16',
  '--epochs',
  '2',
  '--k',
  '8',
  '--min-cluster',
  '10',
  '--set',
  'odc.centroidInterval=3',
  '--set',
  'odc.kmeansIterations=5',
  '--set',
  'model.neckHidden=32',
  '--set',
  'model.featureDim=16',
  '--set',
  'log.interval=4',
];

/**
 * `odc train` flags of a tiny run on the embedded digits (no data files to write): the demo preset on 96 of
 * them, batch 16 (so 6 iterations an epoch), K 4, a narrow neck.
 */
export const TINY_DIGITS_FLAGS = [
  '--preset',
  'demo',
  '--limit',
  '96',
  '--batch-size',
  '16',
  '--k',
  '4',
  '--min-cluster',
  '2',
  '--set',
  'model.neckHidden=32',
  '--set',
  'model.featureDim=16',
];

/** A tinyConfig() whose data are the IDX files of `writeIdxDataset` (so the command line and train() load the same). */
export function tinyIdxConfig(spec: string, epochs: number): TrainConfig {
  const colon = spec.indexOf(':');
  return tinyConfig(
    `data.source=${spec.slice(0, colon)}`,
    `data.path=${spec.slice(colon + 1)}`,
    `optim.epochs=${epochs}`,
  );
}

const root = fileURLToPath(new URL('..', import.meta.url));
const g = globalThis as { Deno?: unknown; Bun?: unknown };
/** The command line under the runtime running the tests (Node through tsx, Bun, Deno). */
const CLI = [...(g.Deno ? ['run', '-A'] : g.Bun ? [] : ['--import', 'tsx']), 'src/cli/main.ts'];

export interface CliRun {
  child: ChildProcess;
  /** Resolves at the first stdout line matching `pattern`, with the milliseconds since the start. */
  line(pattern: RegExp): Promise<number>;
  /** Resolves when the process has exited: its exit code (or the signal that ended it) and its output. */
  exit: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>;
}

/** Starts `odc ARGS...` in a child process, as a user would from the repository root. */
export function startCli(args: string[]): CliRun {
  const started = performance.now();
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiting: Array<{ pattern: RegExp; resolve: (ms: number) => void }> = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const w of [...waiting]) {
      if (w.pattern.test(stdout)) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(performance.now() - started);
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>(
    (resolve) => {
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    },
  );
  return {
    child,
    exit,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        if (pattern.test(stdout)) return resolve(performance.now() - started);
        waiting.push({ pattern, resolve });
        void exit.then((r) =>
          reject(
            new Error(
              `odc exited (code ${r.code}, signal ${r.signal}) before printing ${pattern}:\n${r.stdout}\n${r.stderr}`,
            ),
          ),
        );
      }),
  };
}

/** Every record of the run's log.jsonl in `dir`, in order. */
export function readLog(dir: string): Array<Record<string, unknown>> {
  return readFileSync(join(dir, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** What the run in `dir` logged that does not depend on the clock: the per-interval records and the epoch summaries. */
export function loggedResults(dir: string): Array<Record<string, unknown>> {
  const keep = [
    'event',
    'epoch',
    'iteration',
    'loss',
    'headAccuracy',
    'changeRatio',
    'nmi',
    'smallClusters',
    'minCluster',
    'maxCluster',
    'splits',
  ];
  return readLog(dir)
    .filter((r) => r.event === undefined || r.event === 'epoch')
    .map((r) => Object.fromEntries(keep.filter((k) => k in r).map((k) => [k, r[k]])));
}

/** Temporary files (of interrupted checkpoint writes) left in `dir`. */
export function tempFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('.tmp-'));
}

/**
 * Byte-level comparison of two checkpoints, record by record (`between` names the two runs in a failure); returns
 * both meta records for callers that compare them up to a setting.
 */
export async function assertSameCheckpoint(
  dirA: string,
  dirB: string,
  between = 'after resume',
): Promise<[unknown, unknown]> {
  const a = await readRecords(join(dirA, 'checkpoint.odc'));
  const b = await readRecords(join(dirB, 'checkpoint.odc'));
  assert.deepEqual([...a.records.keys()].sort(), [...b.records.keys()].sort());
  for (const [name, ra] of a.records) {
    const rb = b.records.get(name)!;
    const bytesA = new Uint8Array(ra.data.buffer, ra.data.byteOffset, ra.data.byteLength);
    const bytesB = new Uint8Array(rb.data.buffer, rb.data.byteOffset, rb.data.byteLength);
    assert.ok(Buffer.compare(bytesA, bytesB) === 0, `record ${name} differs ${between}`);
  }
  return [a.meta, b.meta];
}
