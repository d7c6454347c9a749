/**
 * A small evaluation table formatter: rows of named results (NMI, ARI, ACC, kNN top-1, linear-probe
 * accuracy, ...) as a Markdown table whose columns line up in a terminal too. Numbers are printed with a
 * fixed number of digits and right-aligned; missing values print as "-".
 */

export type EvalValue = number | string | null | undefined;

export interface EvalRow {
  /** Row label (model, checkpoint, epoch, ...). */
  name: string;
  values: Record<string, EvalValue>;
}

export interface EvalTableOptions {
  /** Header of the first column (default "model"). */
  nameHeader?: string;
  /** Digits after the decimal point for numbers (default 4). */
  digits?: number;
  /** Column order; default: the union of the rows' keys in first-seen order. */
  columns?: string[];
}

/** 0.57704 -> "57.70%". */
export function formatPercent(x: number, digits = 2): string {
  return `${(100 * x).toFixed(digits)}%`;
}

function cell(v: EvalValue, digits: number): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'number') return Number.isFinite(v) ? v.toFixed(digits) : String(v);
  return v.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The rows as an aligned Markdown table (header, separator with right-aligned numeric columns, rows). */
export function formatEvalTable(rows: readonly EvalRow[], opts: EvalTableOptions = {}): string {
  const digits = opts.digits ?? 4;
  const columns = opts.columns ?? [...new Set(rows.flatMap((r) => Object.keys(r.values)))];
  const numeric = columns.map(
    (c) => rows.some((r) => typeof r.values[c] === 'number') && rows.every((r) => typeof r.values[c] !== 'string'),
  );
  const header = [opts.nameHeader ?? 'model', ...columns];
  const body = rows.map((r) => [cell(r.name, digits), ...columns.map((c) => cell(r.values[c], digits))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length), 3));
  const right = [false, ...numeric];
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const sep = `|${widths.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(header), sep, ...body.map(line)].join('\n');
}
