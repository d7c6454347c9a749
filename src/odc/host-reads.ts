/**
 * Every GPU -> host read of an ODC training iteration, in one place so they are easy to find. An iteration
 * runs labelsOf, the loss, update, maybe recomputeCentroids, then the small-cluster check and the weights
 * (modes.ts, small-clusters.ts). On the common path (no cluster under minCluster) the host waits on none of
 * them: the one read of an iteration is a late read (Gpu.readLater) that the host collects after it has
 * recorded the next iteration (issue 9).
 *
 * 1. readSizesLater (16 + 4K bytes: the [4] error word, then the [K] cluster sizes), every iteration, late:
 *    OdcMemory.checkLater. The sizes decide which clusters are small (spec 2.5: a host decision,
 *    n_c < minCluster); the error word counts indices passed as GPU tensors that were out of range (the
 *    kernels skip and count them: the run must stop with a clear error rather than train on skipped rows).
 * 2. Only when a cluster is small (the rare path, blocking): readHistogram once more after the moves when any
 *    member moved (each refill splits the largest cluster, found on the host), and readSplitCount (4 bytes)
 *    once per split after its centroids are recomputed: the size of 2-means side 1, so the host histogram
 *    stays exact and the next refill splits the cluster that really is the largest (spec 2.5).
 * 3. At log iterations, epoch ends and after init, OdcMemory.stats(): readStatusWord and readHistogram
 *    (blocking; spec 2.8 step 7d), after the iterations' late decisions are all settled.
 *
 * Not the memory's, listed so the picture is whole: the trainer drains its metric slots (loss, accuracy,
 * change counts; metric-slots.ts) at log iterations, and reads all labels at epoch ends for the NMI (modes.ts).
 * Outside the iterations: OdcMemory.init reads the k-means inertia and empty-cluster counts once (its report)
 * and runs handleSmallClusters with blocking reads, checkpoints read the whole memory (memory-records.ts), and
 * handleSmallClusters' `trace` option (tests only) reads all labels after the moves.
 */
import { gpu } from '../gpu/device.ts';
import type { Tensor } from '../tensor/tensor.ts';

/** The memory's error word: the number of out-of-range GPU-tensor indices the kernels skipped. */
export async function readStatusWord(status: Tensor<'u32'>): Promise<number> {
  return (await status.data())[0];
}

/** Reads a [K] label histogram to the host and releases the GPU tensor. */
export async function readHistogram(hist: Tensor<'u32'>): Promise<Uint32Array> {
  const h = await hist.data();
  hist.dispose();
  return h;
}

/** Reads the [1] count of members a 2-means split moves to the recycled id. */
export async function readSplitCount(count1: Tensor<'u32'>): Promise<number> {
  return (await count1.data())[0];
}

/** An iteration's small-cluster check as the host receives it. */
export interface SizeCheck {
  /** Out-of-range GPU-tensor indices the kernels skipped (the error word). */
  skipped: number;
  /** [K] cluster sizes. */
  sizes: Uint32Array;
}

/** A late read of a [4 + K] u32 tensor (error word, then sizes); the tensor may be released once this returns. */
export function readSizesLater(both: Tensor<'u32'>): Promise<SizeCheck> {
  return gpu()
    .readLater(both.buffer, both.size * 4)
    .then((bytes) => {
      const words = new Uint32Array(bytes);
      return { skipped: words[0], sizes: words.subarray(4) };
    });
}
