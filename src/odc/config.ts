/**
 * Training configuration: presets, JSON config files and command-line overrides all produce one
 * TrainConfig. Every value of a preset can be overridden (`--set odc.k=500` or a JSON file).
 */
import type { BackboneName, Stem } from '../models/backbones.ts';

export type DataSource = 'mnist' | 'fashion-mnist' | 'idx' | 'cifar10' | 'cifar100' | 'folder' | 'synthetic';
export type AugmentPreset = 'mnist' | 'cifar' | 'imagenet' | 'none';

export interface TrainConfig {
  preset: string;
  /** 'odc' (the paper) or 'deepcluster' (offline k-means every epoch, the baseline). */
  mode: 'odc' | 'deepcluster';
  seed: number;
  data: {
    source: DataSource;
    /** Folder or file for idx/cifar/folder/fashion-mnist sources. */
    path: string;
    /** Use only the first `limit` images (0 = all). */
    limit: number;
    /** Side length images are resized/cropped to for the network (folder data; others keep their size). */
    imageSize: number;
  };
  augment: AugmentPreset;
  model: {
    backbone: BackboneName;
    stem: Stem;
    neckHidden: number;
    featureDim: number;
    dropout: number;
  };
  optim: {
    batchSize: number;
    epochs: number;
    lr: number;
    momentum: number;
    headMomentum: number;
    weightDecay: number;
    nesterov: boolean;
    /** Epochs at which the LR is multiplied by lrGamma. */
    lrSteps: number[];
    lrGamma: number;
  };
  odc: {
    k: number;
    memoryMomentum: number;
    minCluster: number;
    centroidInterval: number;
    reweightPow: number;
    /** The loss is the mean of weighted means over this many chunks of the batch (8 in the 8-GPU original). */
    lossChunks: number;
    /** Initial k-means iterations. */
    kmeansIterations: number;
  };
  log: {
    /** Iterations between JSONL log records. */
    interval: number;
    /** Epochs between checkpoints (the last epoch always writes one). */
    checkpointEvery: number;
    /** Minutes between checkpoints written mid-epoch at an iteration boundary, so a long epoch is never lost whole (0 = off). */
    checkpointMinutes: number;
  };
}

const BASE: TrainConfig = {
  preset: 'base',
  mode: 'odc',
  seed: 0,
  data: { source: 'mnist', path: '', limit: 0, imageSize: 0 },
  augment: 'mnist',
  model: { backbone: 'convnet-s', stem: 'cifar', neckHidden: 512, featureDim: 256, dropout: 0.5 },
  optim: { batchSize: 64, epochs: 10, lr: 0.06, momentum: 0.9, headMomentum: 0, weightDecay: 1e-5, nesterov: false, lrSteps: [], lrGamma: 0.4 },
  odc: { k: 100, memoryMomentum: 0.5, minCluster: 15, centroidInterval: 10, reweightPow: 0.5, lossChunks: 1, kmeansIterations: 20 },
  log: { interval: 10, checkpointEvery: 1, checkpointMinutes: 30 },
};

type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

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

/** Deep-merges `patch` into `base`; unknown keys are an error naming the key. */
export function mergeConfig<T>(base: T, patch: unknown, where = 'config'): T {
  if (!isPlainObject(patch)) throw new TypeError(`${where} must be a JSON object`);
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in out)) throw new Error(`${where}: unknown key "${key}" (known: ${Object.keys(out).join(', ')})`);
    const current = out[key];
    if (isPlainObject(current)) out[key] = mergeConfig(current, value, `${where}.${key}`);
    else {
      const expected = Array.isArray(current) ? 'array' : typeof current;
      const actual = Array.isArray(value) ? 'array' : typeof value;
      if (expected !== actual) throw new TypeError(`${where}.${key}: expected a ${expected}, got ${actual} (${JSON.stringify(value)})`);
      out[key] = value;
    }
  }
  return out as T;
}

export function presetConfig(name: string): TrainConfig {
  const preset = PRESETS[name];
  if (!preset) throw new Error(`unknown preset "${name}" (known: ${Object.keys(PRESETS).join(', ')})`);
  return { ...mergeConfig(BASE, preset, `preset ${name}`), preset: name };
}

/** Applies one `path.to.key=value` override; the value is parsed as JSON when it parses, else kept as a string. */
export function applyOverride(config: TrainConfig, assignment: string): TrainConfig {
  const eq = assignment.indexOf('=');
  if (eq < 1) throw new Error(`--set expects key=value, got "${assignment}"`);
  const path = assignment.slice(0, eq).split('.');
  const raw = assignment.slice(eq + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  const patch: Record<string, unknown> = {};
  let node = patch;
  path.forEach((key, i) => {
    if (i === path.length - 1) node[key] = value;
    else node = node[key] = {} as Record<string, unknown>;
  });
  return mergeConfig(config, patch);
}

/** Checks values that would otherwise fail deep inside training; returns the config. */
export function validateConfig(c: TrainConfig): TrainConfig {
  const positive: Array<[string, number]> = [
    ['optim.batchSize', c.optim.batchSize],
    ['optim.epochs', c.optim.epochs],
    ['odc.k', c.odc.k],
    ['odc.minCluster', c.odc.minCluster],
    ['odc.centroidInterval', c.odc.centroidInterval],
    ['odc.lossChunks', c.odc.lossChunks],
    ['log.interval', c.log.interval],
    ['log.checkpointEvery', c.log.checkpointEvery],
  ];
  for (const [name, v] of positive) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  }
  if (!(Number.isFinite(c.log.checkpointMinutes) && c.log.checkpointMinutes >= 0)) {
    throw new RangeError(`log.checkpointMinutes must be a number of minutes >= 0 (0 turns time-based checkpoints off), got ${c.log.checkpointMinutes}`);
  }
  if (!(c.optim.lr > 0)) throw new RangeError(`optim.lr must be positive, got ${c.optim.lr}`);
  if (!(c.odc.memoryMomentum >= 0 && c.odc.memoryMomentum <= 1)) throw new RangeError(`odc.memoryMomentum must be in [0, 1]`);
  if (!(c.model.dropout >= 0 && c.model.dropout < 1)) throw new RangeError(`model.dropout must be in [0, 1)`);
  return c;
}

/**
 * A stored configuration (a run's config.json, a checkpoint's) completed with today's defaults for keys
 * added since it was written; unknown keys are an error naming `where`.
 */
export function completeConfig(stored: unknown, where: string): TrainConfig {
  return mergeConfig(BASE, stored, where);
}

/**
 * Keys a resumed run may change: they do not alter what is trained. The learning-rate schedule
 * (optim.lr, optim.lrSteps, optim.lrGamma) changes the trajectory but is allowed on purpose: lowering
 * the LR after a divergence, or moving a step when extending optim.epochs, is how a long run is rescued;
 * such a change is recorded in log.jsonl. Every other key (data, model, odc, batch size, seed, mode,
 * augmentation, the rest of the optimiser, and any key added later) is fixed for the life of a run.
 */
const MAY_CHANGE_ON_RESUME = ['optim.epochs', 'optim.lr', 'optim.lrSteps', 'optim.lrGamma', 'log.'];

/** Whether `key` (a dotted path such as "odc.k") may change when a run is resumed. */
export function mayChangeOnResume(key: string): boolean {
  return MAY_CHANGE_ON_RESUME.some((allowed) => (allowed.endsWith('.') ? key.startsWith(allowed) : key === allowed));
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
      for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) walk(a[key], b[key], path ? `${path}.${key}` : key);
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
