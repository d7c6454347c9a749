/**
 * Training checkpoints: everything needed to resume bit-exactly (model parameters and BN buffers,
 * optimiser momentum, the ODC memory or DeepCluster's pseudo-labels of the epoch, every RNG state, the
 * position in the schedule), in one checkpoint-io file written atomically (temp file, fsync, rename over
 * the old one), so a crash or a full disk mid-write leaves the previous checkpoint intact.
 *
 * Reading checks the checksums, then the meaning (`checkCheckpointMeaning`): a checkpoint that is intact
 * but says something impossible (NaN weights, labels outside [0, K), a position outside the schedule or
 * the data) is refused with one error naming the file and the record or key.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gpu } from '../gpu/device.ts';
import {
  CheckpointError,
  readRecords,
  writeRecords,
  type ReadRecord,
  type RecordArray,
  type StreamedReadRecord,
  type StreamedRecord,
  type TensorRecord,
} from './checkpoint-io.ts';
import type { Module } from '../nn/module.ts';
import type { SGD } from '../optim/sgd.ts';
import type { LossScaleState } from '../optim/loss-scale.ts';
import type { OdcMemory } from './memory.ts';
import { memoryFromState, memoryRecords } from './memory-records.ts';
import { completeConfig, validateConfig, type TrainConfig } from '../config/settings.ts';
import { batchCount } from '../data/sampler.ts';

export const CHECKPOINT_FILE = 'checkpoint.odc';

export interface TrainPosition {
  /** Epoch being trained (0-based). */
  epoch: number;
  /** Batches of this epoch already done. */
  batchInEpoch: number;
  /** Iterations done since the start of training. */
  iteration: number;
}

/** A finished epoch's summary: logged, kept in the checkpoint's history, given to `train`'s onEpoch. */
export interface EpochSummary {
  epoch: number;
  loss: number;
  headAccuracy: number;
  changeRatio: number;
  imagesPerSecond: number;
  seconds: number;
  /** NMI of the memory labels against the true labels, when the data set has labels. */
  nmi?: number;
  smallClusters: number;
  minCluster: number;
  maxCluster: number;
}

/**
 * The epoch in progress at a mid-epoch checkpoint: what the epoch summary and the next log record need,
 * so a resumed run logs exactly what the uninterrupted run would have.
 */
export interface EpochProgress {
  /** Sums over the epoch's log records so far of (mean loss, accuracy, change ratio) x iterations, and the iterations. */
  loss: number;
  accuracy: number;
  changeRatio: number;
  logs: number;
  /** Iterations run since the last log record: their loss, correct and changed counts, batch sizes; splits since the record. */
  pending: { loss: number[]; correct: number[]; changed: number[]; rows: number[]; splits: number };
}

export interface CheckpointMeta {
  format: 'odc-train';
  version: 1;
  config: TrainConfig;
  /** Image channels of the training data (the backbone's input). */
  inChannels: number;
  position: TrainPosition;
  rngs: Record<string, number[]>;
  sgdLr: number;
  momentumBuffers: Array<boolean>;
  memoryMeta: Record<string, unknown> | null;
  /** Per-epoch summaries so far (NMI, loss, ...). */
  history: Array<Record<string, number>>;
  /** Images in the training data, and training batches per epoch (absent in checkpoints written before they were recorded). */
  dataSize?: number;
  batchesPerEpoch?: number;
  /** Mid-epoch checkpoints: the epoch's metrics so far (null or absent at an epoch boundary). */
  epochProgress?: EpochProgress | null;
  /** Dynamic loss scaling's state (precision f16; null or absent without it). */
  lossScale?: LossScaleState | null;
}

export interface TrainState {
  model: Module;
  sgd: SGD;
  memory: OdcMemory | null;
  /** DeepCluster mode: this epoch's pseudo-labels (a mid-epoch resume must not re-cluster). */
  pseudoLabels: Uint32Array | null;
}

const PSEUDO_LABELS = 'deepcluster.labels';

/** Writes the checkpoint of `state` into `dir` (atomic: the previous one survives a failed write). */
export async function saveCheckpoint(
  dir: string,
  state: TrainState,
  meta: Omit<CheckpointMeta, 'format' | 'version' | 'momentumBuffers' | 'memoryMeta' | 'sgdLr'>,
): Promise<string> {
  const records: Record<string, RecordArray | TensorRecord | StreamedRecord> = {};
  for (const [name, p] of state.model.namedParameters())
    records[`param.${name}`] = { data: await p.data(), shape: p.shape };
  for (const [name, b] of state.model.namedBuffers())
    records[`buffer.${name}`] = { data: await b.data(), shape: b.shape };
  const sgdState = await state.sgd.exportState();
  sgdState.momentumBuffers.forEach((buf, i) => {
    if (buf) records[`sgd.${i}`] = buf;
  });
  let memoryMeta: Record<string, unknown> | null = null;
  if (state.memory) {
    const m = await memoryRecords(state.memory);
    memoryMeta = m.meta;
    records['memory.features'] = m.features; // streamed: read one shard at a time while the file is written
    Object.assign(records, m.records);
  }
  if (state.pseudoLabels) records[PSEUDO_LABELS] = { data: state.pseudoLabels, shape: [state.pseudoLabels.length] };
  const full: CheckpointMeta = {
    format: 'odc-train',
    version: 1,
    ...meta,
    sgdLr: sgdState.lr,
    momentumBuffers: sgdState.momentumBuffers.map((b) => b !== null),
    memoryMeta,
  };
  const path = join(dir, CHECKPOINT_FILE);
  try {
    await writeRecords(path, records, full);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const hint =
      code === 'ENOSPC'
        ? ' The disk is full: free space and resume with --resume; the previous checkpoint is intact.'
        : '';
    throw new Error(`Could not write the checkpoint ${path}: ${(err as Error).message}.${hint}`);
  }
  return path;
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  /**
   * Applies the saved tensors to a freshly built model/optimiser and returns the restored memory (its features in
   * shards of at most `maxShardBytes`, default the device's binding limit).
   */
  restore(model: Module, sgd: SGD | null, options?: { maxShardBytes?: number }): OdcMemory | null;
  /** DeepCluster's pseudo-labels of the epoch in progress, if the checkpoint holds them. */
  pseudoLabels: Uint32Array | null;
}

/** Reads `dir/checkpoint.odc` (verifying checksums) without touching any model yet. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path))
    throw new Error(
      `No checkpoint at ${path}: train first (odc train --out ${dir}), or point --run at a training output folder.`,
    );
  const file = await readRecords(path, { stream: (name) => name === 'memory.features' }); // read on restore, by pieces
  const meta = file.meta as CheckpointMeta;
  if (!meta || meta.format !== 'odc-train' || meta.version !== 1)
    throw new Error(`${path} is not an odc-webgpu training checkpoint (format ${String(meta?.format)})`);
  checkCheckpointMeaning(path, meta, file.records, file.streamed);
  const take = (name: string, size: number): RecordArray => {
    const r = file.records.get(name);
    if (!r)
      throw new Error(`${path}: record "${name}" is missing; the checkpoint does not match this model configuration`);
    if (r.data.length !== size)
      throw new Error(`${path}: record "${name}" has ${r.data.length} values, the model expects ${size}`);
    return r.data;
  };
  return {
    meta,
    restore(model, sgd, options = {}) {
      for (const [name, p] of model.namedParameters()) gpu().write(p.buffer, take(`param.${name}`, p.size));
      for (const [name, b] of model.namedBuffers()) gpu().write(b.buffer, take(`buffer.${name}`, b.size));
      if (sgd) {
        const params = model.parameters();
        const buffers = meta.momentumBuffers.map((has, i) =>
          has ? (take(`sgd.${i}`, params[i].size) as Float32Array) : null,
        );
        sgd.loadState({ lr: meta.sgdLr, momentumBuffers: buffers });
      }
      return meta.memoryMeta
        ? memoryFromState(meta.memoryMeta, file.records, {
            streamed: file.streamed,
            maxShardBytes: options.maxShardBytes,
          })
        : null;
    },
    pseudoLabels: (file.records.get(PSEUDO_LABELS)?.data as Uint32Array | undefined) ?? null,
  };
}

/**
 * Throws when the training data now hold another number of images than the checkpoint in `runDir` was
 * trained on (the data files changed since): its memory and position would no longer match them.
 */
export function checkDataSize(ckpt: LoadedCheckpoint, n: number, runDir: string): void {
  const trainedOn = ckpt.meta.dataSize ?? (ckpt.meta.memoryMeta?.n as number | undefined) ?? ckpt.pseudoLabels?.length;
  if (trainedOn !== undefined && trainedOn !== n) {
    throw new Error(
      `The training data now have ${n} images, but the checkpoint in ${runDir} was trained on ${trainedOn}: the data files changed. Restore them, or start a new run with --out NEWDIR.`,
    );
  }
}

const DAMAGED =
  'Its checksums pass, so it was written this way (a divergence, a bug, or another program): resume from an earlier copy of the checkpoint, ' +
  'or start the run again with --out NEWDIR.';

function refuse(path: string, what: string): never {
  throw new CheckpointError(path, `${what}. ${DAMAGED}`);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The first index of a non-finite value, or -1. */
function firstNonFinite(data: RecordArray): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

/**
 * Checks what a checksum-valid checkpoint says (and completes its config with defaults of keys added since
 * it was written): a valid config; a position of non-negative integers inside the schedule and the data,
 * with the iteration count that position implies; finite parameters, BN statistics (variances >= 0),
 * momentum buffers and memory features; labels in [0, K); RNG states and the epoch in progress well formed.
 * Throws one CheckpointError naming `path`, the record or key, and the fix.
 */
export function checkCheckpointMeaning(
  path: string,
  meta: CheckpointMeta,
  records: ReadonlyMap<string, ReadRecord>,
  streamed: ReadonlyMap<string, StreamedReadRecord> = new Map(),
): void {
  try {
    meta.config = validateConfig(completeConfig(meta.config, 'config'));
  } catch (err) {
    refuse(path, `its configuration is invalid (${(err as Error).message})`);
  }
  const config = meta.config;
  const k = config.odc.k;
  if (!isCount(meta.inChannels) || meta.inChannels === 0)
    refuse(path, `inChannels is ${JSON.stringify(meta.inChannels)}, not a positive integer`);
  for (const [name, state] of Object.entries(meta.rngs ?? {})) {
    const ok =
      Array.isArray(state) &&
      state.length === 4 &&
      state.every((w) => isCount(w) && w <= 0xffffffff) &&
      state.some((w) => w !== 0);
    if (!ok)
      refuse(path, `RNG state "${name}" is ${JSON.stringify(state)}, not 4 unsigned 32-bit words (not all zero)`);
  }
  if (!(Number.isFinite(meta.sgdLr) && meta.sgdLr > 0)) refuse(path, `sgdLr is ${meta.sgdLr}, not a positive number`);
  if (!Array.isArray(meta.history)) refuse(path, 'history is not a list of epoch summaries');
  const ls = meta.lossScale;
  if (ls && !(Number.isInteger(Math.log2(ls.scale)) && Math.abs(Math.log2(ls.scale)) <= 64))
    refuse(path, `lossScale.scale is ${JSON.stringify(ls.scale)}, not a power of two in [2^-64, 2^64]`);
  if (ls && !(isCount(ls.cleanSteps) && isCount(ls.skippedSteps)))
    refuse(path, `lossScale's step counts ${JSON.stringify([ls.cleanSteps, ls.skippedSteps])} are not counts`);

  // Records: every float finite, BN variances non-negative, labels in [0, K).
  for (const [name, r] of records) {
    if (r.dtype === 'f32' || r.dtype === 'f64') {
      const bad = firstNonFinite(r.data);
      if (bad >= 0) refuse(path, `record "${name}" holds ${r.data[bad]} (value ${bad} of ${r.data.length})`);
      if (name.startsWith('buffer.') && name.endsWith('running_var')) {
        const negative = r.data.findIndex((v) => v < 0);
        if (negative >= 0)
          refuse(
            path,
            `record "${name}" holds the negative variance ${r.data[negative]} (value ${negative} of ${r.data.length})`,
          );
      }
    }
  }
  // streamed records (the memory features) are read here in pieces, so a bad value is found before any slow step
  for (const [name, r] of streamed) {
    if (r.dtype !== 'f32' && r.dtype !== 'f64') continue;
    const total = r.shape.reduce((a, b) => a * b, 1);
    let at = 0;
    for (const piece of r.pieces(1 << 22)) {
      const bad = firstNonFinite(piece);
      if (bad >= 0) refuse(path, `record "${name}" holds ${piece[bad]} (value ${at + bad} of ${total})`);
      at += piece.length;
    }
  }
  for (const name of ['memory.labels', PSEUDO_LABELS]) {
    const r = records.get(name);
    if (!r) continue;
    const bad = r.data.findIndex((v) => !(v >= 0 && v < k));
    if (bad >= 0)
      refuse(path, `record "${name}" holds the label ${r.data[bad]} at index ${bad}, outside [0, K = ${k}) (odc.k)`);
  }

  // The data size the checkpoint was trained on, from each place that records it; they must agree.
  const sizes: Array<[string, number]> = [];
  if (meta.dataSize !== undefined) sizes.push(['dataSize', meta.dataSize]);
  if (meta.memoryMeta) {
    if (meta.memoryMeta.k !== k)
      refuse(path, `the memory has K = ${String(meta.memoryMeta.k)} clusters, its config says odc.k = ${k}`);
    sizes.push(['memoryMeta.n', meta.memoryMeta.n as number]);
  }
  for (const name of ['memory.labels', PSEUDO_LABELS]) {
    const r = records.get(name);
    if (r) sizes.push([`record "${name}"`, r.data.length]);
  }
  for (const [where, size] of sizes) {
    if (!isCount(size) || size === 0)
      refuse(path, `${where} is ${JSON.stringify(size)}, not a positive number of images`);
    if (size !== sizes[0][1]) refuse(path, `${where} says ${size} images but ${sizes[0][0]} says ${sizes[0][1]}`);
  }

  // The position: inside the schedule, inside the data, and the iteration count it implies.
  const position = meta.position ?? ({} as TrainPosition);
  for (const key of ['epoch', 'batchInEpoch', 'iteration'] as const) {
    if (!isCount(position[key]))
      refuse(path, `position.${key} is ${JSON.stringify(position[key])}, not a non-negative integer`);
  }
  const epochs = config.optim.epochs;
  if (position.epoch > epochs || (position.epoch === epochs && position.batchInEpoch > 0)) {
    refuse(
      path,
      `position epoch ${position.epoch}, batch ${position.batchInEpoch} lies past the end of the schedule (optim.epochs = ${epochs})`,
    );
  }
  if (sizes.length > 0) {
    const n = sizes[0][1];
    const batchSize = config.optim.batchSize;
    // The trainer records its count (a last batch may be dropped or kept): between floor and ceil of n / batch size.
    const perEpoch = meta.batchesPerEpoch ?? batchCount(n, batchSize);
    if (
      !isCount(perEpoch) ||
      perEpoch < Math.max(1, Math.floor(n / batchSize)) ||
      perEpoch > batchCount(n, batchSize)
    ) {
      refuse(path, `batchesPerEpoch = ${JSON.stringify(perEpoch)} does not fit ${n} images in batches of ${batchSize}`);
    }
    if (position.batchInEpoch > perEpoch) {
      refuse(
        path,
        `position.batchInEpoch = ${position.batchInEpoch} lies past the end of the data (${n} images make ${perEpoch} batches of ${batchSize})`,
      );
    }
    const implied = position.epoch * perEpoch + position.batchInEpoch;
    if (position.iteration !== implied) {
      refuse(
        path,
        `position.iteration = ${position.iteration}, but epoch ${position.epoch}, batch ${position.batchInEpoch} at ${perEpoch} batches per epoch means ${implied}`,
      );
    }
  }
  const progress = meta.epochProgress;
  if (progress) {
    const p = progress.pending;
    const sums = [progress.loss, progress.accuracy, progress.changeRatio];
    const lists = p ? [p.loss, p.correct, p.changed, p.rows] : [];
    const ok =
      sums.every(Number.isFinite) &&
      isCount(progress.logs) &&
      lists.length === 4 &&
      lists.every((l) => Array.isArray(l) && l.length === p.rows.length) &&
      p.loss.every(Number.isFinite) &&
      [p.correct, p.changed, p.rows].every((l) => l.every(isCount)) &&
      isCount(p.splits);
    if (!ok) refuse(path, 'epochProgress (the metrics of the epoch in progress) holds non-finite or malformed values');
  }
}
