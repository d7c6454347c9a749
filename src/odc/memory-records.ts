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

/** Host copies of the state (bit-exact) for a checkpoint: features, labels, centroids, weights, change count. */
export async function exportMemoryState(
  memory: OdcMemory,
): Promise<{ meta: Record<string, unknown>; records: Record<string, { data: RecordArray; shape: number[] }> }> {
  return {
    meta: memoryMeta(memory),
    records: {
      'memory.features': { data: await memory.features.data(), shape: [memory.n, memory.dim] },
      'memory.labels': { data: await memory.labels.data(), shape: [memory.n] },
      'memory.centroids': { data: await memory.centroids.data(), shape: [memory.k, memory.dim] },
      'memory.weights': { data: await memory.weights.data(), shape: [memory.k] },
      'memory.changeCount': { data: await memory.changeCount.data(), shape: [1] },
    },
  };
}

/** Rebuilds a memory from `exportMemoryState()` output (or the records read from a checkpoint), bit-exactly. */
export function memoryFromState(
  meta: unknown,
  records: ReadonlyMap<string, MemoryRecord> | Record<string, MemoryRecord>,
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
  });
  try {
    memory.rng.setState(m.rng as number[]);
    memory.lastBatchSize = (m.lastBatchSize as number) ?? 0;
    put('memory.features', memory.features, Float32Array);
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
