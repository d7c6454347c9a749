#!/usr/bin/env -S npx tsx
/**
 * odc: the command-line interface.
 *   odc train   [--preset demo] [--config file.json] [--set key=value]... [--out DIR] [--resume] [--quiet]
 *   odc eval    --run DIR [--no-baseline] [--probe-epochs N] [--out report.json]
 *   odc extract --run DIR --out features.safetensors [--split train|test] [--layer backbone|neck]
 *   odc export  --run DIR --out backbone.safetensors
 *   odc info
 * Common flags map to config keys: --epochs, --batch-size, --lr, --k, --limit, --seed, --mode, --data.
 * A resumed run starts from its own config.json, with only the flags given on that command applied.
 * The first SIGINT/SIGTERM stops training after the current iteration with a checkpoint; a second one
 * exits at once without writing one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureWritableFolder } from '../data/files.ts';
import { closeGpu, initGpu } from '../gpu/device.ts';
import { applyOverride, completeConfig, mergeConfig, presetConfig, PRESETS, type TrainConfig } from '../odc/config.ts';
import { abandonPendingWrites } from '../odc/checkpoint-io.ts';
import { CHECKPOINT_FILE } from '../odc/checkpoint.ts';
import { GpuDeviceLostError, GpuOutOfMemoryError } from '../gpu/errors.ts';

const USAGE = `odc: Online Deep Clustering on WebGPU

usage:
  odc train   [--preset NAME] [--config FILE.json] [--set key=value]... [--out DIR] [--resume] [--quiet]
              --resume continues DIR from its config.json; it may change only --epochs, the LR schedule and log.*
              Ctrl-C (SIGINT/SIGTERM) stops after the current iteration with a checkpoint; a second one aborts
              shortcuts: --epochs N --batch-size N --lr X --k N --limit N --seed N --mode odc|deepcluster
                         --data SOURCE[:PATH]  (mnist, fashion-mnist[:DIR], idx:IMAGES[,LABELS], cifar10:DIR, cifar100:DIR, folder:DIR)
  odc eval    --run DIR [--no-baseline] [--probe-epochs N] [--out FILE.json]
  odc extract --run DIR --out FILE.safetensors [--split train|test] [--layer backbone|neck]
  odc export  --run DIR --out FILE.safetensors
  odc info    (WebGPU adapter, limits, features)

presets: ${Object.keys(PRESETS).join(', ')}`;

interface Args {
  command: string;
  flags: Map<string, string[]>;
}

const BOOLEAN_FLAGS = new Set(['resume', 'quiet', 'no-baseline', 'help']);

function parseArgs(argv: string[]): Args {
  const [command = 'help', ...rest] = argv;
  const flags = new Map<string, string[]>();
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"\n\n${USAGE}`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq > 0) value = a.slice(eq + 1);
    else if (BOOLEAN_FLAGS.has(name)) value = 'true';
    else {
      value = rest[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { command, flags };
}

function one(args: Args, name: string): string | undefined {
  return args.flags.get(name)?.at(-1);
}

function required(args: Args, name: string): string {
  const v = one(args, name);
  if (v === undefined) throw new Error(`odc ${args.command} needs --${name}\n\n${USAGE}`);
  return v;
}

const SHORTCUTS: Record<string, string> = {
  epochs: 'optim.epochs',
  'batch-size': 'optim.batchSize',
  lr: 'optim.lr',
  k: 'odc.k',
  'min-cluster': 'odc.minCluster',
  limit: 'data.limit',
  seed: 'seed',
  mode: 'mode',
  backbone: 'model.backbone',
};

/** preset -> config file -> shortcuts -> --set, later ones winning. */
export function configFromArgs(args: Args): TrainConfig {
  return withExplicitFlags(presetConfig(one(args, 'preset') ?? 'demo'), args);
}

/**
 * The configuration of a resumed run: the run's config.json, then only the flags given on this command
 * (a --preset is compared by name, not re-applied: its defaults are not flags). The trainer refuses the
 * changes a resume may not make.
 */
export function resumeConfigFromArgs(args: Args, outDir: string): TrainConfig {
  const path = join(outDir, 'config.json');
  if (!existsSync(path)) throw new Error(`--resume needs the run's ${path}, which does not exist: point --out at a training output folder, or drop --resume to start a new run.`);
  let stored: unknown;
  try {
    stored = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}): restore it from the checkpoint's run, or start a new run with --out NEWDIR.`);
  }
  const config = completeConfig(stored, path);
  const preset = one(args, 'preset');
  return withExplicitFlags(preset === undefined ? config : { ...config, preset }, args);
}

/** Applies the flags the user gave: --config file, then the shortcuts and --data, then each --set. */
function withExplicitFlags(base: TrainConfig, args: Args): TrainConfig {
  let config = base;
  const file = one(args, 'config');
  if (file) {
    if (!existsSync(file)) throw new Error(`config file ${file} does not exist`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    config = mergeConfig(config, parsed, file);
  }
  for (const [flag, key] of Object.entries(SHORTCUTS)) {
    const v = one(args, flag);
    if (v !== undefined) config = applyOverride(config, `${key}=${v}`);
  }
  const data = one(args, 'data');
  if (data !== undefined) {
    const colon = data.indexOf(':');
    config = applyOverride(config, `data.source=${colon < 0 ? data : data.slice(0, colon)}`);
    config = applyOverride(config, `data.path=${colon < 0 ? '' : data.slice(colon + 1)}`);
  }
  for (const assignment of args.flags.get('set') ?? []) config = applyOverride(config, assignment);
  return config;
}

/** Exit codes of a run stopped by a signal (128 + its number, as a shell reports a process it killed). */
const SIGNAL_EXIT_CODES: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** The exact command that resumes the run in outDir, under the runtime running now. */
function resumeCommand(outDir: string): string {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  const runner = g.Deno ? 'deno run -A' : g.Bun ? 'bun' : 'npx tsx';
  const script = relative(process.cwd(), fileURLToPath(import.meta.url));
  const quote = (s: string): string => (/^[\w./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  return `${runner} ${quote(script)} train --out ${quote(outDir)} --resume`;
}

/**
 * SIGINT/SIGTERM during training. The first asks `stop` to stop: training finishes the iteration, writes
 * a checkpoint and returns. The second exits at once: a checkpoint write in progress is abandoned (its
 * temporary file removed), so the last complete checkpoint stays exactly as it was. Returns a function
 * that removes the handlers.
 */
function installStopHandlers(stop: AbortController, outDir: string): () => void {
  const onSignal = (signal: string): void => {
    if (!stop.signal.aborted) {
      stop.abort(signal);
      console.error(`\nodc: ${signal}: stopping after this iteration to write a checkpoint (a second Ctrl-C or SIGTERM aborts at once, without one)`);
      return;
    }
    abandonPendingWrites();
    const kept = existsSync(join(outDir, CHECKPOINT_FILE))
      ? `the last complete checkpoint is kept; resume with: ${resumeCommand(outDir)}`
      : 'no checkpoint had been written yet: start the run again';
    console.error(`\nodc: a second stop signal (${signal}): aborted without writing a checkpoint; ${kept}`);
    process.exit(SIGNAL_EXIT_CODES[signal]);
  };
  for (const signal of Object.keys(SIGNAL_EXIT_CODES)) process.on(signal, onSignal);
  return () => {
    for (const signal of Object.keys(SIGNAL_EXIT_CODES)) process.off(signal, onSignal);
  };
}

/** An output file's folder is made and proven writable before the work that ends by writing it. */
function checkOutputFile(path: string | undefined): void {
  if (path !== undefined) ensureWritableFolder(dirname(resolve(path)), `folder of --out ${path}`);
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.command === 'help' || args.flags.has('help')) {
    console.log(USAGE);
    return 0;
  }
  const gpu = await initGpu();
  switch (args.command) {
    case 'info': {
      console.log(`adapter: ${gpu.adapterName}\nimplementation: ${gpu.implementation} (${gpu.runtime})`);
      console.log(`features: ${JSON.stringify(gpu.features)}`);
      const l = gpu.limits;
      console.log(`maxStorageBufferBindingSize ${l.maxStorageBufferBindingSize}, maxBufferSize ${l.maxBufferSize}, storage buffers/stage ${l.maxStorageBuffersPerShaderStage}`);
      return 0;
    }
    case 'train': {
      const { train } = await import('../odc/trainer.ts');
      const resume = args.flags.has('resume');
      const outDir = one(args, 'out') ?? `runs/${one(args, 'preset') ?? 'demo'}`;
      const config = resume ? resumeConfigFromArgs(args, outDir) : configFromArgs(args);
      console.log(`odc train: preset ${config.preset}, mode ${config.mode}, ${config.model.backbone}, K = ${config.odc.k}, ${config.optim.epochs} epochs, batch ${config.optim.batchSize} -> ${outDir}`);
      console.log(`GPU: ${gpu.adapterName} (${gpu.implementation} under ${gpu.runtime})`);
      const stop = new AbortController();
      const removeHandlers = installStopHandlers(stop, outDir);
      try {
        const result = await train({ config, outDir, resume, quiet: args.flags.has('quiet'), signal: stop.signal }).catch((err: unknown) => {
          throw withCheckpointNote(err, outDir);
        });
        if (result.interrupted) {
          const p = result.position;
          console.log(`\nstopped at epoch ${p.epoch + 1}, batch ${p.batchInEpoch} (iteration ${p.iteration}); checkpoint ${result.checkpoint}`);
          console.log(`resume with: ${resumeCommand(outDir)}`);
          return SIGNAL_EXIT_CODES[String(stop.signal.reason)] ?? 1;
        }
        console.log(`done: ${result.iterations} iterations in ${result.seconds.toFixed(1)} s; checkpoint ${result.checkpoint}`);
      } finally {
        removeHandlers();
      }
      return 0;
    }
    case 'eval': {
      const { evaluateRun } = await import('../eval/run-eval.ts');
      checkOutputFile(one(args, 'out'));
      await evaluateRun({
        runDir: required(args, 'run'),
        baseline: !args.flags.has('no-baseline'),
        probeEpochs: Number(one(args, 'probe-epochs') ?? 30),
        out: one(args, 'out'),
      });
      return 0;
    }
    case 'extract': {
      const { extractToFile } = await import('../eval/run-eval.ts');
      const layer = one(args, 'layer') ?? 'backbone';
      if (layer !== 'backbone' && layer !== 'neck') throw new Error(`--layer must be backbone or neck, got ${layer}`);
      const split = one(args, 'split') ?? 'train';
      if (split !== 'train' && split !== 'test') throw new Error(`--split must be train or test, got ${split}`);
      checkOutputFile(required(args, 'out'));
      await extractToFile({ runDir: required(args, 'run'), out: required(args, 'out'), split, layer });
      return 0;
    }
    case 'export': {
      const { exportBackbone } = await import('../eval/run-eval.ts');
      checkOutputFile(required(args, 'out'));
      await exportBackbone({ runDir: required(args, 'run'), out: required(args, 'out') });
      return 0;
    }
    default:
      throw new Error(`unknown command "${args.command}"\n\n${USAGE}`);
  }
}

/** A GPU fault's message, plus whether the last checkpoint is there (a fault never writes one) and how to go on. */
function withCheckpointNote(err: unknown, outDir: string): unknown {
  if (!(err instanceof GpuDeviceLostError || err instanceof GpuOutOfMemoryError)) return err;
  const path = `${outDir}/checkpoint.odc`;
  if (!existsSync(path)) err.message += ' No checkpoint had been written yet.';
  else if (err instanceof GpuDeviceLostError) err.message += ` The last checkpoint, ${path}, is intact: run the same command with --resume to go on.`;
  else err.message += ` The last checkpoint, ${path}, is intact (--resume continues it on a larger GPU; a smaller batch or model needs a new run).`;
  return err;
}

main(process.argv.slice(2)).then(
  // the GPU ends in order (work finished, device destroyed) before the runtime does, as in the tests
  (code) => closeGpu().then(() => process.exit(code)),
  (err: unknown) => {
    console.error(`\nodc: ${err instanceof Error ? err.message : String(err)}`);
    if (process.env.ODC_DEBUG && err instanceof Error) console.error(err.stack);
    process.exit(1);
  },
);
