/**
 * The report's charts as inline SVG strings: line charts (curves, with a log scale option), grouped bar
 * charts (the cluster-size histograms) and the cluster-vs-class heat map. Static markup: the report needs
 * no script to draw, prints as it shows, and each chart states its data-point count (data-points) so a test
 * can check every point was drawn.
 */

export const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
  /** Drawn dashed (a second measure of the same run, e.g. the largest cluster beside the smallest). */
  dashed?: boolean;
  /** Index into PALETTE (default: the series' position), so two measures of one run share its colour. */
  color?: number;
}

const W = 400;
const H = 240;
const PAD = { left: 52, right: 12, top: 26, bottom: 34 };

/** A short tick label: 3 significant digits, k/M suffixes for large values. */
export function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  if (a === 0) return '0';
  return `${+v.toPrecision(3)}`;
}

function niceTicks(lo: number, hi: number, count: number): number[] {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function frame(title: string, xLabel: string, body: string, points: number, kind: string): string {
  return (
    `<svg class="chart ${kind}" data-points="${points}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeXml(title)}">` +
    `<text x="${W / 2}" y="16" text-anchor="middle" class="title">${escapeXml(title)}</text>` +
    `<text x="${PAD.left + (W - PAD.left - PAD.right) / 2}" y="${H - 4}" text-anchor="middle" class="axis">${escapeXml(xLabel)}</text>` +
    body +
    '</svg>'
  );
}

function legend(
  entries: ReadonlyArray<{ name: string; color: string; dashed?: boolean }>,
  side: 'left' | 'right' = 'right',
): string {
  if (entries.length < 2) return '';
  // about 5.6 px per character of the 10 px legend font, plus the line sample
  const width = Math.min(
    W - PAD.left - PAD.right,
    28 + Math.ceil(5.6 * Math.max(...entries.map((e) => e.name.length))),
  );
  const x = side === 'right' ? W - PAD.right - width : PAD.left + 8;
  const box = `<rect x="${x - 4}" y="${PAD.top + 2}" width="${width}" height="${entries.length * 13 + 4}" class="legend-box"/>`;
  return (
    box +
    entries
      .map((e, i) => {
        const y = PAD.top + 9 + i * 13;
        const dash = e.dashed ? ' stroke-dasharray="4 3"' : '';
        return `<line x1="${x}" y1="${y}" x2="${x + 16}" y2="${y}" stroke="${e.color}" stroke-width="2"${dash}/><text x="${x + 20}" y="${y + 4}" class="legend">${escapeXml(e.name)}</text>`;
      })
      .join('')
  );
}

const colorOf = (s: { color?: number }, i: number): string => PALETTE[(s.color ?? i) % PALETTE.length];

/** At most this many points per series are drawn: a long run's curves are thinned evenly (the last point kept), so the report stays small. */
export const MAX_SERIES_POINTS = 1500;

/** Every ceil(n / max)-th point, and the last one. */
export function thinPoints<T>(points: readonly T[], max = MAX_SERIES_POINTS): T[] {
  if (points.length <= max) return [...points];
  const stride = Math.ceil(points.length / max);
  const kept = points.filter((_, i) => i % stride === 0);
  if ((points.length - 1) % stride !== 0) kept.push(points[points.length - 1]);
  return kept;
}

/**
 * A line chart of the series (points with a non-finite value, or a non-positive one on a log scale, are
 * left out); "no data" when none has a point.
 */
export function lineChart(
  title: string,
  xLabel: string,
  series: readonly Series[],
  opts: { logY?: boolean } = {},
): string {
  const logY = opts.logY === true;
  const kept = series.map((s) =>
    thinPoints(s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0))),
  );
  const all = kept.flat();
  if (all.length === 0)
    return frame(
      title,
      xLabel,
      `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="axis">no data</text>`,
      0,
      'line',
    );
  const fy = logY ? Math.log10 : (v: number) => v;
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => fy(p[1]))), Math.max(...all.map((p) => fy(p[1])))];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.1, y1 + (Math.abs(y1) || 1) * 0.1];
  const sx = (x: number) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y: number) => H - PAD.bottom - ((fy(y) - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const yTicks = logY
    ? niceTicks(Math.floor(y0), Math.ceil(y1), 4)
        .filter((t) => Number.isInteger(t))
        .map((t) => 10 ** t)
    : niceTicks(y0, y1, 4);
  let body = `<rect x="${PAD.left}" y="${PAD.top}" width="${W - PAD.left - PAD.right}" height="${H - PAD.top - PAD.bottom}" class="plot"/>`;
  for (const t of yTicks) {
    const y = sy(t);
    if (y < PAD.top - 0.5 || y > H - PAD.bottom + 0.5) continue;
    body += `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${PAD.left - 4}" y="${(y + 3).toFixed(1)}" text-anchor="end" class="tick">${tickLabel(t)}</text>`;
  }
  const integerX = all.every(([x]) => Number.isInteger(x));
  for (const t of niceTicks(x0, x1, 5).filter((t) => !integerX || Number.isInteger(t)))
    body += `<text x="${sx(t).toFixed(1)}" y="${H - PAD.bottom + 12}" text-anchor="middle" class="tick">${tickLabel(t)}</text>`;
  kept.forEach((pts, i) => {
    if (pts.length === 0) return;
    const color = colorOf(series[i], i);
    const d = pts.map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${sx(x).toFixed(1)} ${sy(y).toFixed(1)}`).join('');
    const dash = series[i].dashed ? ' stroke-dasharray="4 3"' : '';
    body += `<path class="series" data-series="${escapeXml(series[i].name)}" data-n="${pts.length}" d="${d}" stroke="${color}"${dash}/>`;
    if (pts.length <= 40)
      body += pts
        .map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.2" fill="${color}"/>`)
        .join('');
  });
  body += legend(series.map((s, i) => ({ name: s.name, color: colorOf(s, i), dashed: s.dashed })));
  return frame(title, xLabel, body, all.length, 'line');
}

/** Grouped bars: one group per bin label, one bar per series; the y axis on a log scale (log1p of counts). */
export function barChart(
  title: string,
  xLabel: string,
  bins: readonly string[],
  series: ReadonlyArray<{ name: string; values: readonly number[] }>,
): string {
  const points = bins.length * series.length;
  if (points === 0)
    return frame(
      title,
      xLabel,
      `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" class="axis">no data</text>`,
      0,
      'bars',
    );
  const top = Math.log10(1 + Math.max(1, ...series.flatMap((s) => s.values)));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const groupW = plotW / bins.length;
  const barW = (groupW * 0.8) / series.length;
  const sy = (v: number) => H - PAD.bottom - (Math.log10(1 + v) / top) * plotH;
  let body = `<rect x="${PAD.left}" y="${PAD.top}" width="${plotW}" height="${plotH}" class="plot"/>`;
  for (let e = 0; 10 ** e - 1 <= 10 ** top; e++) {
    const y = sy(10 ** e - (e === 0 ? 1 : 0));
    body += `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="grid"/><text x="${PAD.left - 4}" y="${(y + 3).toFixed(1)}" text-anchor="end" class="tick">${e === 0 ? 0 : tickLabel(10 ** e)}</text>`;
  }
  bins.forEach((label, b) => {
    const gx = PAD.left + b * groupW + groupW * 0.1;
    series.forEach((s, i) => {
      const v = s.values[b] ?? 0;
      const y = sy(v);
      body += `<rect class="bar" data-value="${v}" x="${(gx + i * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, barW - 1).toFixed(1)}" height="${(H - PAD.bottom - y).toFixed(1)}" fill="${PALETTE[i % PALETTE.length]}"><title>${escapeXml(s.name)}: ${v} clusters of size ${escapeXml(label)}</title></rect>`;
    });
    if (bins.length <= 16 || b % Math.ceil(bins.length / 12) === 0) {
      body += `<text x="${(gx + groupW * 0.4).toFixed(1)}" y="${H - PAD.bottom + 12}" text-anchor="middle" class="tick">${escapeXml(label)}</text>`;
    }
  });
  body += legend(
    series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length] })),
    'left',
  );
  return frame(title, xLabel, body, points, 'bars');
}

/**
 * The cluster-vs-class heat map: one row (g.heat-row) per cluster in `order`, one cell per class, shaded by
 * the share of the cluster's images in that class.
 */
export function heatMap(
  matrix: Uint32Array,
  k: number,
  numClasses: number,
  order: readonly number[],
  classNames: readonly string[],
): string {
  const cell = Math.max(6, Math.min(24, Math.floor(480 / numClasses)));
  const rowH = Math.max(2, Math.min(14, Math.floor(600 / k)));
  const left = 48;
  const topPad = 18;
  const w = left + cell * numClasses + 8;
  const h = topPad + rowH * k + 4;
  let body = '';
  for (let y = 0; y < numClasses; y++) {
    body += `<text x="${left + y * cell + cell / 2}" y="12" text-anchor="middle" class="tick">${escapeXml(classNames[y] ?? String(y))}</text>`;
  }
  order.forEach((c, r) => {
    let total = 0;
    for (let y = 0; y < numClasses; y++) total += matrix[c * numClasses + y];
    const ry = topPad + r * rowH;
    let cells = '';
    for (let y = 0; y < numClasses; y++) {
      const v = matrix[c * numClasses + y];
      const share = total > 0 ? v / total : 0;
      const shade = Math.round(255 * (1 - share));
      cells += `<rect x="${left + y * cell}" y="${ry}" width="${cell}" height="${rowH}" fill="rgb(${shade},${shade},255)"><title>cluster ${c}, class ${escapeXml(classNames[y] ?? String(y))}: ${v} of ${total}</title></rect>`;
    }
    const label =
      rowH >= 9 ? `<text x="${left - 4}" y="${ry + rowH - 2}" text-anchor="end" class="tick">${c}</text>` : '';
    body += `<g class="heat-row" data-cluster="${c}">${label}${cells}</g>`;
  });
  return `<svg class="heatmap" data-rows="${k}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="clusters (rows) against classes (columns)">${body}</svg>`;
}
