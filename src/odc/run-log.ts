/**
 * A run's log.jsonl read back (by the report and by `odc eval`; written by ./progress.ts and ./loop.ts): the records of each logging interval, the epoch summaries (with
 * the label churn and cluster sizes the loop adds) and the initial clustering. A record logged twice (a run
 * killed after a log line and resumed from an earlier checkpoint) counts once: the later one wins.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One logging interval (src/odc/progress.ts ProgressRecord). */
export interface IntervalRecord {
  epoch: number;
  iteration: number;
  loss: number;
  headAccuracy: number;
  changeRatio: number;
  lr: number;
  imagesPerSecond: number;
  smallClusters?: number;
  minCluster?: number;
  maxCluster?: number;
}

/** One epoch's summary (src/odc/loop.ts EpochSummary) plus the report's fields. */
export interface EpochRecord {
  epoch: number;
  loss: number;
  headAccuracy: number;
  changeRatio: number;
  imagesPerSecond: number;
  nmi?: number;
  smallClusters: number;
  minCluster: number;
  maxCluster: number;
  /** NMI of this epoch's labels to the previous epoch's (absent for the first epoch of DeepCluster and after a resume). */
  labelChurnNmi?: number;
  /** Images per cluster at the epoch end (absent in logs written before the report existed). */
  sizes?: number[];
}

export interface InitRecord {
  nmi?: number;
  min: number;
  max: number;
  sizes?: number[];
}

export interface RunLog {
  intervals: IntervalRecord[];
  epochs: EpochRecord[];
  init: InitRecord | null;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses log.jsonl text; a line that is not a JSON object (a write cut short by a kill) is skipped. */
export function parseRunLog(text: string): RunLog {
  const intervals = new Map<number, IntervalRecord>();
  const epochs = new Map<number, EpochRecord>();
  let init: InitRecord | null = null;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      continue;
    }
    if (!isObject(r)) continue;
    if (r.event === undefined && typeof r.iteration === 'number' && typeof r.loss === 'number')
      intervals.set(r.iteration, r as unknown as IntervalRecord);
    else if (r.event === 'epoch' && typeof r.epoch === 'number') epochs.set(r.epoch, r as unknown as EpochRecord);
    else if (r.event === 'init') init = r as unknown as InitRecord;
  }
  const sorted = <T>(m: Map<number, T>): T[] => [...m].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  return { intervals: sorted(intervals), epochs: sorted(epochs), init };
}

/** Reads DIR/log.jsonl; a clear error when the folder holds none. */
export function readRunLog(runDir: string): RunLog {
  const path = join(runDir, 'log.jsonl');
  if (!existsSync(path))
    throw new Error(
      `${path} does not exist: point --run (or --compare) at a training output folder (odc train --out DIR writes it)`,
    );
  return parseRunLog(readFileSync(path, 'utf8'));
}
