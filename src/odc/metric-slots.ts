/**
 * The per-iteration metrics of a training run (loss, head accuracy, label changes), kept on the GPU between
 * log points and read once per logging interval.
 */
import { gpu } from '../gpu/device.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { EpochProgress } from './checkpoint.ts';

/** Per-iteration metrics accumulated on the GPU between log points (one read per interval). */
export class MetricSlots {
  readonly loss: Tensor<'f32'>;
  readonly correct: Tensor<'u32'>;
  readonly changed: Tensor<'u32'>;
  readonly rows: number[] = [];

  /** `interval` iterations per log record; `carried`: iterations restored from a checkpoint (may exceed a new interval). */
  constructor(
    readonly interval: number,
    carried = 0,
  ) {
    const capacity = Math.max(interval, carried + 1);
    this.loss = Tensor.empty([capacity], 'f32');
    this.correct = Tensor.empty([capacity], 'u32');
    this.changed = Tensor.empty([capacity], 'u32');
  }

  record(loss: Tensor<'f32'>, correct: Tensor<'u32'>, changed: Tensor<'u32'> | null, rows: number): void {
    const i = this.rows.length;
    gpu().copy(loss.buffer, 0, this.loss.buffer, i * 4, 4);
    gpu().copy(correct.buffer, 0, this.correct.buffer, i * 4, 4);
    if (changed) gpu().copy(changed.buffer, 0, this.changed.buffer, i * 4, 4);
    this.rows.push(rows);
  }

  get full(): boolean {
    return this.rows.length >= this.interval;
  }

  /** The iterations recorded and not yet drained, for a mid-epoch checkpoint; throws on a non-finite loss. */
  async pending(tracksChange: boolean): Promise<Omit<EpochProgress['pending'], 'splits'>> {
    const count = this.rows.length;
    const [loss, correct, changed] =
      count > 0 ? await Promise.all([this.loss.data(), this.correct.data(), this.changed.data()]) : [[], [], []];
    const out = {
      loss: Array.from(loss).slice(0, count),
      correct: Array.from(correct).slice(0, count),
      changed: tracksChange ? Array.from(changed).slice(0, count) : new Array<number>(count).fill(0),
      rows: [...this.rows],
    };
    for (const l of out.loss) if (!Number.isFinite(l)) throw new NonFiniteLossError(l);
    return out;
  }

  /** Puts back the iterations `pending()` returned (a resumed run then logs as the uninterrupted one would). */
  restore(p: Omit<EpochProgress['pending'], 'splits'>): void {
    if (p.rows.length === 0) return;
    gpu().write(this.loss.buffer, Float32Array.from(p.loss));
    gpu().write(this.correct.buffer, Uint32Array.from(p.correct));
    gpu().write(this.changed.buffer, Uint32Array.from(p.changed));
    this.rows.push(...p.rows);
  }

  /** Reads and clears the slots: mean loss, accuracy, change ratio; throws on a non-finite loss. */
  async drain(tracksChange: boolean): Promise<{ loss: number; accuracy: number; changeRatio: number; count: number }> {
    const count = this.rows.length;
    if (count === 0) return { loss: Number.NaN, accuracy: Number.NaN, changeRatio: Number.NaN, count };
    const [loss, correct, changed] = await Promise.all([this.loss.data(), this.correct.data(), this.changed.data()]);
    let l = 0;
    let c = 0;
    let ch = 0;
    let total = 0;
    for (let i = 0; i < count; i++) {
      if (!Number.isFinite(loss[i])) throw new NonFiniteLossError(loss[i]);
      l += loss[i];
      c += correct[i];
      ch += changed[i];
      total += this.rows[i];
    }
    this.rows.length = 0;
    return { loss: l / count, accuracy: c / total, changeRatio: tracksChange ? ch / total : 0, count };
  }

  dispose(): void {
    this.loss.dispose();
    this.correct.dispose();
    this.changed.dispose();
  }
}

export class NonFiniteLossError extends Error {
  constructor(value: number) {
    super(
      `The loss became ${value}: training stopped. The last good checkpoint is kept; lower optim.lr ` +
        '(e.g. --set optim.lr=0.01) and resume with --resume, or restart.',
    );
    this.name = 'NonFiniteLossError';
  }
}
