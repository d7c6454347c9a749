/**
 * odc-webgpu/testing: a property-testing kit for clustering code. fast-check arbitraries for clustering
 * states, the invariants of ODC-SPEC section 5 as predicates with clear messages, and
 * `checkClusteringImplementation(impl, options)` / `checkMemoryImplementation(impl, options)`, which run them
 * against any implementation of a small interface. The project's own tests use it (test/testing-kit.test.ts, test/odc_memory.test.ts).
 */
export {
  featureMatrix,
  clusteringProblem,
  normalizedRows,
  batchIndices,
  labelAssignment,
  skewedLabels,
  memoryState,
  memoryStateFrom,
  unitRows,
} from './arbitraries.ts';
export type {
  FeatureMatrix,
  ClusteringProblem,
  FeatureMatrixOptions,
  MemoryState,
  MemoryStateOptions,
} from './arbitraries.ts';
export {
  expectHolds,
  labelsInRange,
  histogramSumsTo,
  noEmptyCluster,
  unitNormRows,
  centroidsAreMeans,
  labelsAreArgmax,
  labelsAreNearest,
  memoryUpdateRows,
  movedOnlyToKeptClusters,
  lossWeights,
  identical,
} from './invariants.ts';
export type { Violation, Tolerance, MemoryRows } from './invariants.ts';
export { checkClusteringImplementation, checkMemoryImplementation } from './harness.ts';
export type {
  ClusteringImplementation,
  ClusteringOutput,
  ClusteringCheckOptions,
  MemoryImplementation,
  MemoryHandle,
  MemoryContents,
} from './harness.ts';
