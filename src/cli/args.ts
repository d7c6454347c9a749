/**
 * The command line, parsed: which flags each command takes, the usage text, and the training
 * configuration that a `train` command line resolves to. No GPU and no training here, so tests run the
 * exact parsing the CLI runs. The settings, their shortcuts and their help come from SETTINGS
 * (src/config/settings.ts); an unknown or misspelt flag is an error naming the nearest one.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { int, nearest, oneOf } from '../config/schema.ts';
import {
  applyOverride,
  checkPresetName,
  completeConfig,
  mergeConfig,
  presetConfig,
  PRESETS,
  settingsHelp,
  shortcuts,
  type TrainConfig,
} from '../config/settings.ts';

export interface Args {
  command: string;
  /** Each flag given (without its dashes) with its values in order; a flag without a value holds 'true'. */
  flags: Map<string, string[]>;
}

type FlagKind = 'value' | 'switch';

/** The flags of each command (besides --help); train's also take every shortcut declared in SETTINGS. */
const COMMANDS: Record<string, Record<string, FlagKind>> = {
  train: {
    preset: 'value',
    config: 'value',
    set: 'value',
    out: 'value',
    resume: 'switch',
    quiet: 'switch',
    'init-from': 'value',
    report: 'switch',
    ...Object.fromEntries(shortcuts().map((s) => [s.name, 'value' as const])),
  },
  eval: { run: 'value', 'no-baseline': 'switch', 'probe-epochs': 'value', out: 'value' },
  extract: { run: 'value', out: 'value', split: 'value', layer: 'value' },
  export: { run: 'value', out: 'value' },
  report: { run: 'value', compare: 'value', out: 'value' },
  clusters: { run: 'value', out: 'value' },
  assign: { run: 'value', data: 'value', out: 'value' },
  prepare: {
    data: 'value',
    out: 'value',
    size: 'value',
    channels: 'value',
    workers: 'value',
    decoder: 'value',
    split: 'value',
    'skip-bad': 'switch',
    quiet: 'switch',
  },
  info: {},
  tune: { repeats: 'value' },
  help: {},
};

function shortcutLines(): string {
  const parts = shortcuts().map((s) => `--${s.name} ${s.arg}`);
  const lines: string[] = [];
  for (const p of parts) {
    if (lines.length > 0 && lines[lines.length - 1].length + p.length < 96) lines[lines.length - 1] += `  ${p}`;
    else lines.push(p);
  }
  return lines.map((l) => `                ${l}`).join('\n');
}

export const USAGE = `odc: Online Deep Clustering on WebGPU

usage:
  odc train   [--preset NAME] [--config FILE.json] [--set key=value]... [--out DIR] [--resume] [--quiet] [--report]
              [--init-from FILE.safetensors]  start from a backbone's weights (PyTorch names/layouts, e.g. torchvision)
              --report rewrites DIR/report.html at every epoch end (open it in a browser to watch the run)
              --resume continues DIR from its config.json; it may change only --epochs, the LR schedule and log.*
              Ctrl-C (SIGINT/SIGTERM) stops after the current iteration with a checkpoint; a second one aborts
              shortcuts (each sets one setting; --data SOURCE[:PATH] sets data.source and data.path):
${shortcutLines()}
              odc train --help lists every setting with its allowed values and default
  odc eval    --run DIR [--no-baseline] [--probe-epochs N] [--out FILE.json]
  odc extract --run DIR --out FILE.safetensors [--split train|test] [--layer backbone|neck]
  odc export  --run DIR --out FILE.safetensors
  odc report  --run DIR [--compare DIR2]... [--out FILE.html]   (default DIR/report.html: one self-contained file)
  odc clusters --run DIR [--out FILE.csv|FILE.jsonl]   every training image: id, memory label, similarity, rank
  odc assign  --run DIR --data SOURCE[:PATH] --out FILE.csv|FILE.jsonl   new images to the trained clusters
  odc prepare --data SOURCE[:PATH] --out FILE.odcpack [--size N] [--channels 1|3] [--workers N] [--decoder auto|sharp|js]
              [--split train|test] [--skip-bad] [--quiet]   (a packed file to train from: --data pack:FILE.odcpack)
  odc info    (WebGPU adapter, limits, features, the kernel variants in use)
  odc tune    [--repeats N]   times the kernel variants on this adapter and caches the winners
              (ODC_TUNE=off|cached|full: the fixed defaults, the cached table, or tune before training)

presets: ${Object.keys(PRESETS).join(', ')}`;

/** `odc train --help`: the usage, then every setting. */
export function trainHelp(): string {
  return `${USAGE}\n\nsettings (--set key=value, a --config file, or the shortcut in brackets):\n${settingsHelp()}`;
}

/** Splits argv into a command and its flags; an unknown command or flag is an error naming the nearest known one. */
export function parseArgs(argv: readonly string[]): Args {
  const [command = 'help', ...rest] = argv;
  const known = COMMANDS[command];
  if (!known) {
    const near = nearest(command, Object.keys(COMMANDS));
    throw new Error(`unknown command "${command}"${near ? ` (did you mean "${near}"?)` : ''}\n\n${USAGE}`);
  }
  const flags = new Map<string, string[]>();
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (!a.startsWith('--') || a.length === 2)
      throw new Error(`unexpected argument "${a}": odc ${command} takes only --flags (see odc ${command} --help)`);
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    const kind = name === 'help' ? 'switch' : known[name];
    if (kind === undefined) {
      const near = nearest(name, [...Object.keys(known), 'help']);
      throw new Error(
        `odc ${command} has no flag --${name}${near ? ` (did you mean --${near}?)` : ''}; see odc ${command} --help`,
      );
    }
    let value: string;
    if (kind === 'switch') {
      if (eq > 0) throw new Error(`--${name} is a switch and takes no value, got "${a}": write --${name} alone`);
      value = 'true';
    } else if (eq > 0) value = a.slice(eq + 1);
    else {
      value = rest[++i];
      if (value === undefined || value.startsWith('--')) {
        throw new Error(
          `--${name} needs a value${value === undefined ? '' : `, got the flag ${value}`} (see odc ${command} --help)`,
        );
      }
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { command, flags };
}

/** The last value given for a flag. */
function one(args: Args, name: string): string | undefined {
  return args.flags.get(name)?.at(-1);
}

function required(args: Args, name: string): string {
  const v = one(args, name);
  if (v === undefined) throw new Error(`odc ${args.command} needs --${name}\n\n${USAGE}`);
  return v;
}

/** A flag holding a whole number (--probe-epochs), checked as a setting is. */
function countFlag(args: Args, name: string, fallback: number): number {
  const text = one(args, name);
  if (text === undefined) return fallback;
  const value = /^-?[0-9.e+]+$/i.test(text) && Number.isFinite(Number(text)) ? Number(text) : text;
  return int(fallback, { min: 1, doc: '' }).check(value, `--${name}`);
}

/** A flag holding one of a few names (--split, --layer). */
function choiceFlag<const V extends readonly string[]>(
  args: Args,
  name: string,
  values: V,
  fallback: V[number],
): V[number] {
  return oneOf(values, fallback, { doc: '' }).check(one(args, name) ?? fallback, `--${name}`);
}

/** preset -> config file -> shortcuts -> --set, later ones winning. */
function configFromArgs(args: Args): TrainConfig {
  return withExplicitFlags(presetConfig(one(args, 'preset') ?? 'demo'), args);
}

/**
 * The configuration of a resumed run: the run's config.json, then only the flags given on this command
 * (a --preset is compared by name, not re-applied: its defaults are not flags). The trainer refuses the
 * changes a resume may not make.
 */
export function resumeConfigFromArgs(args: Args, outDir: string): TrainConfig {
  const path = join(outDir, 'config.json');
  if (!existsSync(path))
    throw new Error(
      `--resume needs the run's ${path}, which does not exist: point --out at a training output folder, or drop --resume to start a new run.`,
    );
  let stored: unknown;
  try {
    stored = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(
      `${path} is not valid JSON (${(err as Error).message}): restore it from the checkpoint's run, or start a new run with --out NEWDIR.`,
    );
  }
  const config = completeConfig(stored, path);
  const preset = one(args, 'preset');
  return withExplicitFlags(preset === undefined ? config : { ...config, preset: checkPresetName(preset) }, args);
}

/** Prefixes an error with where its value came from, unless the message already says so. */
function from(where: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return new Error(message.startsWith(where) ? message : `${where}: ${message}`);
}

/** Applies the flags the user gave: --config file, then the shortcuts, then each --set. */
function withExplicitFlags(base: TrainConfig, args: Args): TrainConfig {
  let config = base;
  const file = one(args, 'config');
  if (file !== undefined) {
    if (!existsSync(file)) throw new Error(`config file ${file} does not exist`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
    try {
      config = mergeConfig(config, parsed, file);
    } catch (err) {
      throw from(file, err);
    }
  }
  for (const s of shortcuts()) {
    const text = one(args, s.name);
    if (text === undefined) continue;
    try {
      for (const [key, value] of s.assignments(text)) config = applyOverride(config, `${key}=${value}`);
    } catch (err) {
      throw from(`--${s.name} ${text}`, err);
    }
  }
  for (const assignment of args.flags.get('set') ?? []) config = applyOverride(config, assignment);
  return config;
}

export interface TrainCommand {
  config: TrainConfig;
  outDir: string;
  resume: boolean;
  quiet: boolean;
  /** A safetensors file of backbone weights to start a new run from. */
  initFrom: string | undefined;
  /** Rewrite DIR/report.html at every epoch end. */
  report: boolean;
}

/** What an `odc train` command line asks for: the resolved configuration, the output folder and the switches. */
function trainCommand(args: Args): TrainCommand {
  const resume = args.flags.has('resume');
  const outDir = one(args, 'out') ?? `runs/${one(args, 'preset') ?? 'demo'}`;
  const initFrom = one(args, 'init-from');
  if (resume && initFrom !== undefined)
    throw new Error('--init-from starts a new run from given weights and --resume continues a run: use one of them');
  if (initFrom !== undefined && !existsSync(initFrom))
    throw new Error(
      `--init-from ${initFrom}: no such file (a safetensors file of backbone weights, e.g. from odc export)`,
    );
  const config = resume ? resumeConfigFromArgs(args, outDir) : configFromArgs(args);
  return { config, outDir, resume, quiet: args.flags.has('quiet'), initFrom, report: args.flags.has('report') };
}

/** A command line, fully checked: every flag known, every value allowed, the training configuration resolved. */
export type Command =
  | { command: 'help'; text: string }
  | { command: 'info' }
  | { command: 'tune'; repeats: number }
  | ({ command: 'train' } & TrainCommand)
  | { command: 'eval'; runDir: string; baseline: boolean; probeEpochs: number; out: string | undefined }
  | { command: 'extract'; runDir: string; out: string; split: 'train' | 'test'; layer: 'backbone' | 'neck' }
  | { command: 'export'; runDir: string; out: string }
  | { command: 'report'; runDir: string; compare: string[]; out: string | undefined }
  | { command: 'clusters'; runDir: string; out: string }
  | { command: 'assign'; runDir: string; data: string; out: string }
  | ({ command: 'prepare' } & PrepareCommand);

/** What an `odc prepare` command line asks for (see src/data/prepare.ts). */
export interface PrepareCommand {
  data: string;
  out: string;
  size: number | undefined;
  channels: 1 | 3 | undefined;
  workers: number | undefined;
  decoder: 'auto' | 'sharp' | 'js';
  split: 'train' | 'test';
  skipBad: boolean;
  quiet: boolean;
}

function prepareCommand(args: Args): PrepareCommand {
  const size = one(args, 'size') === undefined ? undefined : countFlag(args, 'size', 1);
  const workersText = one(args, 'workers');
  const workers = workersText === undefined ? undefined : workersText === '0' ? 0 : countFlag(args, 'workers', 1);
  const channels =
    one(args, 'channels') === undefined ? undefined : choiceFlag(args, 'channels', ['1', '3'], '3') === '1' ? 1 : 3;
  return {
    data: required(args, 'data'),
    out: required(args, 'out'),
    size,
    channels,
    workers,
    decoder: choiceFlag(args, 'decoder', ['auto', 'sharp', 'js'], 'auto'),
    split: choiceFlag(args, 'split', ['train', 'test'], 'train'),
    skipBad: args.flags.has('skip-bad'),
    quiet: args.flags.has('quiet'),
  };
}

/** What the command line asks for; the CLI runs exactly this, so a bad line fails here, before the GPU starts. */
export function commandFromArgv(argv: readonly string[]): Command {
  const args = parseArgs(argv);
  if (args.command === 'help' || args.flags.has('help'))
    return { command: 'help', text: args.command === 'train' ? trainHelp() : USAGE };
  switch (args.command) {
    case 'train':
      return { command: 'train', ...trainCommand(args) };
    case 'eval':
      return {
        command: 'eval',
        runDir: required(args, 'run'),
        baseline: !args.flags.has('no-baseline'),
        probeEpochs: countFlag(args, 'probe-epochs', 30),
        out: one(args, 'out'),
      };
    case 'extract':
      return {
        command: 'extract',
        runDir: required(args, 'run'),
        out: required(args, 'out'),
        split: choiceFlag(args, 'split', ['train', 'test'], 'train'),
        layer: choiceFlag(args, 'layer', ['backbone', 'neck'], 'backbone'),
      };
    case 'export':
      return { command: 'export', runDir: required(args, 'run'), out: required(args, 'out') };
    case 'report':
      return {
        command: 'report',
        runDir: required(args, 'run'),
        compare: args.flags.get('compare') ?? [],
        out: one(args, 'out'),
      };
    case 'clusters': {
      const runDir = required(args, 'run');
      return { command: 'clusters', runDir, out: one(args, 'out') ?? join(runDir, 'clusters.csv') };
    }
    case 'assign':
      return {
        command: 'assign',
        runDir: required(args, 'run'),
        data: required(args, 'data'),
        out: required(args, 'out'),
      };
    case 'tune':
      return { command: 'tune', repeats: countFlag(args, 'repeats', 5) };
    case 'prepare':
      return { command: 'prepare', ...prepareCommand(args) };
    default: // info: parseArgs accepts only the commands of COMMANDS
      return { command: 'info' };
  }
}
