/**
 * Training progress: a live status line on a terminal (plain lines otherwise) and a JSONL log with
 * one record per logging interval.
 */
import { appendFileSync } from 'node:fs';

export interface ProgressRecord {
  epoch: number;
  iteration: number;
  iterationsPerEpoch: number;
  totalIterations: number;
  imagesPerSecond: number;
  etaSeconds: number;
  loss: number;
  headAccuracy: number;
  changeRatio: number;
  lr: number;
  smallClusters?: number;
  minCluster?: number;
  maxCluster?: number;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(sec).padStart(2, '0')}s`;
}

export class Progress {
  private readonly tty: boolean;
  private lineOpen = false;

  constructor(
    private readonly logPath: string | null,
    private readonly quiet = false,
  ) {
    this.tty = Boolean((process.stdout as { isTTY?: boolean }).isTTY);
  }

  /** Writes a record to the JSONL log and updates the status line. */
  report(r: ProgressRecord, extra: Record<string, number | string> = {}): void {
    if (this.logPath)
      appendFileSync(this.logPath, JSON.stringify({ time: new Date().toISOString(), ...r, ...extra }) + '\n');
    if (this.quiet) return;
    const line =
      `epoch ${r.epoch + 1} it ${r.iteration}/${r.totalIterations} | ${r.imagesPerSecond.toFixed(1)} img/s | ETA ${formatDuration(r.etaSeconds)} | ` +
      `loss ${r.loss.toFixed(4)} | acc ${(100 * r.headAccuracy).toFixed(1)}% | change ${(100 * r.changeRatio).toFixed(2)}%` +
      (r.smallClusters !== undefined ? ` | small ${r.smallClusters} | sizes ${r.minCluster}..${r.maxCluster}` : '') +
      ` | lr ${r.lr.toPrecision(3)}`;
    if (this.tty) {
      process.stdout.write(`\r\x1b[2K${line}`);
      this.lineOpen = true;
    } else {
      console.log(line);
    }
  }

  /** A message on its own line (epoch summaries, checkpoints, warnings). */
  message(text: string): void {
    if (this.quiet) return;
    if (this.lineOpen) process.stdout.write('\n');
    this.lineOpen = false;
    console.log(text);
  }

  event(record: Record<string, unknown>): void {
    if (this.logPath)
      appendFileSync(this.logPath, JSON.stringify({ time: new Date().toISOString(), ...record }) + '\n');
  }
}

export { formatDuration };
