#!/usr/bin/env -S npx tsx
/**
 * odc: the command-line interface.
 *   odc train   [--preset demo] [--config file.json] [--set key=value]... [--out DIR] [--resume] [--quiet]
 *   odc eval    --run DIR [--no-baseline] [--probe-epochs N] [--out report.json]
 *   odc extract --run DIR --out features.safetensors [--split train|test] [--layer backbone|neck]
 *   odc export  --run DIR --out backbone.safetensors
 *   odc info
 * Common flags map to config keys: --epochs, --batch-size, --lr, --k, --limit, --seed, --mode, --data.
 */
import { existsSync, readFileSync } from 'node:fs';
import { closeGpu, initGpu } from '../gpu/device.ts';
import { applyOverride, mergeConfig, presetConfig, PRESETS, type TrainConfig } from '../odc/config.ts';

const USAGE = `odc: Online Deep Clustering on WebGPU

usage:
  odc train   [--preset NAME] [--config FILE.json] [--set key=value]... [--out DIR] [--resume] [--quiet]
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
  let config = presetConfig(one(args, 'preset') ?? 'demo');
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

async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  if (args.command === 'help' || args.flags.has('help')) {
    console.log(USAGE);
    return;
  }
  const gpu = await initGpu();
  switch (args.command) {
    case 'info': {
      console.log(`adapter: ${gpu.adapterName}\nimplementation: ${gpu.implementation} (${gpu.runtime})`);
      console.log(`features: ${JSON.stringify(gpu.features)}`);
      const l = gpu.limits;
      console.log(`maxStorageBufferBindingSize ${l.maxStorageBufferBindingSize}, maxBufferSize ${l.maxBufferSize}, storage buffers/stage ${l.maxStorageBuffersPerShaderStage}`);
      return;
    }
    case 'train': {
      const { train } = await import('../odc/trainer.ts');
      const config = configFromArgs(args);
      const outDir = one(args, 'out') ?? `runs/${config.preset}`;
      console.log(`odc train: preset ${config.preset}, mode ${config.mode}, ${config.model.backbone}, K = ${config.odc.k}, ${config.optim.epochs} epochs, batch ${config.optim.batchSize} -> ${outDir}`);
      console.log(`GPU: ${gpu.adapterName} (${gpu.implementation} under ${gpu.runtime})`);
      const result = await train({ config, outDir, resume: args.flags.has('resume'), quiet: args.flags.has('quiet') });
      console.log(`done: ${result.iterations} iterations in ${result.seconds.toFixed(1)} s; checkpoint ${result.checkpoint}`);
      return;
    }
    case 'eval': {
      const { evaluateRun } = await import('../eval/run-eval.ts');
      await evaluateRun({
        runDir: required(args, 'run'),
        baseline: !args.flags.has('no-baseline'),
        probeEpochs: Number(one(args, 'probe-epochs') ?? 30),
        out: one(args, 'out'),
      });
      return;
    }
    case 'extract': {
      const { extractToFile } = await import('../eval/run-eval.ts');
      const layer = one(args, 'layer') ?? 'backbone';
      if (layer !== 'backbone' && layer !== 'neck') throw new Error(`--layer must be backbone or neck, got ${layer}`);
      const split = one(args, 'split') ?? 'train';
      if (split !== 'train' && split !== 'test') throw new Error(`--split must be train or test, got ${split}`);
      await extractToFile({ runDir: required(args, 'run'), out: required(args, 'out'), split, layer });
      return;
    }
    case 'export': {
      const { exportBackbone } = await import('../eval/run-eval.ts');
      await exportBackbone({ runDir: required(args, 'run'), out: required(args, 'out') });
      return;
    }
    default:
      throw new Error(`unknown command "${args.command}"\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  // the GPU ends in order (work finished, device destroyed) before the runtime does, as in the tests
  () => closeGpu().then(() => process.exit(0)),
  (err: unknown) => {
    console.error(`\nodc: ${err instanceof Error ? err.message : String(err)}`);
    if (process.env.ODC_DEBUG && err instanceof Error) console.error(err.stack);
    process.exit(1);
  },
);
