/**
 * The report as one self-contained HTML file: inline CSS, inline SVG charts (svg.ts), images as data URIs,
 * no script and no external reference, so it opens offline and a browser never leaves the page. Written
 * atomically (beside the target, then renamed), so a browser tab reloading it during training never sees
 * half a file.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { formatEvalTable } from '../eval/report.ts';
import type { RunReport } from './build.ts';
import { barChart, escapeXml, heatMap, lineChart, type Series } from './svg.ts';

const CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
.sub{color:#555}.charts{display:flex;flex-wrap:wrap;gap:8px}
svg .title{font-size:13px;font-weight:600}svg .tick,svg .legend{font-size:10px;fill:#444}svg .axis{font-size:11px;fill:#444}
svg .plot{fill:#fafafa;stroke:#ccc}svg .legend-box{fill:#fff;fill-opacity:.8;stroke:#ddd}svg .grid{stroke:#e4e4e4}svg .series{fill:none;stroke-width:1.6}
.galleries{display:flex;flex-wrap:wrap;gap:6px 18px}.gallery{width:316px;margin:4px 0}.gallery h3{font-size:12px;margin:0 0 3px;font-weight:600}
.gallery img{width:48px;height:48px;image-rendering:pixelated;margin:1px;border:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
.note{color:#777;font-size:12px;margin:2px 0 6px}`;

/** The curves of every run's log records over iterations: one series per run. */
function intervalSeries(
  runs: readonly RunReport[],
  value: (r: RunReport['log']['intervals'][number]) => number | undefined,
): Series[] {
  return runs.map((run) => ({
    name: run.name,
    points: run.log.intervals.map((r) => [r.iteration, value(r) ?? NaN] as const),
  }));
}

function epochSeries(
  runs: readonly RunReport[],
  value: (r: RunReport['log']['epochs'][number]) => number | undefined,
): Series[] {
  return runs.map((run) => ({
    name: run.name,
    points: run.log.epochs.map((r) => [r.epoch + 1, value(r) ?? NaN] as const),
  }));
}

/** Size bins on a log2 scale: 0, 1, 2-3, 4-7, ... up to the largest size. */
export function sizeBins(max: number): Array<{ label: string; lo: number; hi: number }> {
  const bins = [{ label: '0', lo: 0, hi: 0 }];
  for (let lo = 1; lo <= Math.max(1, max); lo *= 2)
    bins.push({ label: lo === 1 ? '1' : `${lo}-${2 * lo - 1}`, lo, hi: 2 * lo - 1 });
  return bins;
}

function histogram(sizes: readonly number[], bins: ReturnType<typeof sizeBins>): number[] {
  return bins.map((b) => sizes.filter((s) => s >= b.lo && s <= b.hi).length);
}

function curvesSection(runs: readonly RunReport[]): string {
  const min = intervalSeries(runs, (r) => r.minCluster).map((s, i) => ({ ...s, name: `${s.name} min`, color: i }));
  const max = intervalSeries(runs, (r) => r.maxCluster).map((s, i) => ({
    ...s,
    name: `${s.name} max`,
    dashed: true,
    color: i,
  }));
  const charts = [
    lineChart(
      'loss',
      'iteration',
      intervalSeries(runs, (r) => r.loss),
    ),
    lineChart(
      'head accuracy',
      'iteration',
      intervalSeries(runs, (r) => r.headAccuracy),
    ),
    lineChart(
      'label change ratio',
      'iteration',
      intervalSeries(runs, (r) => r.changeRatio),
    ),
    lineChart(
      'small clusters',
      'iteration',
      intervalSeries(runs, (r) => r.smallClusters),
    ),
    lineChart('min / max cluster size (log)', 'iteration', [...min, ...max], { logY: true }),
    lineChart(
      'learning rate',
      'iteration',
      intervalSeries(runs, (r) => r.lr),
    ),
    lineChart(
      'images / s',
      'iteration',
      intervalSeries(runs, (r) => r.imagesPerSecond),
    ),
  ];
  return `<h2>Training curves</h2><div class="charts">${charts.join('')}</div>`;
}

function epochSection(runs: readonly RunReport[]): string {
  const withInit = (run: RunReport, s: Series): Series =>
    run.log.init?.nmi !== undefined ? { ...s, points: [[0, run.log.init.nmi], ...s.points] } : s;
  const nmiSeries = epochSeries(runs, (r) => r.nmi).map((s, i) => withInit(runs[i], s));
  const hasLabels = nmiSeries.some((s) => s.points.some(([, y]) => Number.isFinite(y)));
  const churn = epochSeries(runs, (r) => r.labelChurnNmi).map((s, i) => ({
    ...s,
    name: `${runs[i].name} (${runs[i].mode === 'odc' ? 'ODC' : 'DeepCluster'})`,
  }));
  const charts = [
    lineChart('label stability: NMI of consecutive epochs\u2019 labels', 'epoch', churn),
    ...(hasLabels
      ? [lineChart('NMI of the labels against the true classes', 'epoch (0 = initial clustering)', nmiSeries)]
      : []),
    lineChart(
      'loss per epoch',
      'epoch',
      epochSeries(runs, (r) => r.loss),
    ),
  ];
  return (
    `<h2>Per epoch</h2><div class="charts">${charts.join('')}</div>` +
    '<p class="note">Label stability: 1 means the pseudo-labels did not change between two epochs. ODC updates its labels a little every step; ' +
    'DeepCluster re-clusters from scratch every epoch (the ODC paper\u2019s claim: ODC\u2019s labels are more stable).</p>'
  );
}

/** The cluster-size histogram at the initial clustering and now ('' when the run logged neither). */
function sizesSection(run: RunReport): string {
  const initial = run.log.init?.sizes ?? null;
  const final = run.sizes;
  if (!initial && !final) return '';
  const bins = sizeBins(Math.max(0, ...(initial ?? []), ...(final ?? [])));
  const series = [
    ...(initial ? [{ name: 'initial clustering', values: histogram(initial, bins) }] : []),
    ...(final ? [{ name: 'now', values: histogram(final, bins) }] : []),
  ];
  return barChart(
    'clusters per size (log scale)',
    'images in the cluster',
    bins.map((b) => b.label),
    series,
  );
}

function gallerySection(run: RunReport): string {
  if (run.galleries.length === 0) return '';
  const body = run.galleries
    .map((g) => {
      const classes =
        g.majority !== undefined && g.majority >= 0
          ? `, class ${g.majority} (purity ${(100 * (g.purity ?? 0)).toFixed(0)}%)`
          : '';
      const images = g.images
        .map(
          (im) =>
            `<img src="${im.src}" alt="${escapeXml(im.id)}" title="${escapeXml(im.id)} (similarity ${im.similarity.toFixed(3)})">`,
        )
        .join('');
      return `<div class="gallery" data-cluster="${g.cluster}" data-size="${g.size}"><h3>cluster ${g.cluster}: ${g.size} images${classes}</h3>${images}</div>`;
    })
    .join('');
  return `<h2>Clusters</h2><p class="note">The largest, the smallest and a sample of the other clusters, largest first; in each, the images nearest its centroid.</p><div class="galleries">${body}</div>`;
}

/** Cells beyond which the heat map is left out (K 1000 x 1000 classes would be a million rectangles). */
export const MAX_HEAT_CELLS = 40_000;

function heatSection(run: RunReport): string {
  if (!run.heat) return '';
  const { matrix, numClasses, order } = run.heat;
  if (run.k * numClasses > MAX_HEAT_CELLS) {
    return `<div><p class="note">${run.k} clusters x ${numClasses} classes is too large a heat map for this page (over ${MAX_HEAT_CELLS} cells): odc clusters writes each image's cluster.</p></div>`;
  }
  const names = Array.from({ length: numClasses }, (_, i) => String(i));
  return `<div><p class="note">Clusters (rows, by majority class) against classes (columns);<br>darker = a larger share of the cluster.</p>${heatMap(matrix, run.k, numClasses, order, names)}</div>`;
}

function evalSection(run: RunReport): string {
  if (!run.eval) return '';
  const rows = run.eval.rows;
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r.values)))];
  const cell = (v: unknown): string =>
    typeof v === 'number'
      ? Number.isInteger(v)
        ? String(v)
        : v.toFixed(4)
      : v === null || v === undefined
        ? '-'
        : escapeXml(String(v));
  const table =
    `<table class="eval"><tr><th>model</th>${columns.map((c) => `<th>${escapeXml(c)}</th>`).join('')}</tr>` +
    rows
      .map(
        (r) => `<tr><td>${escapeXml(r.name)}</td>${columns.map((c) => `<td>${cell(r.values[c])}</td>`).join('')}</tr>`,
      )
      .join('') +
    '</table>';
  return `<h2>Evaluation</h2>${table}${run.eval.test ? `<p class="note">test split: ${escapeXml(run.eval.test)}</p>` : ''}<!--\n${formatEvalTable(rows).replace(/--/g, '- -')}\n-->`;
}

/** The whole report of `run`, with the curves of `compared` runs overlaid. */
export function renderReport(run: RunReport, compared: readonly RunReport[] = [], generated = new Date()): string {
  const runs = [run, ...compared];
  const progress =
    run.log.epochs.length < run.epochsPlanned
      ? ` (in progress: ${run.log.epochs.length} of ${run.epochsPlanned} epochs)`
      : '';
  const comparing = compared.length
    ? `<p class="sub">compared with: ${compared.map((c) => `${escapeXml(c.name)} (${escapeXml(c.summary)})`).join('; ')}</p>`
    : '';
  return (
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
    `<title>odc report: ${escapeXml(run.name)}</title><style>${CSS}</style></head><body>` +
    `<h1>odc report: ${escapeXml(run.name)}${progress}</h1><p class="sub">${escapeXml(run.summary)}; written ${generated.toISOString()}</p>${comparing}` +
    curvesSection(runs) +
    epochSection(runs) +
    `<h2>Cluster sizes${run.heat ? ' and classes' : ''}</h2><div class="charts">${sizesSection(run)}${heatSection(run)}</div>` +
    gallerySection(run) +
    evalSection(run) +
    '</body></html>\n'
  );
}

/** Writes `html` to `path` atomically: a reader sees the old file or the new one, never a part. */
export function writeReportFile(path: string, html: string): void {
  const partial = `${path}.partial`;
  writeFileSync(partial, html);
  renameSync(partial, path);
}
