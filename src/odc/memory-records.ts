/**
 * The ODC memory as checkpoint records: its metadata (sizes, settings, generator state) and bit-exact host
 * copies of its tensors, named `memory.*`, and the way back. The training checkpoint (checkpoint.ts) stores
 * them beside the model's records; writeRecords / readRecords (checkpoint-io.ts) put them in a file.
 */
import { gpu } from '../gpu/device.ts';
import type { Tensor } from '../tensor/tensor.ts';
import type { RecordArray } from './checkpoint-io.ts';
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

/**
 * Host copies of the state (bit-exact) for a checkpoint: features, labels, centroids, weights, change count.
 * A memory in one shard writes `memory.features` [N, D] (as before sharding); a sharded one writes one record
 * per shard, `memory.features.0`, `.1`, ... ([rows, D] each, in row order), read one shard at a time.
 */
export async function exportMemoryState(
  memory: OdcMemory,
): Promise<{ meta: Record<string, unknown>; records: Record<string, { data: RecordArray; shape: number[] }> }> {
  const { parts } = memory.featureShards;
  const features: Record<string, { data: RecordArray; shape: number[] }> = {};
  if (parts.length === 1) features['memory.features'] = { data: await parts[0].data(), shape: [memory.n, memory.dim] };
  else for (let s = 0; s < parts.length; s++) features[`memory.features.${s}`] = { data: await parts[s].data(), shape: [...parts[s].shape] };
  return {
    meta: memoryMeta(memory),
    records: {
      ...features,
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
 * this device's shard layout (options.maxShardBytes lowers it, as OdcMemory.create's).
 */
export function memoryFromState(
  meta: unknown,
  records: ReadonlyMap<string, MemoryRecord> | Record<string, MemoryRecord>,
  options: { maxShardBytes?: number } = {},
): OdcMemory {
  const m = meta as Record<string, unknown> | null;
  if (!m || m.format !== 'odc-memory' || m.version !== 1) throw new Error('memoryFromState: metadata is not an odc-memory v1 state');
  if (!Array.isArray(m.rng)) throw new Error('memoryFromState: metadata lacks the generator state "rng"');
  const get = (name: string) => (records instanceof Map ? records.get(name) : (records as Record<string, MemoryRecord>)[name]);
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
    putFeatures(memory, get);
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

/** The features from `memory.features` or from the per-shard records `memory.features.0`, `.1`, ... (see exportMemoryState). */
function putFeatures(memory: OdcMemory, get: (name: string) => MemoryRecord | undefined): void {
  const whole = get('memory.features');
  const chunks: MemoryRecord[] = [];
  if (whole) chunks.push(whole);
  else for (let s = 0; get(`memory.features.${s}`); s++) chunks.push(get(`memory.features.${s}`)!);
  if (chunks.length === 0) throw new Error('memoryFromState: record "memory.features" is missing');
  let row0 = 0;
  for (const c of chunks) {
    if (!(c.data instanceof Float32Array) || c.data.length % memory.dim !== 0 || row0 + c.data.length / memory.dim > memory.n) {
      throw new RangeError(`memoryFromState: the feature records must be Float32Arrays of ${memory.n} rows of ${memory.dim} values in all`);
    }
    writeFeatureRows(memory, row0, c.data);
    row0 += c.data.length / memory.dim;
  }
  if (row0 !== memory.n) throw new RangeError(`memoryFromState: the feature records hold ${row0} rows, the memory has ${memory.n}`);
}
