/**
 * Training configuration: presets, JSON config files and command-line overrides all produce one
 * TrainConfig. Every setting is declared once, in SETTINGS (built with ./schema.ts): its default, what it
 * allows, what it means and its command-line shortcut; the type, the checks, `odc train --help` and the
 * README's settings table (`npm run docs:config`) all come from that declaration. It sits in src/config,
 * below src/data and src/odc, because both read TrainConfig (one schema: the odc group is one of its
 * branches, not a module of src/odc).
 */
import {
  ascendingInts,
  bool,
  checkAll,
  defaults,
  group,
  int,
  leafAt,
  leaves,
  merge,
  nearest,
  num,
  oneOf,
  show,
  str,
  type Infer,
} from './schema.ts';
import type { BackboneName, Stem } from '../models/backbones.ts';

/** Every name of a string union, checked both ways at compile time (a new member must be listed here). */
function allOf<T extends string>(names: Record<T, true>): T[] {
  return Object.keys(names) as T[];
}

const DATA_SOURCES = [
  'mnist',
  'mnist-idx',
  'fashion-mnist',
  'idx',
  'cifar10',
  'cifar100',
  'folder',
  'pack',
  'synthetic',
] as const;
const BACKBONES = allOf<BackboneName>({ 'convnet-s': true, resnet18: true, resnet50: true });
const STEMS = allOf<Stem>({ cifar: true, imagenet: true });

/** The settings of a training run, in the order config.json lists them. */
export const SETTINGS = group({
  preset: str('base', { doc: 'Name of the preset the run started from (informative; choose it with --preset).' }),
  mode: oneOf(['odc', 'deepcluster'], 'odc', {
    doc: "'odc' (the paper) or 'deepcluster' (offline k-means every epoch, the baseline).",
    shortcut: { name: 'mode', arg: 'MODE' },
  }),
  seed: int(0, {
    min: 0,
    max: 4294967295,
    doc: 'Seed of every random stream (model, augmentation, clustering, sampling, data.limit).',
    shortcut: { name: 'seed', arg: 'N' },
  }),
  data: group({
    source: oneOf(DATA_SOURCES, 'mnist', {
      doc: "Data set loader ('synthetic' is for tests, which pass the images).",
      shortcut: {
        name: 'data',
        arg: 'SOURCE[:PATH]',
        assignments: (text) => {
          const colon = text.indexOf(':');
          return [
            ['data.source', colon < 0 ? text : text.slice(0, colon)],
            ['data.path', colon < 0 ? '' : text.slice(colon + 1)],
          ];
        },
      },
    }),
    path: str('', {
      doc:
        "Folder or file of the source ('' = the source's default): a folder for mnist-idx, fashion-mnist, cifar10, cifar100 and folder; " +
        'IMAGES[,LABELS[,CLASSES]] IDX files for idx; the .odcpack file (made by `odc prepare`) for pack.',
    }),
    limit: int(0, {
      min: 0,
      doc: 'Use only a seeded random subset of this many images (0 = all).',
      shortcut: { name: 'limit', arg: 'N' },
    }),
    imageSize: int(0, {
      min: 0,
      doc: "Side length images are resized/cropped to for the network (0 = the data set's own size).",
    }),
  }),
  augment: oneOf(['mnist', 'cifar', 'imagenet', 'none'], 'mnist', { doc: 'Augmentation preset.' }),
  model: group({
    backbone: oneOf(BACKBONES, 'convnet-s', { doc: 'Backbone network.', shortcut: { name: 'backbone', arg: 'NAME' } }),
    stem: oneOf(STEMS, 'cifar', { doc: "ResNet stem: 'cifar' (3x3 conv) or 'imagenet' (7x7 conv + max-pool)." }),
    neckHidden: int(512, { min: 1, doc: 'Hidden width of the neck MLP.' }),
    featureDim: int(256, { min: 1, doc: 'Width of the neck output: the feature the memory holds.' }),
    dropout: num(0.5, { min: 0, max: 1, maxExclusive: true, doc: 'Dropout rate before the classification head.' }),
  }),
  optim: group({
    batchSize: int(64, {
      min: 1,
      doc: 'Images per iteration (batch norm needs at least 2).',
      shortcut: { name: 'batch-size', arg: 'N' },
    }),
    epochs: int(10, {
      min: 1,
      resumable: true,
      doc: 'Epochs to train (a resumed run may raise it).',
      shortcut: { name: 'epochs', arg: 'N' },
    }),
    lr: num(0.06, {
      min: 0,
      minExclusive: true,
      resumable: true,
      doc: 'Base learning rate of SGD.',
      shortcut: { name: 'lr', arg: 'X' },
    }),
    momentum: num(0.9, { min: 0, max: 1, doc: 'SGD momentum of the backbone and neck.' }),
    headMomentum: num(0, { min: 0, max: 1, doc: 'SGD momentum of the classification head.' }),
    weightDecay: num(1e-5, { min: 0, doc: 'L2 weight decay.' }),
    nesterov: bool(false, { doc: 'Nesterov momentum.' }),
    precision: oneOf(['f32', 'f16'], 'f32', {
      doc:
        "Working precision: 'f16' keeps the backbone's activations in f16 between ops and runs the conv/linear GEMMs on f16 " +
        'operands with f32 accumulation (needs shader-f16); gradients, master weights, SGD state, batch-norm statistics, ' +
        'the features, the loss and the ODC memory stay f32.',
      shortcut: { name: 'precision', arg: 'f32|f16' },
    }),
    lossScale: oneOf(['dynamic', 'off'], 'dynamic', {
      doc:
        "Loss scaling under precision f16 (ignored under f32): 'dynamic' as PyTorch's GradScaler (the backward pass starts from a power-of-two " +
        'scale, gradients are unscaled in f32, a step with an inf/NaN gradient is skipped and halves the scale, lossScaleInterval clean steps ' +
        "double it; all on the GPU), 'off' for none.",
    }),
    lossScaleLog2: int(16, { min: 0, max: 64, doc: 'Initial loss scale 2^N under precision f16 (GradScaler: 2^16).' }),
    lossScaleInterval: int(2000, {
      min: 1,
      doc: 'Clean steps in a row after which the loss scale doubles (GradScaler: 2000).',
    }),
    lrSteps: ascendingInts([], {
      min: 1,
      resumable: true,
      doc: 'Epochs at which the learning rate is multiplied by lrGamma.',
    }),
    lrGamma: num(0.4, { min: 0, minExclusive: true, resumable: true, doc: 'Learning-rate factor at each of lrSteps.' }),
    replay: bool(true, {
      resumable: true,
      doc:
        "Record a training step's model part (forward, loss, backward, SGD) once and replay its GPU launches on later steps " +
        'without running the JavaScript that recorded them, once two consecutive steps recorded the same launches; the ' +
        'results are bit-identical either way (src/gpu/tape.ts).',
    }),
  }),
  odc: group({
    k: int(100, { min: 1, doc: 'Number of clusters K.', shortcut: { name: 'k', arg: 'N' } }),
    memoryMomentum: num(0.5, {
      min: 0,
      max: 1,
      doc: 'Weight of the fresh feature in the memory update: new = (1 - m) old + m fresh.',
    }),
    minCluster: int(15, {
      min: 1,
      doc: 'Clusters with fewer members are dissolved and refilled by splitting the largest.',
      shortcut: { name: 'min-cluster', arg: 'N' },
    }),
    centroidInterval: int(10, { min: 1, doc: 'Iterations between full centroid recomputes.' }),
    reweightPow: num(0.5, { min: 0, doc: 'Loss weight of a cluster: 1 / size^reweightPow, normalised.' }),
    lossChunks: int(1, {
      min: 1,
      doc: 'The loss is the mean of weighted means over this many chunks of the batch (8 in the 8-GPU original).',
    }),
    kmeansIterations: int(20, {
      min: 0,
      doc: "Iterations of the initial k-means (and of DeepCluster's per-epoch k-means).",
    }),
    kmeansInit: oneOf(['random', 'kmeans++'], 'random', {
      doc: "Seeding of the memory's initial k-means: k distinct random rows (faiss, ODC) or k-means++.",
    }),
    splitRestarts: int(3, {
      min: 1,
      doc: '2-means restarts per split of a large cluster (the lowest inertia is kept).',
    }),
    splitMaxIter: int(20, { min: 0, doc: 'Lloyd iterations per 2-means restart of a split.' }),
  }),
  log: group({
    interval: int(10, { min: 1, resumable: true, doc: 'Iterations between log.jsonl records.' }),
    checkpointEvery: int(1, {
      min: 1,
      resumable: true,
      doc: 'Epochs between checkpoints (the last epoch always writes one).',
    }),
    checkpointMinutes: num(30, {
      min: 0,
      resumable: true,
      doc: 'Minutes between checkpoints written mid-epoch at an iteration boundary, so a long epoch is never lost whole (0 = off).',
    }),
  }),
});

export type TrainConfig = Infer<typeof SETTINGS>;
export type DataSource = TrainConfig['data']['source'];
export type AugmentPreset = TrainConfig['augment'];

const BASE: TrainConfig = defaults(SETTINGS);

type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K];
};

export const PRESETS: Record<string, DeepPartial<TrainConfig>> = {
  /** convnet-s on the embedded MNIST digits: a few minutes on a CPU-only machine. */
  demo: {
    data: { source: 'mnist', limit: 4000 },
    augment: 'mnist',
    model: { backbone: 'convnet-s', neckHidden: 256, featureDim: 128 },
    optim: { batchSize: 64, epochs: 3, lr: 0.06 },
    odc: { k: 40, minCluster: 10, centroidInterval: 10 },
    log: { interval: 5 },
  },
  /** All 10,000 embedded MNIST digits, K = 100, trained to a plateau (use a real GPU). */
  mnist: {
    data: { source: 'mnist' },
    augment: 'mnist',
    model: { backbone: 'convnet-s' },
    optim: { batchSize: 256, epochs: 50, lr: 0.06 },
    odc: { k: 100, minCluster: 15 },
  },
  'fashion-mnist': {
    data: { source: 'fashion-mnist', path: '/usr/share/datasets/fashion-mnist' },
    augment: 'mnist',
    model: { backbone: 'convnet-s' },
    optim: { batchSize: 256, epochs: 50, lr: 0.06 },
    odc: { k: 500, minCluster: 18 },
  },
  cifar: {
    data: { source: 'cifar10', path: 'data/cifar-10-batches-bin' },
    augment: 'cifar',
    model: { backbone: 'resnet18', stem: 'cifar' },
    optim: { batchSize: 512, epochs: 200, lr: 0.06 },
    odc: { k: 1000, minCluster: 8 },
  },
  /** The paper's r50_v1 configuration (ODC-SPEC section 3). */
  imagenet: {
    data: { source: 'folder', path: 'data/imagenet/train', imageSize: 224 },
    augment: 'imagenet',
    model: { backbone: 'resnet50', stem: 'imagenet', neckHidden: 512, featureDim: 256 },
    optim: { batchSize: 512, epochs: 440, lr: 0.06, lrSteps: [400], lrGamma: 0.4 },
    odc: { k: 10000, minCluster: 20, lossChunks: 8 },
    log: { interval: 50, checkpointEvery: 10 },
  },
};

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Deep-merges `patch` (untyped JSON) into `base`: an unknown key is an error naming `where`, the key and the
 * nearest known one; a wrong type or a value out of range names the key, the value and what is allowed.
 */
export function mergeConfig(base: TrainConfig, patch: unknown, where = 'config'): TrainConfig {
  return merge(SETTINGS, base, patch, where);
}

/** Returns `name` when it names a preset; else an error naming the nearest preset and all of them. */
export function checkPresetName(name: string): string {
  if (Object.hasOwn(PRESETS, name)) return name;
  const near = nearest(name, Object.keys(PRESETS));
  throw new Error(
    `unknown preset "${name}"${near ? ` (did you mean "${near}"?)` : ''}; the presets are ${Object.keys(PRESETS).join(', ')} (--preset NAME)`,
  );
}

/** A preset's complete configuration: the schema's defaults with the preset's values. */
export function presetConfig(name: string): TrainConfig {
  return { ...mergeConfig(BASE, PRESETS[checkPresetName(name)], `preset ${name}`), preset: name };
}

/**
 * Applies one `path.to.key=value` override. The value is parsed as JSON when it parses, else kept as a
 * string; for a text setting (a name, a path) the text is taken as it is unless it is a quoted JSON string.
 */
export function applyOverride(config: TrainConfig, assignment: string): TrainConfig {
  const eq = assignment.indexOf('=');
  if (eq < 1) throw new Error(`--set expects key=value (e.g. --set odc.k=500), got "${assignment}"`);
  const key = assignment.slice(0, eq);
  const path = key.split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown = raw;
  if (!(leafAt(SETTINGS, key)?.textual && !raw.startsWith('"'))) {
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
  }
  const patch: Record<string, unknown> = {};
  let node = patch;
  path.forEach((key, i) => {
    if (i === path.length - 1) node[key] = value;
    else node = node[key] = {} as Record<string, unknown>;
  });
  return mergeConfig(config, patch);
}

/** Checks every setting's type, range and allowed values (a config built in code, a stored one); returns the config. */
export function validateConfig(c: TrainConfig): TrainConfig {
  return checkAll(SETTINGS, c);
}

/**
 * A stored configuration (a run's config.json, a checkpoint's) completed with today's defaults for keys
 * added since it was written; unknown keys are an error naming `where`.
 */
export function completeConfig(stored: unknown, where: string): TrainConfig {
  return mergeConfig(BASE, stored, where);
}

/**
 * Whether `key` (a dotted path such as "odc.k") may change when a run is resumed: the settings declared
 * `resumable` in SETTINGS, which do not alter what is trained (optim.epochs, log.*). The learning-rate
 * schedule (optim.lr, optim.lrSteps, optim.lrGamma) changes the trajectory but is resumable on purpose:
 * lowering the LR after a divergence, or moving a step when extending optim.epochs, is how a long run is
 * rescued; such a change is recorded in log.jsonl. Every other setting (data, model, odc, batch size, seed,
 * mode, augmentation, the rest of the optimiser, and any setting added without `resumable`) is fixed for the
 * life of a run.
 */
export function mayChangeOnResume(key: string): boolean {
  return leafAt(SETTINGS, key)?.resumable === true;
}

export interface ConfigChange {
  /** Dotted path, e.g. "odc.k". */
  key: string;
  before: unknown;
  after: unknown;
}

/** The leaves (dotted paths; arrays are one leaf) whose values differ between two configurations. */
export function configChanges(before: TrainConfig, after: TrainConfig): ConfigChange[] {
  const out: ConfigChange[] = [];
  const walk = (a: unknown, b: unknown, path: string): void => {
    if (isPlainObject(a) && isPlainObject(b)) {
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)]))
        walk(a[key], b[key], path ? `${path}.${key}` : key);
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      out.push({ key: path, before: a, after: b });
    }
  };
  walk(before, after, '');
  return out;
}

function describeChanges(changes: ConfigChange[]): string {
  const parts = changes.map((c) => `${c.key} (${JSON.stringify(c.before)} -> ${JSON.stringify(c.after)})`);
  return parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(', ')} or ${parts[parts.length - 1]}`;
}

/**
 * Compares the configuration a resumed run asks for with the one its checkpoint was trained with.
 * Returns the allowed changes (to apply and record); throws one error naming every key that may not
 * change, with its old and new value. `runDir` names the run in the message.
 */
export function checkResumeConfig(saved: TrainConfig, requested: TrainConfig, runDir: string): ConfigChange[] {
  const changes = configChanges(saved, requested);
  const refused = changes.filter((c) => !mayChangeOnResume(c.key));
  if (refused.length > 0) {
    throw new Error(
      `--resume cannot change ${describeChanges(refused)}: the checkpoint in ${runDir} was trained with the old value${refused.length > 1 ? 's' : ''}, ` +
        `and continuing with new ones would no longer reproduce any run. To fix: start a new run with --out NEWDIR, or drop these flags ` +
        '(a resumed run starts from its own config.json; only optim.epochs, the learning-rate schedule and log.* may change).',
    );
  }
  return changes;
}

/** The command-line shortcuts declared in SETTINGS, each with the key it sets. */
export function shortcuts(): Array<{
  key: string;
  name: string;
  arg: string;
  assignments: (text: string) => Array<[key: string, text: string]>;
}> {
  return leaves(SETTINGS).flatMap(({ key, leaf }) =>
    leaf.shortcut
      ? [
          {
            key,
            name: leaf.shortcut.name,
            arg: leaf.shortcut.arg,
            assignments: leaf.shortcut.assignments ?? ((text: string) => [[key, text]]),
          },
        ]
      : [],
  );
}

/** Every setting as plain text for `odc train --help`: key, shortcut, allowed values, default, meaning. */
export function settingsHelp(): string {
  return leaves(SETTINGS)
    .map(({ key, leaf }) => {
      const flag = leaf.shortcut ? `  (--${leaf.shortcut.name} ${leaf.shortcut.arg})` : '';
      return `  ${key}${flag}\n      ${leaf.allowed}; default ${show(leaf.default)}. ${leaf.doc}${leaf.resumable ? ' May change on --resume.' : ''}`;
    })
    .join('\n');
}

/** The README's table of settings (`npm run docs:config` writes it; test/config.test.ts fails when it is stale). */
export function settingsTable(): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|');
  const rows = leaves(SETTINGS).map(({ key, leaf }) => {
    const name = leaf.shortcut ? `\`${key}\` (\`--${leaf.shortcut.name}\`)` : `\`${key}\``;
    const meaning = `${leaf.doc}${leaf.resumable ? ' May change on `--resume`.' : ''}`;
    return `| ${name} | ${cell(leaf.allowed)} | \`${cell(show(leaf.default))}\` | ${cell(meaning)} |`;
  });
  return ['| setting | allowed | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}
