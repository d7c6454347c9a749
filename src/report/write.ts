/**
 * `odc report` (from a run folder's checkpoint and log) and `odc train --report` (from the live training
 * session at every epoch end): build the report data and write the HTML file.
 */
import { join } from 'node:path';
import type { TrainingSession } from '../odc/session.ts';
import { OdcMode } from '../odc/modes.ts';
import { clusterSpaceOf, openRun } from './assignments.ts';
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
  const state = mode.checkpointState();
  const clusters = await clusterSpaceOf({
    memory: mode instanceof OdcMode ? mode.memory : null,
    pseudoLabels: state.pseudoLabels,
    model: session.model,
    config: session.config,
    dataset: session.dataset,
  });
  const out = join(session.outDir, REPORT_FILE);
  writeReportFile(
    out,
    renderReport(buildRunReport(session.outDir, clusters ? { space: clusters.space, dataset: session.dataset } : null)),
  );
  return out;
}
