/**
 * Linear sum assignment (the Hungarian method, O(n^2 m) for n <= m) on a dense row-major cost matrix.
 *
 * Shortest-augmenting-path form with row and column potentials: rows are inserted one at a time; each
 * insertion grows a Dijkstra-like tree over columns using reduced costs c[i][j] - u[i] - v[j] >= 0,
 * shifts the potentials by the smallest slack each time a column joins, and flips the alternating path
 * once a free column is reached. Rectangular problems assign every row of the smaller side; the extra
 * rows (or columns) of the larger side stay unassigned (-1).
 */

export interface Assignment {
  /** rowToCol[i] = the column assigned to row i, or -1. */
  rowToCol: Int32Array;
  /** colToRow[j] = the row assigned to column j, or -1. */
  colToRow: Int32Array;
  /** Sum of the chosen entries of the original (not negated) matrix. */
  total: number;
}

/**
 * Solves min (or max) sum_i cost[i, rowToCol[i]] over one-to-one assignments of min(rows, cols) pairs.
 * `cost` is row-major with `rows * cols` finite entries.
 */
export function linearSumAssignment(
  cost: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: { maximize?: boolean } = {},
): Assignment {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`linearSumAssignment: invalid size ${rows} x ${cols}`);
  }
  if (cost.length !== rows * cols) {
    throw new RangeError(`linearSumAssignment: ${cost.length} entries for a ${rows} x ${cols} matrix`);
  }
  for (let i = 0; i < cost.length; i++) {
    if (!Number.isFinite(cost[i]))
      throw new RangeError(`linearSumAssignment: entry ${i} is ${cost[i]}; costs must be finite`);
  }
  const sign = opts.maximize ? -1 : 1;
  const rowToCol = new Int32Array(rows).fill(-1);
  const colToRow = new Int32Array(cols).fill(-1);
  if (rows === 0 || cols === 0) return { rowToCol, colToRow, total: 0 };

  // Work on an n x m matrix with n <= m (transpose if needed), minimising.
  const transposed = rows > cols;
  const n = transposed ? cols : rows;
  const m = transposed ? rows : cols;
  const a = new Float64Array(n * m);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = sign * cost[i * cols + j];
      if (transposed) a[j * m + i] = v;
      else a[i * m + j] = v;
    }
  }
  const matchOfCol = solveMin(a, n, m);
  for (let j = 0; j < m; j++) {
    const i = matchOfCol[j];
    if (i < 0) continue;
    const r = transposed ? j : i;
    const c = transposed ? i : j;
    rowToCol[r] = c;
    colToRow[c] = r;
  }
  let total = 0;
  for (let r = 0; r < rows; r++) if (rowToCol[r] >= 0) total += cost[r * cols + rowToCol[r]];
  return { rowToCol, colToRow, total };
}

/** Core solver for n <= m; returns, for each column, its row (or -1). */
function solveMin(a: Float64Array, n: number, m: number): Int32Array {
  // Index 0 of the column arrays is a virtual column holding the row being inserted; real columns are 1..m.
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const owner = new Int32Array(m + 1); // owner[j] = 1-based row matched to column j, 0 if free
  const prev = new Int32Array(m + 1); // previous column on the alternating path
  const slack = new Float64Array(m + 1);
  const visited = new Uint8Array(m + 1);
  for (let row = 1; row <= n; row++) {
    owner[0] = row;
    let col = 0;
    slack.fill(Number.POSITIVE_INFINITY);
    visited.fill(0);
    do {
      visited[col] = 1;
      const i = owner[col];
      let delta = Number.POSITIVE_INFINITY;
      let next = -1;
      const base = (i - 1) * m;
      for (let j = 1; j <= m; j++) {
        if (visited[j]) continue;
        const reduced = a[base + j - 1] - u[i] - v[j];
        if (reduced < slack[j]) {
          slack[j] = reduced;
          prev[j] = col;
        }
        if (slack[j] < delta) {
          delta = slack[j];
          next = j;
        }
      }
      for (let j = 0; j <= m; j++) {
        if (visited[j]) {
          u[owner[j]] += delta;
          v[j] -= delta;
        } else {
          slack[j] -= delta;
        }
      }
      col = next;
    } while (owner[col] !== 0);
    // Flip the alternating path back to the virtual column.
    while (col !== 0) {
      const p = prev[col];
      owner[col] = owner[p];
      col = p;
    }
  }
  const out = new Int32Array(m).fill(-1);
  for (let j = 1; j <= m; j++) if (owner[j] > 0) out[j - 1] = owner[j] - 1;
  return out;
}
