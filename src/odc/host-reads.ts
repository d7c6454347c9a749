/**
 * Every blocking GPU -> host read of an ODC training iteration, in one place so they are easy to find (issue 9
 * takes them off the common path; until then they happen exactly when listed here). An iteration runs
 * labelsOf, the loss, update, maybe recomputeCentroids, then handleSmallClusters and updateWeights (modes.ts):
 *
 * 1. readStatusWord (16 bytes, the [4] error word), in OdcMemory.checkErrors: first thing in every
 *    handleSmallClusters (every iteration, after the update) and in every OdcMemory.stats(). Why: indices
 *    passed as GPU tensors cannot be range-checked on the host; the kernels skip and count them, and the run
 *    must stop with a clear error rather than train on skipped rows.
 * 2. readHistogram (4 bytes per cluster): handleSmallClusters reads it every iteration to decide which
 *    clusters are small (spec 2.5: a host decision, n_c < minCluster), and once more after the moves when any
 *    member moved (each refill splits the largest cluster, found on the host). OdcMemory.stats() reads it for
 *    the logs (spec 2.8 step 7d): after init, at log iterations and at epoch ends.
 * 3. readSplitCount (4 bytes): once per split, after its centroids are recomputed: the size of 2-means
 *    side 1, so the host histogram stays exact and the next refill splits the cluster that really is the
 *    largest (spec 2.5).
 *
 * Not the memory's, listed so the picture is whole: the trainer drains its metric slots (loss, accuracy,
 * change counts; metric-slots.ts) at log iterations, and reads all labels at epoch ends for the NMI (modes.ts).
 * Outside the iterations: OdcMemory.init reads the k-means inertia and empty-cluster counts once (its report),
 * checkpoints read the whole memory (memory-records.ts), and handleSmallClusters' `trace` option (tests only)
 * reads all labels after the moves.
 */
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
