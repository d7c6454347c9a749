/**
 * The bookkeeping of the ODC memory's feature rows held in shards (memory.ts keeps the algorithm): how many rows
 * a shard holds on this device, allocating the shards, the memory as one tensor where it is one shard, host
 * copies whole or in row chunks, gathering rows across shards, and normalising raw features into them. The
 * per-shard launches themselves (forEachShard, gatherShardRows, perShardRows) are clustering primitives
 * (src/ops/clustering.ts), shared with k-means.
 */
import { gpu } from '../gpu/device.ts';
import { Tensor } from '../tensor/tensor.ts';
import { fillU32, forEachShard, gatherShardRows, rowsPerShard, type RowShards } from '../ops/clustering.ts';
import { normalizeRows } from '../ops/rows.ts';

/**
 * Rows per feature shard of an [n, dim] memory on this device: the largest multiple of 64 rows within
 * min(maxStorageBufferBindingSize, maxBufferSize, maxShardBytes), and at most what one nearest-centroid launch takes
 * (64 rows per workgroup in its tiled variant); n when the whole memory fits.
 */
export function featureShardRows(n: number, dim: number, maxShardBytes = Infinity): number {
  const { maxStorageBufferBindingSize, maxBufferSize, maxComputeWorkgroupsPerDimension } = gpu().limits;
  const maxBytes = Math.min(maxShardBytes, maxStorageBufferBindingSize, maxBufferSize);
  return Math.min(rowsPerShard(n, dim, maxBytes), 64 * maxComputeWorkgroupsPerDimension);
}

/** Zero-filled [n, dim] f32 rows in shards of `shardRows` rows (the last one partial). */
export function allocateFeatureShards(n: number, dim: number, shardRows: number): RowShards {
  const parts: Tensor<'f32'>[] = [];
  for (let row0 = 0; row0 < n; row0 += shardRows) {
    const part = Tensor.empty([Math.min(shardRows, n - row0), dim], 'f32');
    fillU32(part, 0);
    parts.push(part);
  }
  return { parts, rowsPerShard: shardRows, n, d: dim };
}

/** The rows as one tensor: only a memory held in one shard has one. */
export function singleShard(shards: RowShards): Tensor<'f32'> {
  if (shards.parts.length !== 1)
    throw new Error(
      `OdcMemory: the features [${shards.n}, ${shards.d}] are held in ${shards.parts.length} shards, not one tensor`,
    );
  return shards.parts[0];
}

/** Host copy of all the rows, read shard by shard (small memories and tests; see forEachRowChunk for large ones). */
export async function shardsData(shards: RowShards): Promise<Float32Array> {
  const out = new Float32Array(shards.n * shards.d);
  for (let s = 0; s < shards.parts.length; s++)
    out.set(await shards.parts[s].data(), s * shards.rowsPerShard * shards.d);
  return out;
}

/**
 * Reads the rows to the host in order, at most `chunkRows` at a time (one blocking read each), and calls fn with
 * each chunk and its first row: host memory holds one chunk, whatever N.
 */
export async function forEachRowChunk(
  shards: RowShards,
  chunkRows: number,
  fn: (rows: Float32Array, row0: number) => void,
): Promise<void> {
  const { d, rowsPerShard: perShard } = shards;
  for (let s = 0; s < shards.parts.length; s++) {
    const shardRows = shards.parts[s].shape[0];
    for (let r = 0; r < shardRows; r += chunkRows) {
      const rows = Math.min(chunkRows, shardRows - r);
      fn(new Float32Array(await gpu().read(shards.parts[s].buffer, rows * d * 4, r * d * 4)), s * perShard + r);
    }
  }
}

/**
 * Rows idx[0..count) of the memory in one buffer, with the indices to read them by: the shard and idx themselves
 * when it is one shard, else the rows gathered into a new buffer and 0..count-1 (release() frees those).
 */
export function gatheredRows(
  shards: RowShards,
  idx: Tensor<'u32'>,
  count: number,
): { x: Tensor<'f32'>; rowIdx: Tensor<'u32'>; release(): void } {
  if (shards.parts.length === 1) return { x: shards.parts[0], rowIdx: idx, release: () => {} };
  const rows = Math.max(count, 1);
  const x = Tensor.empty([rows, shards.d], 'f32');
  gatherShardRows(shards, idx, x, count);
  const rowIdx = Tensor.from(
    Uint32Array.from({ length: rows }, (_, i) => i),
    [rows],
    'u32',
  );
  return { x, rowIdx, release: () => (x.dispose(), rowIdx.dispose()) };
}

/**
 * Writes the L2-normalised rows of raw features into the shards by ODC-SPEC's rule (||x|| + 1e-10, summed in
 * order over each row, as the momentum update sums): raw is one [n, dim] tensor or one block per shard. Row by
 * row, so normalising a block or the whole gives the same bits.
 */
export function normalizeIntoShards(raw: Tensor<'f32'> | readonly Tensor<'f32'>[], shards: RowShards): void {
  const options = { epsilon: 'add', summation: 'serial' } as const;
  if (!(raw instanceof Tensor)) raw.forEach((block, s) => normalizeRows(block, { ...options, out: shards.parts[s] }));
  else if (shards.parts.length === 1) normalizeRows(raw, { ...options, out: shards.parts[0] });
  else {
    const all = normalizeRows(raw, options);
    forEachShard(shards, (part, row0, rows) =>
      gpu().copy(all.buffer, row0 * shards.d * 4, part.buffer, 0, rows * shards.d * 4),
    );
    all.dispose();
  }
}
