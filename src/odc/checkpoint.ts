/**
 * Training checkpoints: everything needed to resume bit-exactly (model parameters and BN buffers,
 * optimiser momentum, the ODC memory or DeepCluster's pseudo-labels of the epoch, every RNG state, the
 * position in the schedule), in one checkpoint-io file written atomically (temp file, fsync, rename over
 * the old one), so a crash or a full disk mid-write leaves the previous checkpoint intact.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gpu } from '../gpu/device.ts';
import { readRecords, writeRecords, type RecordArray, type TensorRecord } from './checkpoint-io.ts';
import type { Module } from '../nn/module.ts';
import type { SGD } from '../optim/sgd.ts';
import { OdcMemory } from './memory.ts';
import type { TrainConfig } from './config.ts';

export const CHECKPOINT_FILE = 'checkpoint.odc';

export interface TrainPosition {
  /** Epoch being trained (0-based). */
  epoch: number;
  /** Batches of this epoch already done. */
  batchInEpoch: number;
  /** Iterations done since the start of training. */
  iteration: number;
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
export async function saveCheckpoint(dir: string, state: TrainState, meta: Omit<CheckpointMeta, 'format' | 'version' | 'momentumBuffers' | 'memoryMeta' | 'sgdLr'>): Promise<string> {
  const records: Record<string, RecordArray | TensorRecord> = {};
  for (const [name, p] of state.model.namedParameters()) records[`param.${name}`] = { data: await p.data(), shape: p.shape };
  for (const [name, b] of state.model.namedBuffers()) records[`buffer.${name}`] = { data: await b.data(), shape: b.shape };
  const sgdState = await state.sgd.exportState();
  sgdState.momentumBuffers.forEach((buf, i) => {
    if (buf) records[`sgd.${i}`] = buf;
  });
  let memoryMeta: Record<string, unknown> | null = null;
  if (state.memory) {
    const m = await state.memory.exportState();
    memoryMeta = m.meta;
    Object.assign(records, m.records);
  }
  if (state.pseudoLabels) records[PSEUDO_LABELS] = { data: state.pseudoLabels, shape: [state.pseudoLabels.length] };
  const full: CheckpointMeta = { format: 'odc-train', version: 1, ...meta, sgdLr: sgdState.lr, momentumBuffers: sgdState.momentumBuffers.map((b) => b !== null), memoryMeta };
  const path = join(dir, CHECKPOINT_FILE);
  try {
    await writeRecords(path, records, full);
  } catch (err) {
    const code = (err as { code?: string }).code;
    const hint = code === 'ENOSPC' ? ' The disk is full: free space and resume with --resume; the previous checkpoint is intact.' : '';
    throw new Error(`Could not write the checkpoint ${path}: ${(err as Error).message}.${hint}`);
  }
  return path;
}

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  /** Applies the saved tensors to a freshly built model/optimiser and returns the restored memory. */
  restore(model: Module, sgd: SGD | null): OdcMemory | null;
  /** DeepCluster's pseudo-labels of the epoch in progress, if the checkpoint holds them. */
  pseudoLabels: Uint32Array | null;
}

/** Reads `dir/checkpoint.odc` (verifying checksums) without touching any model yet. */
export async function loadCheckpoint(dir: string): Promise<LoadedCheckpoint> {
  const path = join(dir, CHECKPOINT_FILE);
  if (!existsSync(path)) throw new Error(`No checkpoint at ${path}: train first (odc train --out ${dir}), or point --run at a training output folder.`);
  const file = await readRecords(path);
  const meta = file.meta as CheckpointMeta;
  if (!meta || meta.format !== 'odc-train' || meta.version !== 1) throw new Error(`${path} is not an odc-webgpu training checkpoint (format ${String(meta?.format)})`);
  const take = (name: string, size: number): RecordArray => {
    const r = file.records.get(name);
    if (!r) throw new Error(`${path}: record "${name}" is missing; the checkpoint does not match this model configuration`);
    if (r.data.length !== size) throw new Error(`${path}: record "${name}" has ${r.data.length} values, the model expects ${size}`);
    return r.data;
  };
  return {
    meta,
    restore(model, sgd) {
      for (const [name, p] of model.namedParameters()) gpu().write(p.buffer, take(`param.${name}`, p.size));
      for (const [name, b] of model.namedBuffers()) gpu().write(b.buffer, take(`buffer.${name}`, b.size));
      if (sgd) {
        const params = model.parameters();
        const buffers = meta.momentumBuffers.map((has, i) => (has ? (take(`sgd.${i}`, params[i].size) as Float32Array) : null));
        sgd.loadState({ lr: meta.sgdLr, momentumBuffers: buffers });
      }
      return meta.memoryMeta ? OdcMemory.fromState(meta.memoryMeta, file.records) : null;
    },
    pseudoLabels: (file.records.get(PSEUDO_LABELS)?.data as Uint32Array | undefined) ?? null,
  };
}
