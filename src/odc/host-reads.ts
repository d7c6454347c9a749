/**
 * Every blocking GPU -> host read of an ODC training iteration lives here, so they are easy to find (issue 9
 * takes them off the common path; until then they happen exactly when listed, and moving one changes timing
 * only, never numbers):
 *
 * 1. readStatusWord (16 bytes, the [4] word): OdcMemory.checkErrors, at the start of every handleSmallClusters (each
 *    iteration, after the update) and of every OdcMemory.stats(). Why: indices passed as GPU tensors cannot
 *    be range-checked on the host; the kernels skip and count them, and the run must stop with a clear error
 *    rather than train on skipped rows.
 * 2. readHistogram (4K bytes, K clusters): handleSmallClusters reads it once per iteration to decide which clusters are
 *    small (spec 2.5: a host decision, n_c < minCluster), and once more after the moves when any member moved
 *    (the largest cluster of each refill is chosen from it); OdcMemory.stats() reads it for the logs (spec
 *    2.8 step 7d: log iterations and epoch ends).
 * 3. readSplitCount (4 bytes): once per split, the size of 2-means side 1, so the host histogram stays exact
 *    and the next refill splits the cluster that is really the largest (spec 2.5).
 *
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
