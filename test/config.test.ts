/**
 * The settings schema and the command line, without a GPU: a corpus of bad command lines and config files
 * (each one error naming the key or flag, the value and what is allowed or the nearest valid name), valid
 * lines that resolve to today's configurations (presets compared with a snapshot taken before the schema),
 * the README's settings table against the schema, and a few bad lines through the real CLI in a child process.
 */
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert } from './helpers.ts';
import { runCli } from './cli-child.ts';
import { commandFromArgv } from '../src/cli/args.ts';
import { checkAll, defaults, editDistance, leaves, nearest } from '../src/config/schema.ts';
import { withSettingsTable } from '../src/config/readme-table.ts';
import {
  applyOverride,
  mayChangeOnResume,
  PRESETS,
  presetConfig,
  SETTINGS,
  shortcuts,
  validateConfig,
  type TrainConfig,
} from '../src/config/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'odc-config-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

/** Writes a config file into the temporary folder and returns its path. */
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** The configuration a train command line resolves to (through the CLI's own parser). */
function trainConfig(argv: string[]): TrainConfig {
  const c = commandFromArgv(['train', ...argv]);
  assert.equal(c.command, 'train');
  return (c as { config: TrainConfig }).config;
}

/** Today's preset configurations (snapshot taken from main before the schema), with the memory knobs and precision added since. */
const snapshot = JSON.parse(readFileSync(new URL('./fixtures/preset-configs.json', import.meta.url), 'utf8')) as Record<
  string,
  TrainConfig
>;
/** OdcMemory's and twoMeansSplit's own defaults (src/odc/memory.ts, src/odc/split.ts), now settings. */
const MEMORY_KNOBS = { kmeansInit: 'random', splitRestarts: 3, splitMaxIter: 20 };

function expected(preset: string, edit: (c: TrainConfig) => void = () => {}): TrainConfig {
  const c = structuredClone(snapshot[preset]);
  Object.assign(c.odc, MEMORY_KNOBS);
  // optim.precision (issue 10) sits after optim.nesterov, at f32: the precision every run had before; then the
  // loss-scaling knobs, which only f16 runs use.
  const { lrSteps, lrGamma, ...optimHead } = c.optim;
  const lossScaling = { lossScale: 'dynamic', lossScaleLog2: 16, lossScaleInterval: 2000 } as const;
  // optim.replay (issue 9) comes last: it changes how a step is recorded, never its numbers.
  c.optim = { ...optimHead, precision: 'f32', ...lossScaling, lrSteps, lrGamma, replay: true };
  edit(c);
  return c;
}

test('every preset resolves to the same configuration as before the schema (plus the memory knobs at their old defaults)', () => {
  assert.deepEqual(Object.keys(PRESETS), Object.keys(snapshot));
  for (const name of Object.keys(PRESETS)) {
    const now = presetConfig(name);
    // Same values and the same key order (config.json and the resume check list keys in this order).
    assert.equal(JSON.stringify(now), JSON.stringify(expected(name)), `preset ${name}`);
  }
});

// [argv after "train", the config it gives], each compared with the snapshot edited by hand.
const VALID: Array<[string[], TrainConfig]> = [
  [[], expected('demo')],
  [['--epochs', '5'], expected('demo', (c) => (c.optim.epochs = 5))],
  [['--epochs=5', '--k', '12'], expected('demo', (c) => ((c.optim.epochs = 5), (c.odc.k = 12)))],
  [
    ['--preset', 'cifar', '--batch-size', '32', '--lr', '0.1'],
    expected('cifar', (c) => ((c.optim.batchSize = 32), (c.optim.lr = 0.1))),
  ],
  [['--mode', 'deepcluster', '--seed', '7'], expected('demo', (c) => ((c.mode = 'deepcluster'), (c.seed = 7)))],
  [['--limit', '0', '--min-cluster', '3'], expected('demo', (c) => ((c.data.limit = 0), (c.odc.minCluster = 3)))],
  [['--backbone', 'resnet18'], expected('demo', (c) => (c.model.backbone = 'resnet18'))],
  [
    ['--data', 'idx:a.idx,b.idx,10'],
    expected('demo', (c) => ((c.data.source = 'idx'), (c.data.path = 'a.idx,b.idx,10'))),
  ],
  [
    ['--data', 'mnist-idx:/data/mnist'],
    expected('demo', (c) => ((c.data.source = 'mnist-idx'), (c.data.path = '/data/mnist'))),
  ],
  [
    ['--preset', 'fashion-mnist', '--data', 'mnist'],
    expected('fashion-mnist', (c) => ((c.data.source = 'mnist'), (c.data.path = ''))),
  ],
  [
    ['--set', 'optim.lrSteps=[3,5]', '--set', 'optim.nesterov=true'],
    expected('demo', (c) => ((c.optim.lrSteps = [3, 5]), (c.optim.nesterov = true))),
  ],
  [['--set', 'augment="none"'], expected('demo', (c) => (c.augment = 'none'))],
  [['--set', 'augment=none'], expected('demo', (c) => (c.augment = 'none'))],
  [['--set', 'data.path=123'], expected('demo', (c) => (c.data.path = '123'))],
  [
    ['--set', 'odc.splitRestarts=5', '--set', 'odc.kmeansInit=kmeans++'],
    expected('demo', (c) => ((c.odc.splitRestarts = 5), (c.odc.kmeansInit = 'kmeans++'))),
  ],
  [['--epochs', '2', '--set', 'optim.epochs=3'], expected('demo', (c) => (c.optim.epochs = 3))],
  [
    ['--set', 'log.checkpointMinutes=0', '--set', 'model.dropout=0'],
    expected('demo', (c) => ((c.log.checkpointMinutes = 0), (c.model.dropout = 0))),
  ],
  [
    ['--config', file('ok.json', '{"odc": {"k": 7}, "optim": {"lrSteps": [2]}}')],
    expected('demo', (c) => ((c.odc.k = 7), (c.optim.lrSteps = [2]))),
  ],
  [['--config', file('ok2.json', '{"odc": {"k": 7}}'), '--k', '9'], expected('demo', (c) => (c.odc.k = 9))],
];

test('valid command lines resolve to the expected configuration', () => {
  for (const [argv, want] of VALID) assert.deepEqual(trainConfig(argv), want, argv.join(' '));
});

// [command line, what the one error must say]. Train lines have "train" put in front.
const BAD: Array<[string[], RegExp]> = [
  [['--bogus'], /no flag --bogus/],
  [['--epoch', '1'], /no flag --epoch \(did you mean --epochs\?\)/],
  [['--batchsize', '8'], /did you mean --batch-size\?/],
  [['--mode', 'foo'], /mode must be one of "odc", "deepcluster", got "foo"/],
  [['--mode', 'odcc'], /got "odcc" \(did you mean "odc"\?\)/],
  [['--backbone', 'resnet999'], /model\.backbone must be one of "convnet-s", "resnet18", "resnet50", got "resnet999"/],
  [['--set', 'augment=sobel'], /augment must be one of "mnist", "cifar", "imagenet", "none", got "sobel"/],
  [['--set', 'model.neckHidden=-3'], /model\.neckHidden must be a positive integer, got -3/],
  [['--limit', '-5'], /--limit -5: data\.limit must be an integer >= 0, got -5/],
  [
    ['--set', 'optim.lrSteps=["3"]'],
    /optim\.lrSteps: expected an array of numbers, got .*\["3"\].*ascending array of integers >= 1/,
  ],
  [['--set', 'optim.lrSteps=[5,3]'], /optim\.lrSteps must be an ascending array of integers >= 1, got \[5,3\]/],
  [['--set', 'optim.lrSteps=[0]'], /optim\.lrSteps must be an ascending array/],
  [['--set', 'optim.lrSteps=3'], /optim\.lrSteps: expected an array of numbers, got number \(3\)/],
  [['--data', 'mnst'], /data\.source must be one of .*got "mnst" \(did you mean "mnist"\?\)/],
  [['--data', 'imagenet:/data'], /data\.source must be one of "mnist", "mnist-idx"/],
  [['--preset', 'demoo'], /unknown preset "demoo" \(did you mean "demo"\?\)/],
  [['--preset', 'toString'], /unknown preset "toString"; the presets are demo, mnist/],
  [['--set', 'odc.kk=3'], /config\.odc: unknown key "kk" \(did you mean "odc\.k"\?/],
  [['--set', 'minCluster=3'], /unknown key "minCluster" \(did you mean "odc\.minCluster"\?/],
  [['--set', 'optim.epoch=3'], /unknown key "epoch" \(did you mean "optim\.epochs"\?/],
  [['--set', 'odc.k=0'], /odc\.k must be a positive integer, got 0/],
  [['--set', 'odc.k=2.5'], /odc\.k must be a positive integer, got 2\.5/],
  [['--k', 'abc'], /--k abc: odc\.k: expected a number, got string \("abc"\)/],
  [['--lr', '0'], /optim\.lr must be a number > 0, got 0/],
  [['--lr', '-0.1'], /optim\.lr must be a number > 0, got -0\.1/],
  [['--set', 'optim.momentum=1.5'], /optim\.momentum must be a number in \[0, 1\], got 1\.5/],
  [['--set', 'model.dropout=1'], /model\.dropout must be a number in \[0, 1\), got 1/],
  [
    ['--set', 'optim.nesterov=yes'],
    /optim\.nesterov: expected a boolean, got string \("yes"\); allowed: true or false/,
  ],
  [['--set', 'seed=-1'], /seed must be an integer in \[0, 4294967295\], got -1/],
  [['--seed', '4294967296'], /seed must be an integer in \[0, 4294967295\], got 4294967296/],
  [['--set', 'log.checkpointMinutes=-1'], /log\.checkpointMinutes must be a number >= 0, got -1/],
  [['--set', 'log.interval=0'], /log\.interval must be a positive integer, got 0/],
  [['--set', 'odc.kmeansInit=plusplus'], /odc\.kmeansInit must be one of "random", "kmeans\+\+", got "plusplus"/],
  [['--set', 'odc.splitRestarts=0'], /odc\.splitRestarts must be a positive integer, got 0/],
  [['--set', 'odc=5'], /config\.odc must be a JSON object, got number \(5\)/],
  [['--set', '=5'], /--set expects key=value/],
  [['--set', 'odc.k'], /--set expects key=value/],
  [['--epochs'], /--epochs needs a value/],
  [['--out', '--resume'], /--out needs a value, got the flag --resume/],
  [['--resume=yes'], /--resume is a switch and takes no value/],
  [['demo'], /unexpected argument "demo"/],
  [['--batch-size', '0'], /optim\.batchSize must be a positive integer, got 0/],
  [['--batch-size', '64.5'], /optim\.batchSize must be a positive integer, got 64\.5/],
  [
    ['--set', 'model.stem=imagenett'],
    /model\.stem must be one of "cifar", "imagenet", got "imagenett" \(did you mean "imagenet"\?\)/,
  ],
  [['--min-cluster', '-1'], /odc\.minCluster must be a positive integer, got -1/],
  [['--set', 'optim.weightDecay=-1e-5'], /optim\.weightDecay must be a number >= 0, got -0\.00001/],
  [['--set', 'odc.memoryMomentum=2'], /odc\.memoryMomentum must be a number in \[0, 1\], got 2/],
  [['--set', 'model.backbone=null'], /model\.backbone must be one of .*got "null"/],
  [['--set', 'odc.k.x=1'], /odc\.k: expected a number, got object/],
  [
    ['--config', file('typo.json', '{"optim": {"epoch": 3}}')],
    /typo\.json\.optim: unknown key "epoch" \(did you mean "optim\.epochs"\?/,
  ],
  [['--config', file('array.json', '[]')], /array\.json must be a JSON object, got an array/],
  [['--config', file('broken.json', '{"odc": {')], /broken\.json is not valid JSON/],
  [['--config', join(dir, 'missing.json')], /missing\.json does not exist/],
  [
    ['--config', file('string.json', '{"odc": {"k": "10"}}')],
    /string\.json: odc\.k: expected a number, got string \("10"\)/,
  ],
  [['--config', file('mode.json', '{"mode": "odcc"}')], /mode\.json: mode must be one of .*\(did you mean "odc"\?\)/],
  [
    ['--config', file('steps.json', '{"optim": {"lrSteps": ["400"]}}')],
    /steps\.json: optim\.lrSteps: expected an array of numbers/,
  ],
  [
    ['--config', file('range.json', '{"model": {"neckHidden": 0}}')],
    /range\.json: model\.neckHidden must be a positive integer, got 0/,
  ],
];

// Lines for the other commands (no "train" in front).
const BAD_OTHER: Array<[string[], RegExp]> = [
  [['trian'], /unknown command "trian" \(did you mean "train"\?\)/],
  [['eval', '--run', 'r', '--probe-epochs', '0'], /--probe-epochs must be a positive integer, got 0/],
  [['eval', '--run', 'r', '--probe-epochs', 'ten'], /--probe-epochs: expected a number, got string \("ten"\)/],
  [['eval', '--run', 'r', '--epochs', '3'], /odc eval has no flag --epochs/],
  [['eval'], /odc eval needs --run/],
  [
    ['extract', '--run', 'r', '--out', 'f', '--layer', 'nek'],
    /--layer must be one of "backbone", "neck", got "nek" \(did you mean "neck"\?\)/,
  ],
  [['extract', '--run', 'r', '--out', 'f', '--split', 'val'], /--split must be one of "train", "test", got "val"/],
  [['export', '--run', 'r', '--outt', 'f'], /odc export has no flag --outt \(did you mean --out\?\)/],
];

test(`${BAD.length + BAD_OTHER.length} bad command lines and config files: one error each, naming the cause`, () => {
  assert.ok(BAD.length + BAD_OTHER.length >= 40);
  for (const [argv, message] of [...BAD.map(([a, m]): [string[], RegExp] => [['train', ...a], m]), ...BAD_OTHER]) {
    assert.throws(
      () => commandFromArgv(argv),
      (err: Error) => {
        assert.match(err.message, message, argv.join(' '));
        assert.doesNotMatch(err.message, /Cannot read properties|undefined|NaN/, argv.join(' '));
        return true;
      },
      `accepted: ${argv.join(' ')}`,
    );
  }
});

test('the schema: defaults pass their own checks, every setting round-trips through --set, values are checked in code too', () => {
  const base = defaults(SETTINGS);
  assert.equal(checkAll(SETTINGS, base), base);
  for (const { key, leaf } of leaves(SETTINGS)) {
    const text = typeof leaf.default === 'string' ? leaf.default : JSON.stringify(leaf.default);
    assert.deepEqual(applyOverride(base, `${key}=${text}`), base, key);
  }
  const bad = presetConfig('demo');
  bad.odc.splitMaxIter = -1;
  assert.throws(() => validateConfig(bad), /odc\.splitMaxIter must be an integer >= 0, got -1/);
  const augment = { ...presetConfig('demo'), augment: 'sobel' } as unknown as TrainConfig;
  assert.throws(
    () => validateConfig(augment),
    /augment must be one of "mnist", "cifar", "imagenet", "none", got "sobel"/,
  );
  const nan = presetConfig('demo');
  nan.optim.lr = Number.NaN;
  assert.throws(() => validateConfig(nan), /optim\.lr must be a number > 0, got NaN/);
});

test('the nearest name: edit distance with swaps, and every shortcut found from a one-letter slip', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('trian', 'train'), 1);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(nearest('zzzzzz', ['epochs', 'lr']), undefined);
  const names = shortcuts().map((s) => s.name);
  for (const name of names.filter((n) => n.length >= 4)) {
    assert.equal(nearest(name.slice(0, -1), names), name, `${name} without its last letter`);
    assert.equal(nearest(`${name}x`, names), name, `${name} with a letter more`);
  }
});

test('a resumed run starts from its config.json: keys added since are completed, unknown keys and presets refused', () => {
  const run = join(dir, 'run');
  const stored = structuredClone(snapshot.demo) as unknown as Record<string, Record<string, unknown>>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(stored));
  const resumed = commandFromArgv(['train', '--out', dir, '--resume', '--epochs', '9']);
  assert.equal(resumed.command, 'train');
  assert.deepEqual(
    (resumed as { config: TrainConfig }).config,
    expected('demo', (c) => (c.optim.epochs = 9)),
  );
  assert.throws(
    () => commandFromArgv(['train', '--out', dir, '--resume', '--preset', 'mnistt']),
    /unknown preset "mnistt" \(did you mean "mnist"\?\)/,
  );
  assert.throws(
    () => commandFromArgv(['train', '--out', run, '--resume']),
    /--resume needs the run's .*config\.json, which does not exist/,
  );
  stored.odc.kk = 3;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(stored));
  assert.throws(
    () => commandFromArgv(['train', '--out', dir, '--resume']),
    /config\.json\.odc: unknown key "kk" \(did you mean "odc\.k"\?/,
  );
});

test('a resume may change exactly what it could before the schema (optim.epochs, the LR schedule, log.*) and optim.replay', () => {
  const resumable = leaves(SETTINGS)
    .map((l) => l.key)
    .filter(mayChangeOnResume);
  const before = ['optim.epochs', 'optim.lr', 'optim.lrSteps', 'optim.lrGamma', 'optim.replay'];
  assert.deepEqual(
    resumable,
    leaves(SETTINGS)
      .map((l) => l.key)
      .filter((k) => before.includes(k) || k.startsWith('log.')),
  );
  assert.deepEqual(
    before.filter((k) => !resumable.includes(k)),
    [],
  );
  assert.equal(mayChangeOnResume('odc.kk'), false);
  assert.equal(mayChangeOnResume('log'), false);
});

test('the README settings table is the one the schema gives (npm run docs:config rewrites it)', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  assert.equal(withSettingsTable(readme), readme, 'README.md settings table is stale: run npm run docs:config');
  for (const { key } of leaves(SETTINGS)) assert.ok(readme.includes(`| \`${key}\``), `${key} in the README table`);
});

test('train --help lists every setting with its default; bad lines through the real CLI exit 1 with one odc: line, no stack', () => {
  const help = runCli('src/cli/main.ts', ['train', '--help']);
  assert.equal(help.status, 0, help.stderr);
  for (const { key } of leaves(SETTINGS)) assert.ok(help.stdout.includes(`  ${key}`), `${key} in train --help`);
  for (const args of [
    ['train', '--epoch', '1'],
    ['train', '--mode', 'odcc'],
    ['train', '--set', 'model.neckHidden=-3'],
  ]) {
    const r = runCli('src/cli/main.ts', args);
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.filter((l) => l.startsWith('odc: ')).length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    assert.doesNotMatch(r.stdout, /odc train: preset/, 'nothing trained');
  }
});
