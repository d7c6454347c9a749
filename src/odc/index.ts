/**
 * odc-webgpu/odc: Online Deep Clustering as a library. The trainer (`train(config, { dataset, onEpoch,
 * signal })`), evaluation of a run's frozen backbone, feature extraction and export, the ODC memory and the
 * GPU k-means it starts from, presets and the configuration schema.
 */
import { evaluateRun } from '../eval/run-eval.ts';
import type { EvalRow } from '../eval/report.ts';

export { train } from './trainer.ts';
export type { TrainResult, TrainOptions, TrainCallOptions, EpochSummary } from './trainer.ts';
export { NonFiniteLossError } from './trainer.ts';
export type { TrainPosition } from './checkpoint.ts';
export type { TrainingSession } from './session.ts';
export { CHECKPOINT_FILE } from './checkpoint.ts';

export {
  SETTINGS,
  PRESETS,
  presetConfig,
  mergeConfig,
  applyOverride,
  validateConfig,
  settingsHelp,
} from '../config/settings.ts';
export type { TrainConfig } from '../config/settings.ts';
export { buildModel } from './build.ts';

export { OdcMemory, summarizeHistogram } from './memory.ts';
export type { OdcMemoryOptions, MemoryStats, InitReport } from './memory.ts';
export { kmeans, kmeansLabels } from './kmeans.ts';
export type { KMeansOptions, KMeansResult } from './kmeans.ts';

export { extractToFile, exportBackbone } from '../eval/run-eval.ts';
export type { EvalRow } from '../eval/report.ts';

export interface EvaluateOptions {
  /** Also evaluate the random-init backbone of the same seed (default true), so the gain is visible. */
  baseline?: boolean;
  /** Epochs of the linear probe (default 30, as `odc eval`). */
  probeEpochs?: number;
  /** Also write the rows as JSON to this file. */
  out?: string;
}

/**
 * Evaluates the frozen backbone of the run in `runDir` (kNN top-1, linear probe, k-means NMI/ARI/ACC, as
 * `odc eval`), prints the table and returns its rows.
 */
export function evaluate(runDir: string, options: EvaluateOptions = {}): Promise<EvalRow[]> {
  return evaluateRun({
    runDir,
    baseline: options.baseline ?? true,
    probeEpochs: options.probeEpochs ?? 30,
    out: options.out,
  });
}
