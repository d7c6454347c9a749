/**
 * The ODC memory as checkpoint records: its metadata (sizes, settings, generator state) and bit-exact host
 * copies of its tensors, named `memory.*`, and the way back. The training checkpoint (checkpoint.ts) stores
 * them beside the model's records; writeRecords / readRecords (checkpoint-io.ts) put them in a file.
 */
import { gpu } from '../gpu/device.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { RecordArray, StreamedReadRecord, StreamedRecord, TensorRecord } from './checkpoint-io.ts';
import { OdcMemory } from './memory.ts';

/** One record: a typed array and its shape. */
export interface MemoryRecord {
  data: RecordArray;
  shape: readonly number[];
}

/** Metadata describing a memory (sizes, settings, generator state): what `memoryFromState` rebuilds it from. */
export function memoryMeta(memory: OdcMemory): Record<string, unknown> {
  return {
    format: 'odc-memory',
    version: 1,
    n: memory.n,
    dim: memory.dim,
    k: memory.k,
    momentum: memory.momentum,
    minCluster: memory.minCluster,
    seed: memory.seed,
    kmeansIterations: memory.kmeansIterations,
    kmeansInit: memory.kmeansInit,
    splitRestarts: memory.splitRestarts,
    splitMaxIter: memory.splitMaxIter,
    rng: memory.rng.state(),
    lastBatchSize: memory.lastBatchSize,
  };
}

/** Host copies of the state (bit-exact): features, labels, centroids, weights, change count (the whole memory: small ones, tests). */
export async function exportMemoryState(
  memory: OdcMemory,
): Promise<{ meta: Record<string, unknown>; records: Record<string, { data: RecordArray; shape: number[] }> }> {
  const { records, meta } = await memoryRecords(memory);
  const features = await memory.featuresData();
  return {
    meta,
    records: {
      'memory.features': { data: features, shape: [memory.n, memory.dim] },
      ...(records as Record<string, { data: RecordArray; shape: number[] }>),
    },
  };
}

/**
 * The checkpoint's records of a memory: `memory.features` [N, D] as a StreamedRecord that reads one shard at a
 * time while the file is written (the same record, byte for byte, whatever the shard layout), and host copies
 * of the small rest.
 */
export async function memoryRecords(
  memory: OdcMemory,
): Promise<{ meta: Record<string, unknown>; records: Record<string, TensorRecord>; features: StreamedRecord }> {
  const parts = memory.featureShards.parts;
  return {
    meta: memoryMeta(memory),
    features: {
      dtype: 'f32',
      shape: [memory.n, memory.dim],
      chunks: async function* () {
        for (const part of parts) yield await part.data();
      },
    },
    records: {
      'memory.labels': { data: await memory.labels.data(), shape: [memory.n] },
      'memory.centroids': { data: await memory.centroids.data(), shape: [memory.k, memory.dim] },
      'memory.weights': { data: await memory.weights.data(), shape: [memory.k] },
      'memory.changeCount': { data: await memory.changeCount.data(), shape: [1] },
    },
  };
}

/**
 * Writes host rows [row0, row0 + rows) of the features into whichever shards hold them (a record's rows need not
 * match this memory's shard layout: a checkpoint may come from a device with another binding limit).
 */
function writeFeatureRows(memory: OdcMemory, row0: number, data: Float32Array): void {
  const d = memory.dim;
  const { rowsPerShard, parts } = memory.featureShards;
  let row = row0;
  const end = row0 + data.length / d;
  while (row < end) {
    const s = Math.floor(row / rowsPerShard);
    const inShard = row - s * rowsPerShard;
    const count = Math.min(end - row, parts[s].shape[0] - inShard);
    gpu().write(parts[s].buffer, data.subarray((row - row0) * d, (row - row0 + count) * d), inShard * d * 4);
    row += count;
  }
}

/**
 * Rebuilds a memory from `exportMemoryState()` output (or the records read from a checkpoint), bit-exactly, in
 * this device's shard layout (options.maxShardBytes lowers it, as OdcMemory.create's). `memory.features` may be
 * in options.streamed (readRecords' stream option): it is then read and uploaded one shard's worth at a time.
 */
export function memoryFromState(
  meta: unknown,
  records: ReadonlyMap<string, MemoryRecord> | Record<string, MemoryRecord>,
  options: { maxShardBytes?: number; streamed?: ReadonlyMap<string, StreamedReadRecord> } = {},
): OdcMemory {
  const m = meta as Record<string, unknown> | null;
  if (!m || m.format !== 'odc-memory' || m.version !== 1)
    throw new Error('memoryFromState: metadata is not an odc-memory v1 state');
  if (!Array.isArray(m.rng)) throw new Error('memoryFromState: metadata lacks the generator state "rng"');
  const get = (name: string) =>
    records instanceof Map ? records.get(name) : (records as Record<string, MemoryRecord>)[name];
  const put = (name: string, t: Tensor, Ctor: Float32ArrayConstructor | Uint32ArrayConstructor) => {
    const r = get(name);
    if (!r) throw new Error(`memoryFromState: record "${name}" is missing`);
    if (!(r.data instanceof Ctor) || r.data.length !== t.size) {
      const got = `${r.data.constructor.name} of ${r.data.length}`;
      throw new RangeError(`memoryFromState: record "${name}" must be a ${Ctor.name} of ${t.size} values, got ${got}`);
    }
    gpu().write(t.buffer, r.data);
  };
  const memory = OdcMemory.create({
    n: m.n as number,
    dim: m.dim as number,
    k: m.k as number,
    momentum: m.momentum as number,
    minCluster: m.minCluster as number,
    seed: m.seed as number,
    kmeansIterations: m.kmeansIterations as number,
    kmeansInit: (m.kmeansInit as 'random' | 'kmeans++' | undefined) ?? 'random',
    splitRestarts: m.splitRestarts as number,
    splitMaxIter: m.splitMaxIter as number,
    maxShardBytes: options.maxShardBytes,
  });
  try {
    memory.rng.setState(m.rng as number[]);
    memory.lastBatchSize = (m.lastBatchSize as number) ?? 0;
    putFeatures(memory, get, options.streamed?.get('memory.features'));
    put('memory.labels', memory.labels, Uint32Array);
    put('memory.centroids', memory.centroids, Float32Array);
    put('memory.weights', memory.weights, Float32Array);
    if (get('memory.changeCount')) put('memory.changeCount', memory.changeCount, Uint32Array);
  } catch (err) {
    memory.dispose(); // a refused state leaves no GPU buffers behind
    throw err;
  }
  return memory;
}

/** The features from the record `memory.features`, whole or streamed in pieces of at most one shard. */
function putFeatures(
  memory: OdcMemory,
  get: (name: string) => MemoryRecord | undefined,
  streamed: StreamedReadRecord | undefined,
): void {
  const whole = get('memory.features');
  const pieces: Iterable<RecordArray> | null = whole
    ? [whole.data]
    : streamed
      ? streamed.pieces(memory.featureShards.rowsPerShard * memory.dim)
      : null;
  if (!pieces) throw new Error('memoryFromState: record "memory.features" is missing');
  let row0 = 0;
  for (const piece of pieces) {
    if (
      !(piece instanceof Float32Array) ||
      piece.length % memory.dim !== 0 ||
      row0 + piece.length / memory.dim > memory.n
    ) {
      throw new RangeError(
        `memoryFromState: record "memory.features" must be a Float32Array of ${memory.n * memory.dim} values`,
      );
    }
    writeFeatureRows(memory, row0, piece);
    row0 += piece.length / memory.dim;
  }
  if (row0 !== memory.n)
    throw new RangeError(
      `memoryFromState: record "memory.features" must be a Float32Array of ${memory.n * memory.dim} values, got ${row0 * memory.dim}`,
    );
}
