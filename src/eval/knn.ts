/**
 * Weighted k-nearest-neighbour classification of frozen features (the InstDisc / mmselfsup protocol):
 * features are L2-normalised, similarity is the cosine, each of the k most similar training samples
 * votes for its label with weight exp(sim / T), and the class with the largest summed weight wins
 * (lowest class id on ties). Defaults k = 20, T = 0.07.
 *
 * On the GPU: row normalisation and a per-row top-k selection (shaders/knn.wgsl; the top-k runs one
 * workgroup per row on GPUs and one invocation per row on CPU adapters, where barriers are costly), and
 * the similarity GEMM test·trainᵀ on the engine's GEMM (src/ops/matmul.ts). Test rows go in chunks so the [chunk, Ntr] similarity block fits one storage binding
 * (<= 128 MiB and the device limit). Only the k neighbours' indices and similarities per test row come
 * back to the host, where the O(Nte·k) vote is counted.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { knn as kernels } from '../kernels/knn.ts';
import { runGemm } from '../ops/matmul.ts';
import { normalizeRows } from '../ops/rows.ts';
import { Tensor, expectDType, fmtShape } from '../tensor/tensor.ts';

const MAX_SIM_BLOCK_BYTES = 128 * 1024 * 1024;

/** Template size of the per-thread top-k lists: a power of two >= k (at least 8), so few variants compile. */
function kBucket(k: number): number {
  return Math.max(8, 2 ** Math.ceil(Math.log2(k)));
}

/** [N, D] of a 2-D f32 feature matrix; throws naming `what` otherwise (also used by linear-probe.ts). */
export function checkFeatures(t: Tensor, what: string): [number, number] {
  expectDType(t, 'f32', what);
  if (t.rank !== 2) throw new RangeError(`${what}: expected features of shape [N, D], got ${fmtShape(t.shape)}`);
  return [t.shape[0], t.shape[1]];
}

export interface KnnSearchOptions {
  k?: number;
  /** Train and test are the same set: skip the sample itself (leave-one-out). Needs Ntr = Nte. */
  excludeSelf?: boolean;
  /** Test rows per similarity block (default: as many as fit 128 MiB and the binding limit). */
  chunkRows?: number;
  /** Set when the features are already L2-normalised (skips the normalisation copies). */
  normalized?: boolean;
  /** Top-k kernel: 'workgroup' (one workgroup per row) or 'rows' (one invocation per row); default per adapter. */
  variant?: 'workgroup' | 'rows';
  /**
   * Called as the search goes, with the test rows searched so far: at the chunk ends that pass each fifth of
   * the rows, and after the last. Each call first waits for the GPU to finish those rows, so the count is true.
   */
  onProgress?: (rowsDone: number, rows: number) => void;
}

export interface KnnNeighbours {
  k: number;
  /** [Nte, k] row-major: indices into the training set, most similar first. */
  indices: Uint32Array;
  /** [Nte, k] cosine similarities, descending per row. */
  similarities: Float32Array;
}

/** The k most similar training rows (cosine) of each test row, computed on the GPU. */
export async function knnSearch(
  train: Tensor<'f32'>,
  test: Tensor<'f32'>,
  opts: KnnSearchOptions = {},
): Promise<KnnNeighbours> {
  const [ntr, d] = checkFeatures(train, 'knnSearch (train features)');
  const [nte, dte] = checkFeatures(test, 'knnSearch (test features)');
  if (d === 0) throw new RangeError(`knnSearch: features ${fmtShape(train.shape)} have no dimensions`);
  if (dte !== d)
    throw new RangeError(
      `knnSearch: train features are ${fmtShape(train.shape)} but test features are ${fmtShape(test.shape)}; the feature dimensions differ`,
    );
  const k = opts.k ?? 20;
  const excludeSelf = opts.excludeSelf ?? false;
  if (excludeSelf && ntr !== nte)
    throw new RangeError(`knnSearch: excludeSelf needs the same set for train and test, got ${ntr} and ${nte} rows`);
  const available = excludeSelf ? ntr - 1 : ntr;
  if (!Number.isInteger(k) || k < 1 || k > available) {
    throw new RangeError(
      `knnSearch: k = ${k} must be an integer in 1..${available} (${ntr} training rows${excludeSelf ? ', one excluded per query' : ''})`,
    );
  }
  if (k > 256) throw new RangeError(`knnSearch: k = ${k} is above the supported maximum of 256`);
  if (nte === 0) return { k, indices: new Uint32Array(0), similarities: new Float32Array(0) };
  const g = gpu();
  const blockLimit = Math.min(MAX_SIM_BLOCK_BYTES, g.limits.maxStorageBufferBindingSize);
  const fit = Math.max(1, Math.floor(blockLimit / (ntr * 4)));
  const chunk = Math.max(1, Math.min(nte, opts.chunkRows ?? fit, fit));
  g.checkBindingSize(nte * k * 4, `knnSearch's [${nte}, ${k}] neighbour list`);

  const owned: Tensor[] = [];
  try {
    // PyTorch's F.normalize rule (max(||x||, 1e-12)), as the kNN protocols this evaluation follows.
    const trainN = opts.normalized ? train : normalizeRows(train, { epsilon: 'clamp' });
    if (!opts.normalized) owned.push(trainN);
    let testN = trainN;
    if (test !== train) {
      testN = opts.normalized ? test : normalizeRows(test, { epsilon: 'clamp' });
      if (!opts.normalized) owned.push(testN);
    }
    const sim = Tensor.empty([chunk, ntr], 'f32');
    const topVal = Tensor.empty([nte, k], 'f32');
    const topIdx = Tensor.empty([nte, k], 'u32');
    owned.push(sim, topVal, topIdx);
    // The GEMM reads its A operand from offset 0: when chunked, each chunk is copied into a block first.
    let block: Tensor | null = null;
    if (chunk < nte) {
      block = Tensor.empty([chunk, d], 'f32');
      owned.push(block);
    }
    const perRow = (opts.variant ?? (g.isCpuAdapter ? 'rows' : 'workgroup')) === 'rows';
    const fifth = Math.ceil(nte / 5);
    for (let row0 = 0; row0 < nte; row0 += chunk) {
      const rows = Math.min(chunk, nte - row0);
      let a = testN.buffer;
      if (block) {
        g.copy(testN.buffer, row0 * d * 4, block.buffer, 0, rows * d * 4);
        a = block.buffer;
      }
      runGemm({ mode: 'matmul', M: rows, N: ntr, K: d, transB: true, a, b: trainN.buffer, out: sim.buffer });
      dispatchKernel(perRow ? kernels.topk_rows : kernels.topk, {
        params: { rows, cols: ntr, row_offset: row0, exclude_self: excludeSelf, k },
        bindings: { sim: sim.buffer, top_val: topVal.buffer, top_idx: topIdx.buffer },
        defines: { KMAX: kBucket(k) },
        workgroups: grid(perRow ? Math.ceil(rows / 64) : rows),
      });
      const done = row0 + rows;
      if (opts.onProgress && (Math.floor(done / fifth) > Math.floor(row0 / fifth) || done === nte)) {
        await g.sync();
        opts.onProgress(done, nte);
      }
    }
    const [similarities, indices] = await Promise.all([topVal.data(), topIdx.data()]);
    return { k, indices, similarities };
  } finally {
    for (const t of owned) t.dispose();
  }
}

export interface KnnVote {
  /** Predicted class per test row. */
  predictions: Int32Array;
  /** Whether the true label is among the top-5 classes by vote (top-min(5, C)). */
  top5Hits: Uint8Array;
}

/**
 * Weighted vote on the host from neighbour lists: class score = sum over neighbours of exp(sim / T);
 * argmax with the lowest class id on ties. `testLabels` (optional) fills top5Hits.
 */
export function knnVote(
  neighbours: KnnNeighbours,
  trainLabels: ArrayLike<number>,
  numClasses: number,
  temperature: number,
  testLabels?: ArrayLike<number>,
): KnnVote {
  const { k, indices, similarities } = neighbours;
  const n = indices.length / k;
  const predictions = new Int32Array(n);
  const top5Hits = new Uint8Array(n);
  const scores = new Float64Array(numClasses);
  const top = Math.min(5, numClasses);
  for (let i = 0; i < n; i++) {
    scores.fill(0);
    for (let t = 0; t < k; t++) {
      const j = indices[i * k + t];
      scores[trainLabels[j]] += Math.exp(similarities[i * k + t] / temperature);
    }
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (scores[c] > scores[best]) best = c;
    predictions[i] = best;
    if (testLabels) {
      // rank of the true class = classes strictly better, or equal with a lower id
      const y = testLabels[i];
      let rank = 0;
      for (let c = 0; c < numClasses; c++) if (scores[c] > scores[y] || (scores[c] === scores[y] && c < y)) rank++;
      top5Hits[i] = rank < top ? 1 : 0;
    }
  }
  return { predictions, top5Hits };
}

export interface KnnOptions {
  numClasses: number;
  k?: number;
  temperature?: number;
  excludeSelf?: boolean;
  chunkRows?: number;
  /** As knnSearch's: the test rows searched so far, a few times during the search. */
  onProgress?: (rowsDone: number, rows: number) => void;
}

export interface KnnResult {
  /** Top-1 accuracy in [0, 1]. */
  top1: number;
  /** Top-5 accuracy in [0, 1] (top-min(5, C)). */
  top5: number;
  predictions: Int32Array;
}

function checkLabels(labels: Int32Array, n: number, numClasses: number, what: string): void {
  if (!(labels instanceof Int32Array)) throw new TypeError(`knnAccuracy: ${what} must be an Int32Array`);
  if (labels.length !== n) throw new RangeError(`knnAccuracy: ${labels.length} ${what} for ${n} feature rows`);
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < 0 || labels[i] >= numClasses)
      throw new RangeError(`knnAccuracy: ${what}[${i}] = ${labels[i]} is outside 0..${numClasses - 1}`);
  }
}

/** Weighted kNN accuracy of test features against train features (features stay on the GPU). */
export async function knnAccuracy(
  trainFeatures: Tensor<'f32'>,
  trainLabels: Int32Array,
  testFeatures: Tensor<'f32'>,
  testLabels: Int32Array,
  opts: KnnOptions,
): Promise<KnnResult> {
  const { numClasses } = opts;
  const k = opts.k ?? 20;
  const temperature = opts.temperature ?? 0.07;
  if (!Number.isInteger(numClasses) || numClasses < 1)
    throw new RangeError(`knnAccuracy: numClasses = ${numClasses} must be a positive integer`);
  if (!(temperature > 0)) throw new RangeError(`knnAccuracy: temperature = ${temperature} must be positive`);
  checkFeatures(trainFeatures, 'knnAccuracy (train features)');
  checkFeatures(testFeatures, 'knnAccuracy (test features)');
  checkLabels(trainLabels, trainFeatures.shape[0], numClasses, 'train labels');
  checkLabels(testLabels, testFeatures.shape[0], numClasses, 'test labels');
  const neighbours = await knnSearch(trainFeatures, testFeatures, {
    k,
    excludeSelf: opts.excludeSelf,
    chunkRows: opts.chunkRows,
    onProgress: opts.onProgress,
  });
  const { predictions, top5Hits } = knnVote(neighbours, trainLabels, numClasses, temperature, testLabels);
  const n = testLabels.length;
  let hits = 0;
  let hits5 = 0;
  for (let i = 0; i < n; i++) {
    if (predictions[i] === testLabels[i]) hits++;
    hits5 += top5Hits[i];
  }
  return { top1: n ? hits / n : 0, top5: n ? hits5 / n : 0, predictions };
}
