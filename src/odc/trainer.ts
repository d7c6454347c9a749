/**
 * The ODC trainer (ODC-SPEC section 2.8), and the DeepCluster baseline on the same engine. The rooms:
 *   session.ts   checks, data, model, optimiser, RNG streams, resume and checkpoints of one run
 *   modes.ts     ODC and DeepCluster behind one interface (labels, sampling, per-step memory work)
 *   step.ts      one training iteration (also what bench/train-step.ts times)
 *   loop.ts      epochs, log records, epoch summaries and the checkpoint policy
 * Initial clustering (ODC) runs once on the random-init network in eval mode; the head is re-initialised
 * right after it. Losses, accuracies and change counts stay on the GPU and are read once per logging interval.
 */
import { join } from 'node:path';
import { CHECKPOINT_FILE, type TrainPosition } from './checkpoint.ts';
import { TrainingLoop, type EpochSummary } from './loop.ts';
import { TrainingSession, type TrainOptions } from './session.ts';
import type { TrainConfig } from '../config/settings.ts';
import { setWorkingPrecision } from '../ops/precision.ts';
import { checkTensorCores } from '../ops/tensor-cores.ts';

export type { EpochSummary } from './loop.ts';
export type { TrainOptions } from './session.ts';
export { NonFiniteLossError } from './metric-slots.ts';

export interface TrainResult {
  epochs: EpochSummary[];
  /** NMI of the initial clustering (random-init network) against the true labels, when available. */
  initialNmi?: number;
  iterations: number;
  /** Clusters dissolved and refilled by splitting during training (this process only). */
  splits: number;
  seconds: number;
  checkpoint: string;
  /** Training stopped before the end of the schedule (options.signal or stopAfterIterations); resume from `checkpoint`. */
  interrupted: boolean;
  /** Where it stopped (the end of the schedule when not interrupted). */
  position: TrainPosition;
}

/** `train(config, options)`'s options: everything but the config; the output folder defaults to runs/<preset>. */
export type TrainCallOptions = Omit<TrainOptions, 'config' | 'outDir'> & { outDir?: string };

/**
 * Runs ODC (or the DeepCluster baseline) training as configured: `train(config, { dataset, onEpoch, signal,
 * outDir })` (the library form; outDir defaults to runs/<config.preset>), or `train({ config, outDir, ... })`.
 * An aborted `signal` stops cleanly after the current iteration, with a checkpoint to resume from.
 */
export async function train(config: TrainConfig, options?: TrainCallOptions): Promise<TrainResult>;
export async function train(options: TrainOptions): Promise<TrainResult>;
export async function train(first: TrainConfig | TrainOptions, second?: TrainCallOptions): Promise<TrainResult> {
  const options: TrainOptions = isTrainOptions(first)
    ? first
    : { ...second, config: first, outDir: second?.outDir ?? join('runs', first.preset) };
  const session = await TrainingSession.open(options);
  const started = performance.now();
  try {
    setWorkingPrecision(session.config.optim.precision);
    if (session.config.optim.precision === 'f16') await checkTensorCores(); // once per process; disables itself with a warning
    await session.begin();
    const loop = new TrainingLoop(session);
    await loop.run();
    const position = session.position;
    const interrupted = position.epoch < session.config.optim.epochs;
    if (interrupted) {
      const reason = options.signal?.aborted ? String(options.signal.reason ?? 'stop request') : 'stopAfterIterations';
      session.progress.event({ event: 'interrupted', reason, ...position });
    }
    return {
      epochs: loop.summaries,
      initialNmi: session.initialNmi,
      iterations: position.iteration,
      splits: loop.splits,
      seconds: (performance.now() - started) / 1000,
      checkpoint: join(options.outDir, CHECKPOINT_FILE),
      interrupted,
      position,
    };
  } finally {
    setWorkingPrecision('f32');
    session.dispose();
  }
}

function isTrainOptions(x: TrainConfig | TrainOptions): x is TrainOptions {
  return 'config' in x && 'outDir' in x;
}
