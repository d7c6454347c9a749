/**
 * `odc report` (from a run folder's checkpoint and log) and `odc train --report` (from the live training
 * session at every epoch end): build the report data and write the HTML file.
 */
import { join } from 'node:path';
import type { TrainingSession } from '../odc/session.ts';
import { OdcMode } from '../odc/modes.ts';
import { clusterSpaceOf, memoryRanking, openRun } from './assignments.ts';
import { buildRunReport } from './build.ts';
import { renderReport, writeReportFile } from './html.ts';

export const REPORT_FILE = 'report.html';

/** Writes the report of `runDir` (its checkpoint's clusters, its log), with `compare` runs' curves overlaid; returns the path. */
export async function writeReport(opts: { runDir: string; compare: readonly string[]; out?: string }): Promise<string> {
  const out = opts.out ?? join(opts.runDir, REPORT_FILE);
  const compared = opts.compare.map((dir) => buildRunReport(dir, null));
  const run = await openRun(opts.runDir);
  try {
    const clusters = run.clusters ? { space: run.clusters.space, dataset: run.dataset } : null;
    writeReportFile(out, renderReport(buildRunReport(opts.runDir, clusters), compared));
  } finally {
    run.dispose();
  }
  return out;
}

/**
 * Rewrites DIR/report.html from a training session at an epoch end: the memory (ODC) or the epoch's
 * pseudo-labels (DeepCluster, on backbone features extracted in eval mode, which changes no training state).
 */
export async function writeLiveReport(session: TrainingSession): Promise<string> {
  const mode = session.mode;
  // ODC: the memory's ranking, its features read in chunks (never the N x D memory on the host at once)
  const space =
    mode instanceof OdcMode
      ? await memoryRanking(mode.memory)
      : (
          await clusterSpaceOf({
            memory: null,
            pseudoLabels: mode.checkpointState().pseudoLabels,
            model: session.model,
            config: session.config,
            dataset: session.dataset,
          })
        )?.space;
  const out = join(session.outDir, REPORT_FILE);
  writeReportFile(
    out,
    renderReport(buildRunReport(session.outDir, space ? { space, dataset: session.dataset } : null)),
  );
  return out;
}
