/**
 * `checkClusteringImplementation`: runs the invariants a k-means-style clustering must satisfy against any
 * implementation behind a small interface (CPU or GPU, this project's or yours), on generated problems
 * with duplicates, ties, zero rows, tiny and huge clusters. A failure throws fast-check's report: the
 * shrunk counterexample (the smallest problem found), the seed to replay it, and the invariant's message.
 */
import fc from 'fast-check';
import {
  batchIndices,
  clusteringProblem,
  memoryState,
  normalizedRows,
  type ClusteringProblem,
  type MemoryState,
} from './arbitraries.ts';
import {
  centroidsAreMeans,
  expectHolds,
  histogramSumsTo,
  identical,
  labelsAreArgmax,
  labelsAreNearest,
  labelsInRange,
  memoryUpdateRows,
  noEmptyCluster,
  type Tolerance,
} from './invariants.ts';

/** What a clustering returns: one label per row and k centroids, row-major [k, d]. */
export interface ClusteringOutput {
  labels: ArrayLike<number>;
  centroids: ArrayLike<number>;
}

/** The interface the harness drives. `x` is [n, d] row-major; the same seed must give the same result. */
export interface ClusteringImplementation {
  name?: string;
  cluster(x: Float32Array, n: number, d: number, k: number, seed: number): ClusteringOutput | Promise<ClusteringOutput>;
}

export interface ClusteringCheckOptions {
  /** Problems to run on (default: `clusteringProblem()`, up to 64 rows, 8 dimensions, k <= 8). */
  problems?: fc.Arbitrary<ClusteringProblem>;
  /** fast-check runs (default 50). */
  numRuns?: number;
  /** fast-check seed, to replay a reported failure. */
  seed?: number;
  /** Give the implementation L2-normalised rows, as the ODC memory holds them (default false). */
  normalize?: boolean;
  /** How labels relate to centroids: nearest in L2 (k-means, default) or highest dot product (ODC's relabel, 5.5). */
  assignment?: 'l2' | 'dot';
  /**
   * Also require centroids = plain means of the returned labels' members (5.3): true for an implementation
   * that ends with an update step or converges; Lloyd's k-means that ends with an assignment does not promise it.
   */
  centroidsAreMeans?: boolean;
  /**
   * Also require every cluster non-empty (5.8). faiss-style k-means (and this project's) may leave one empty
   * at the final assignment; ODC repairs that with small-cluster handling right after (ODC-SPEC 6).
   */
  noEmptyCluster?: boolean;
  /** Distance/score margin under which either of two clusters is accepted (default 1e-5; 0 = exact lowest-index ties). */
  tieTolerance?: number;
  meansTolerance?: Tolerance;
}

/**
 * Checks `impl` on generated problems: labels in range (5.1), histogram sums to N (5.6), labels = nearest
 * centroid / argmax with lowest-index ties (5.5), optionally centroids = member means (5.3) and no empty
 * cluster (5.8), and determinism (the same seed twice gives identical labels and bit-identical centroids).
 * Resolves when every run passes; rejects with fast-check's report (shrunk counterexample + invariant) otherwise.
 */
export async function checkClusteringImplementation(
  impl: ClusteringImplementation,
  options: ClusteringCheckOptions = {},
): Promise<void> {
  const problems = options.problems ?? clusteringProblem();
  const tieTolerance = options.tieTolerance ?? 1e-5;
  const property = fc.asyncProperty(problems, fc.nat(), async (problem, seed) => {
    const { n, d, k } = problem;
    const x = options.normalize ? normalizedRows(problem) : Float32Array.from(problem.data);
    const first = await impl.cluster(Float32Array.from(x), n, d, k, seed);
    const rangeError = labelsInRange(first.labels, k, n);
    if (first.centroids.length !== k * d)
      expectHolds(`centroids: ${first.centroids.length} values, expected k * d = ${k * d}`);
    expectHolds(rangeError);
    expectHolds(
      histogramSumsTo(first.labels, k, n),
      options.assignment === 'dot'
        ? labelsAreArgmax(x, first.labels, first.centroids, k, d, { tieTolerance })
        : labelsAreNearest(x, first.labels, first.centroids, k, d, { tieTolerance }),
      options.centroidsAreMeans
        ? centroidsAreMeans(x, first.labels, first.centroids, k, d, { tolerance: options.meansTolerance })
        : null,
      options.noEmptyCluster ? noEmptyCluster(first.labels, k) : null,
    );
    const second = await impl.cluster(Float32Array.from(x), n, d, k, seed);
    expectHolds(
      identical('labels', first.labels, second.labels),
      identical('centroids', first.centroids, second.centroids),
    );
  });
  const name = impl.name ?? 'clustering implementation';
  try {
    await fc.assert(property, {
      numRuns: options.numRuns ?? 50,
      includeErrorInReport: true,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${name} breaks an invariant:\n${message}`, { cause: err });
  }
}

/** The arrays of an ODC memory, as read back from an implementation. */
export interface MemoryContents {
  features: ArrayLike<number>;
  labels: ArrayLike<number>;
  centroids: ArrayLike<number>;
}

/** One memory made by a `MemoryImplementation`: the per-step operations of ODC-SPEC 2.3 and 2.4. */
export interface MemoryHandle {
  /** 2.3: mix the batch rows with the fresh features (momentum), re-normalise, relabel against the centroids. */
  update(indices: number[], fresh: Float32Array): void | Promise<void>;
  /** 2.4: every centroid = the plain mean of its members (an empty cluster keeps its centroid). */
  recomputeCentroids(): void | Promise<void>;
  read(): MemoryContents | Promise<MemoryContents>;
  dispose?(): void;
}

/** An ODC memory implementation: makes a memory that holds exactly `state`, with update momentum `momentum`. */
export interface MemoryImplementation {
  name?: string;
  create(state: MemoryState, momentum: number): MemoryHandle | Promise<MemoryHandle>;
}

/**
 * Checks an ODC memory on generated states and batches (repeats included): after `update`, batch rows follow
 * 5.4 (last repeat wins) and rows outside the batch are bit-identical, batch labels are the argmax against the
 * centroids (5.5), labels stay in range and the histogram sums to N (5.1, 5.6); after `recomputeCentroids`,
 * centroids are plain member means and empty clusters keep theirs (5.7). Rejects with fast-check's report.
 */
export async function checkMemoryImplementation(
  impl: MemoryImplementation,
  options: { numRuns?: number; seed?: number; states?: fc.Arbitrary<MemoryState>; tieTolerance?: number } = {},
): Promise<void> {
  const states = options.states ?? memoryState({ maxRows: 300, maxDim: 16, maxK: 12 });
  const cases = states.chain((state) =>
    fc.record({
      state: fc.constant(state),
      indices: batchIndices(state.n, { maxSize: 48 }),
      momentum: fc.constantFrom(0.5, 0.25, 1),
      freshSeed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    }),
  );
  const property = fc.asyncProperty(cases, async ({ state, indices, momentum, freshSeed }) => {
    const { n, d, k } = state;
    let x = freshSeed;
    // fresh neck outputs: non-negative like a post-ReLU feature, from a small seeded generator
    const fresh = Float32Array.from({ length: indices.length * d }, () => {
      x = (Math.imul(x, 48271) % 2147483647) >>> 0;
      return (x % 1000) / 500;
    });
    const memory = await impl.create(state, momentum);
    try {
      await memory.update(indices, fresh);
      const after = await memory.read();
      expectHolds(
        labelsInRange(after.labels, k, n),
        histogramSumsTo(after.labels, k, n),
        memoryUpdateRows(state, after, indices, fresh, momentum, d),
        labelsAreArgmax(after.features, after.labels, state.centroids, k, d, {
          rows: indices,
          tieTolerance: options.tieTolerance,
        }),
      );
      await memory.recomputeCentroids();
      const recomputed = await memory.read();
      expectHolds(
        centroidsAreMeans(recomputed.features, recomputed.labels, recomputed.centroids, k, d, {
          previous: after.centroids,
        }),
      );
    } finally {
      memory.dispose?.();
    }
  });
  try {
    await fc.assert(property, {
      numRuns: options.numRuns ?? 30,
      includeErrorInReport: true,
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
    });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new Error(`${impl.name ?? 'memory implementation'} breaks an invariant:\n${message}`, { cause: err });
  }
}
