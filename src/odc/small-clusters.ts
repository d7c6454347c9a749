/**
 * ODC's small-cluster policy (spec 2.5) with its host decisions: which clusters are small, where their members
 * go, and which cluster each recycled id is refilled from. The GPU does the moves, the 2-means splits
 * (split.ts) and the centroid updates; the host reads are the ones listed in host-reads.ts.
 *
 * In training the decision is made late (LateSmallClusterChecks, issue 9 design b): an iteration's check is a
 * late read, the host records the next iteration meanwhile and holds that work back (Gpu.hold) until the
 * decision is made; a rare path (some cluster small) is recorded and submitted first, then the held work. Queue
 * order, random draws and results are exactly those of deciding at once.
 */
import { gpu, type HeldWork } from '../gpu/device.ts';
import { InFlightWindow, MAX_ITERATIONS_IN_FLIGHT } from '../gpu/inflight.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Rng } from '../util/rng.ts';
import { readHistogram, readSplitCount, type SizeCheck } from './host-reads.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { kmeans as kmeansKernels } from '../kernels/kmeans.ts';
import { odcMemory } from '../kernels/odc_memory.ts';
import { centroidMeans, compactIndices, maskBias, nearest, threads } from '../ops/clustering.ts';
import { twoMeansSplit } from './split.ts';

export interface SplitRecord {
  /** The recycled (previously small, now emptied) cluster id. */
  dead: number;
  /** The cluster that was split: the largest at that moment (lowest id on ties). */
  big: number;
  /** Its size before the split. */
  bigSize: number;
  /** Members moved to `dead` (2-means side 1). */
  moved: number;
}

export interface SmallClusterReport {
  /** Clusters with fewer than minCluster members at the start of the call, ascending. */
  small: number[];
  /** Members of small clusters reassigned to their nearest allowed centroid. */
  reassigned: number;
  splits: SplitRecord[];
  /** Only with `{ trace: true }` (tests): all labels right after the move step, before any split. */
  labelsAfterMoves?: Uint32Array;
}

/** What the policy needs of a memory (OdcMemory is one; declared here so memory.ts can import this file). */
export interface ClusterMemory {
  readonly n: number;
  readonly dim: number;
  readonly k: number;
  readonly minCluster: number;
  readonly splitRestarts: number;
  readonly splitMaxIter: number;
  readonly labels: Tensor<'u32'>;
  readonly centroids: Tensor<'f32'>;
  /** Seeds the 2-means restarts. */
  readonly rng: Rng;
  /**
   * The memory rows idx[0..count) as rows x[rowIdx[r]] of one buffer: the memory itself and idx when it is one
   * buffer, else a gathered copy and 0..count-1 (release() frees what was made).
   */
  indexedRows(idx: Tensor<'u32'>, count: number): { x: Tensor<'f32'>; rowIdx: Tensor<'u32'>; release(): void };
  /** A new [K] u32 label histogram. */
  histogram(): Tensor<'u32'>;
  /** Labels of the given samples (a new u32 tensor). */
  labelsOf(indices: Tensor<'u32'>): Tensor<'u32'>;
  /** Throws if a kernel skipped an out-of-range GPU-tensor index. */
  checkErrors(): Promise<void>;
}

/**
 * Spec 2.5. Reads the histogram (host decides which clusters are small), moves every member of a small
 * cluster to its nearest allowed centroid (dot product over clusters that were not small; GPU), re-reads the
 * histogram, then refills each small id in ascending order by splitting the current largest cluster with GPU
 * 2-means and recomputing the centroids of both halves. Reads one count back per split. Afterwards no cluster
 * is empty.
 */
export async function handleSmallClusters(
  memory: ClusterMemory,
  options: { trace?: boolean } = {},
): Promise<SmallClusterReport> {
  await memory.checkErrors();
  return resolveSmallClusters(memory, await readHistogram(memory.histogram()), options);
}

/**
 * Spec 2.5 from cluster sizes the host already holds (`sizes`, as of the labels now on the GPU; updated in
 * place): nothing is recorded or read when no cluster is small, else the moves and splits of handleSmallClusters.
 */
export async function resolveSmallClusters(
  memory: ClusterMemory,
  sizes: Uint32Array,
  options: { trace?: boolean } = {},
): Promise<SmallClusterReport> {
  const { n, dim, k, minCluster, labels, centroids } = memory;
  let h = sizes;
  const small: number[] = [];
  for (let c = 0; c < k; c++) if (h[c] < minCluster) small.push(c);
  if (small.length === 0)
    return { small, reassigned: 0, splits: [], ...(options.trace ? { labelsAfterMoves: await labels.data() } : {}) };
  if (small.length === k)
    throw new Error(
      `OdcMemory: all ${k} clusters have fewer than minCluster = ${minCluster} members; nothing to move them to`,
    );
  const maskHost = new Uint32Array(k);
  let members = 0;
  for (const c of small) {
    maskHost[c] = 1;
    members += h[c];
  }
  if (members > 0) {
    const mask = Tensor.from(maskHost, [k], 'u32');
    const idx = compactIndices(labels, n, k, members, { mask });
    const bias = Tensor.empty([k], 'f32');
    maskBias(mask, k, bias);
    const dest = Tensor.empty([members], 'u32');
    const rows = memory.indexedRows(idx, members);
    nearest({ x: rows.x, n: members, d: dim, idx: rows.rowIdx, centroids, k, bias, labels: dest });
    rows.release();
    dispatchKernel(odcMemory.scatter_labels, {
      params: { n: members },
      bindings: { idx: idx.buffer, values: dest.buffer, labels: labels.buffer },
      workgroups: threads(members),
    });
    for (const t of [mask, idx, bias, dest]) t.dispose();
    h = await readHistogram(memory.histogram());
  }
  const labelsAfterMoves = options.trace ? await labels.data() : undefined;
  const splits: SplitRecord[] = [];
  for (const dead of small) {
    let big = 0;
    for (let c = 1; c < k; c++) if (h[c] > h[big]) big = c;
    const size = h[big];
    if (size < 2)
      throw new Error(`OdcMemory: cannot refill cluster ${dead}: the largest cluster ${big} has ${size} member(s)`);
    const idx = compactIndices(labels, n, k, size, { value: big });
    const rows = memory.indexedRows(idx, size);
    const { side, count1 } = twoMeansSplit(rows.x, dim, rows.rowIdx, size, memory.rng, {
      restarts: memory.splitRestarts,
      maxIter: memory.splitMaxIter,
    });
    dispatchKernel(kmeansKernels.tm_relabel, {
      params: { n: size, label: dead },
      bindings: { idx: idx.buffer, side: side.buffer, labels: labels.buffer },
      workgroups: threads(size),
    });
    const lab = memory.labelsOf(idx);
    const list = Tensor.from([big, dead], [2], 'u32');
    centroidMeans({
      x: rows.x,
      n: size,
      d: dim,
      idx: rows.rowIdx,
      labels: lab,
      k,
      out: centroids,
      list,
      listLength: 2,
    });
    rows.release();
    const moved = await readSplitCount(count1);
    for (const t of [idx, side, count1, lab, list]) t.dispose();
    h[dead] = moved;
    h[big] = size - moved;
    splits.push({ dead, big, bigSize: size, moved });
  }
  return { small, reassigned: members, splits, ...(labelsAfterMoves ? { labelsAfterMoves } : {}) };
}

/** What the late checks need of a memory beyond the policy's (OdcMemory is one). */
export interface LateCheckMemory extends ClusterMemory {
  /** Counts the sizes and starts a late read of them with the error word. */
  checkLater(): Promise<SizeCheck>;
  /** Loss weights from the sizes checkLater or updateWeights counted last. */
  weightsFromSizes(power: number): void;
  /** Counts the sizes afresh, then the loss weights. */
  updateWeights(power: number): void;
}

/** One iteration whose small-cluster decision is open. */
interface OpenCheck {
  iteration: number;
  check: Promise<SizeCheck>;
  /** Its work, recorded while an earlier decision was open and held back until that one is made. */
  held: HeldWork | null;
}

/**
 * The small-cluster decisions of training iterations, made late (spec 2.5 semantics, issue 9 design b). Per
 * iteration: `begin` before it records anything (holds its work back while an earlier decision is open),
 * `end` after its optimiser step (the check as a late read, the weights from the checked sizes), then
 * `settle(keep)` decides the oldest open iterations until `keep` remain: a rare path runs and is submitted
 * at once, the weights are recomputed after it, then the next iteration's held work is submitted. The open
 * iterations sit in an InFlightWindow (src/gpu/inflight.ts) of MAX_ITERATIONS_IN_FLIGHT: with keep = 1, one
 * iteration executes on the GPU while the host records the next.
 */
export class LateSmallClusterChecks {
  private readonly open: InFlightWindow<OpenCheck>;
  private splits = 0;

  constructor(
    private readonly memory: LateCheckMemory,
    private readonly reweightPower: number,
  ) {
    this.open = new InFlightWindow(
      MAX_ITERATIONS_IN_FLIGHT,
      (entry, next) => this.decide(entry, next),
      (entry) => entry.held?.discard(),
    );
  }

  /** Iterations whose decision is still open. */
  get pending(): number {
    return this.open.size;
  }

  /** Before an iteration records anything: while a decision is open, its work must wait behind that rare path. */
  begin(): void {
    if (this.open.size > 0) gpu().hold();
  }

  /** After the iteration's optimiser step (and centroid recompute): its check and its loss weights. */
  end(iteration: number): void {
    const check = this.memory.checkLater();
    this.memory.weightsFromSizes(this.reweightPower);
    this.open.push({ iteration, check, held: gpu().holding ? gpu().endHold() : null });
  }

  /** Drops an iteration's held work after a failure while it was recorded (nothing of it reaches the GPU). */
  abandon(): void {
    if (gpu().holding) gpu().endHold().discard();
  }

  /**
   * Decides open iterations, oldest first, until `keep` remain open; returns the clusters they split. An error
   * word stops training here with an error naming the iteration (neither its work nor later work is ever
   * checkpointed: held work is dropped).
   */
  async settle(keep: number): Promise<number> {
    this.splits = 0;
    await this.open.settleTo(keep);
    return this.splits;
  }

  private async decide({ iteration, check }: OpenCheck, next: OpenCheck | undefined): Promise<void> {
    const { skipped, sizes } = await check;
    if (skipped > 0) {
      throw new RangeError(
        `OdcMemory: in iteration ${iteration + 1}, ${skipped} out-of-range sample index(es) (memory holds ${this.memory.n} rows) ` +
          'were passed as GPU tensors and skipped; training stopped, and the last checkpoint written is from before that iteration',
      );
    }
    const report = await resolveSmallClusters(this.memory, sizes);
    if (report.small.length > 0) this.memory.updateWeights(this.reweightPower);
    this.splits += report.splits.length;
    if (next?.held) {
      next.held.submit();
      next.held = null;
    }
  }
}
