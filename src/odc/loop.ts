/**
 * The epoch loop of a training session: the learning-rate schedule, one `trainingStep` per batch, a log
 * record every log.interval iterations (metrics read from the GPU once per record), the epoch summary with
 * the NMI of the labels against the truth, and the checkpoint policy: every log.checkpointEvery epochs, at
 * the end, every log.checkpointMinutes, and on a stop request (options.signal, stopAfterIterations), where
 * a mid-epoch checkpoint carries the epoch's metrics so far so a resumed run logs as the uninterrupted one.
 */
import { stepLr } from '../optim/schedule.ts';
import { trainingBatches } from '../data/sampler.ts';
import { nmi } from '../metrics/nmi.ts';
import type { EpochProgress, EpochSummary, TrainPosition } from './checkpoint.ts';

export type { EpochSummary } from './checkpoint.ts';
import { MetricSlots } from './metric-slots.ts';
import { trainingStep } from './step.ts';
import type { TrainingSession } from './session.ts';
import { labelHistogram } from '../metrics/metrics.ts';

/** An epoch's metric sums over its drained log records (each record weighted by its iterations). */
type EpochSums = Omit<EpochProgress, 'pending'>;

const positionKey = (p: TrainPosition): string => `${p.epoch}/${p.batchInEpoch}/${p.iteration}`;

export class TrainingLoop {
  readonly summaries: EpochSummary[] = [];
  /** Clusters dissolved and refilled by splitting (this process only). */
  splits = 0;
  private readonly slots: MetricSlots;
  private splitsSinceLog: number;
  private imagesSinceStart = 0;
  private readonly runStart = performance.now();
  private savedAt: string;
  private lastSaveTime = performance.now();
  /** The labels at the end of the previous epoch (or of the initial clustering), for the label churn; null after a resume. */
  private previousLabels: Uint32Array | null;

  constructor(private readonly s: TrainingSession) {
    const carried = s.carried;
    this.slots = new MetricSlots(s.config.log.interval, carried?.pending.rows.length ?? 0);
    if (carried) this.slots.restore(carried.pending);
    this.splitsSinceLog = carried?.pending.splits ?? 0;
    this.savedAt = s.resumed ? positionKey(s.position) : '';
    this.previousLabels = s.initialLabels ?? null;
  }

  /** Trains to the end of the schedule or to a stop request; the session's position says which. */
  async run(): Promise<void> {
    try {
      let stopped = this.stopRequested();
      if (stopped) await this.checkpoint(null); // stopped during the initial clustering: keep its result
      for (let epoch = this.s.position.epoch; epoch < this.s.config.optim.epochs && !stopped; epoch++)
        stopped = await this.epoch(epoch);
    } finally {
      this.slots.dispose();
    }
  }

  /** Trains the rest of `epoch`; returns whether a stop request ended the run. */
  private async epoch(epoch: number): Promise<boolean> {
    const { config, sgd, mode } = this.s;
    const epochStart = performance.now();
    sgd.setLr(stepLr(config.optim.lr, epoch, { steps: config.optim.lrSteps, gamma: config.optim.lrGamma }));
    // The step's tape keeps the training step's buffers out of the pool: give them back for the extraction and
    // k-means, which would otherwise add their own on top (the tape is captured again, bit-identically).
    if (mode.extractsAtEpochStart) this.s.replay?.dispose();
    const order = await mode.epochOrder(epoch, this.s.position.batchInEpoch);
    const batches = trainingBatches(order, this.s.batchSize);
    const resumed = this.s.position.batchInEpoch > 0 ? this.s.carried : null;
    const sums: EpochSums = {
      loss: resumed?.loss ?? 0,
      accuracy: resumed?.accuracy ?? 0,
      changeRatio: resumed?.changeRatio ?? 0,
      logs: resumed?.logs ?? 0,
    };
    for (let b = this.s.position.batchInEpoch; b < batches.length; b++) {
      const idx = batches[b];
      // a streaming source reads the next batch from disk while this one trains
      await this.s.augmenter.stage(idx);
      if (b + 1 < batches.length) this.s.augmenter.prefetch(batches[b + 1]);
      // The host runs ahead: this iteration's small-cluster decision stays open while the next one is recorded.
      this.countSplits(
        await trainingStep(this.s, idx, this.s.position.iteration, (...m) => this.slots.record(...m), 1),
      );
      this.s.position = { epoch, batchInEpoch: b + 1, iteration: this.s.position.iteration + 1 };
      this.imagesSinceStart += idx.length;
      const last = b === batches.length - 1;
      // What follows reads from the GPU or hands the state out: each decides the open iteration first.
      if (this.slots.full || last || this.s.options.afterIteration) this.countSplits(await mode.settle(0));
      if (this.slots.full || last) await this.logRecord(epoch, sums);
      await this.s.options.afterIteration?.(this.s.position.iteration);
      if (!last && (this.stopRequested() || this.checkpointDue())) {
        this.countSplits(await mode.settle(0));
        await this.checkpoint({
          ...sums,
          pending: { ...(await this.slots.pending(mode.tracksChange)), splits: this.splitsSinceLog },
        });
        if (this.stopRequested()) return true;
      }
    }
    const summary = await this.endEpoch(epoch, sums, order.length, epochStart);
    const every = config.log.checkpointEvery;
    if ((epoch + 1) % every === 0 || epoch + 1 === config.optim.epochs || this.stopRequested() || this.checkpointDue())
      await this.checkpoint(null);
    await this.s.options.onEpoch?.({ ...summary }, this.s);
    if (!this.stopRequested()) return false;
    await this.checkpoint(null); // a stop asked for by onEpoch: keep this epoch end (no-op when just written)
    return true;
  }

  private countSplits(splits: number): void {
    this.splits += splits;
    this.splitsSinceLog += splits;
  }

  /** Drains the metric slots into one log record and adds it to the epoch's sums. */
  private async logRecord(epoch: number, sums: EpochSums): Promise<void> {
    const { config, sgd, mode, position, iterationsPerEpoch, batchSize } = this.s;
    const m = await this.slots.drain(mode.tracksChange);
    const stats = await mode.logStats();
    const elapsed = (performance.now() - this.runStart) / 1000;
    const rate = this.imagesSinceStart / elapsed;
    const totalIterations = iterationsPerEpoch * config.optim.epochs;
    sums.loss += m.loss * m.count;
    sums.accuracy += m.accuracy * m.count;
    sums.changeRatio += m.changeRatio * m.count;
    sums.logs += m.count;
    this.s.progress.report(
      {
        epoch,
        iteration: position.iteration,
        iterationsPerEpoch,
        totalIterations,
        imagesPerSecond: rate,
        etaSeconds: ((totalIterations - position.iteration) * batchSize) / rate,
        loss: m.loss,
        headAccuracy: m.accuracy,
        changeRatio: m.changeRatio,
        lr: sgd.lr,
        ...(stats ? { smallClusters: stats.small, minCluster: stats.min, maxCluster: stats.max } : {}),
      },
      { splits: this.splitsSinceLog, ...(await this.lossScaleFields()) },
    );
    this.splitsSinceLog = 0;
  }

  /** The loss scale and the steps it skipped so far (precision f16), for the log record. */
  private async lossScaleFields(): Promise<Record<string, number>> {
    if (!this.s.scaler) return {};
    const st = await this.s.scaler.read();
    return { lossScale: st.scale, skippedSteps: st.skippedSteps };
  }

  /** The epoch's summary (with the NMI of the current labels against the truth) into the history and the log; returns it. */
  private async endEpoch(epoch: number, sums: EpochSums, images: number, epochStart: number): Promise<EpochSummary> {
    const { labels, stats } = await this.s.mode.epochLabels();
    const trueLabels = this.s.dataset.labels;
    const seconds = (performance.now() - epochStart) / 1000;
    const summary: EpochSummary = {
      epoch,
      loss: sums.loss / sums.logs,
      headAccuracy: sums.accuracy / sums.logs,
      changeRatio: sums.changeRatio / sums.logs,
      imagesPerSecond: images / seconds,
      seconds,
      ...(trueLabels ? { nmi: nmi(labels, trueLabels) } : {}),
      smallClusters: stats.small,
      minCluster: stats.min,
      maxCluster: stats.max,
    };
    this.summaries.push(summary);
    this.s.history.push({ ...summary });
    this.s.position = { epoch: epoch + 1, batchInEpoch: 0, iteration: this.s.position.iteration };
    this.s.progress.message(
      `epoch ${epoch + 1}/${this.s.config.optim.epochs}: loss ${summary.loss.toFixed(4)}, head acc ${(100 * summary.headAccuracy).toFixed(1)}%, ` +
        `change ${(100 * summary.changeRatio).toFixed(2)}%` +
        (summary.nmi !== undefined ? `, NMI ${summary.nmi.toFixed(4)}` : '') +
        `, ${summary.imagesPerSecond.toFixed(1)} img/s`,
    );
    // Extra fields for the report, outside the summary (so history and checkpoints stay as they were): the
    // NMI of these labels to the previous epoch's (label churn; 1 = no label changed) and the cluster sizes.
    const churn = this.previousLabels ? { labelChurnNmi: nmi(labels, this.previousLabels) } : {};
    this.previousLabels = labels;
    this.s.progress.event({
      event: 'epoch',
      ...summary,
      ...churn,
      sizes: Array.from(labelHistogram(labels, this.s.config.odc.k)),
    });
    return summary;
  }

  /** Writes a checkpoint unless one of this very position exists. */
  private async checkpoint(epochProgress: EpochProgress | null): Promise<void> {
    const position = this.s.position;
    if (this.savedAt === positionKey(position)) return;
    const path = await this.s.save(epochProgress);
    this.savedAt = positionKey(position);
    this.lastSaveTime = performance.now();
    this.s.progress.event({ event: 'checkpoint', ...position, path });
  }

  private stopRequested(): boolean {
    const { signal, stopAfterIterations } = this.s.options;
    return (
      signal?.aborted === true ||
      (stopAfterIterations !== undefined && this.s.position.iteration >= stopAfterIterations)
    );
  }

  /** log.checkpointMinutes have passed since the last checkpoint. */
  private checkpointDue(): boolean {
    const minutes = this.s.config.log.checkpointMinutes;
    return minutes > 0 && performance.now() - this.lastSaveTime >= minutes * 60_000;
  }
}
