/** CPU float64 reference for matmul and linear (src/ops/matmul.ts): plain triple loops. */
import { refArray, type RefArray } from './array.ts';

/** Element (i, j) of op(X) for a 2-D X, transposed when `trans`. */
function at(x: RefArray, trans: boolean, i: number, j: number): number {
  const cols = x.shape[1];
  return trans ? x.data[j * cols + i] : x.data[i * cols + j];
}

function dims(x: RefArray, trans: boolean): [number, number] {
  return trans ? [x.shape[1], x.shape[0]] : [x.shape[0], x.shape[1]];
}

/** C = op(A)·op(B). */
export function refMatmul(a: RefArray, b: RefArray, transA = false, transB = false): RefArray {
  const [M, K] = dims(a, transA);
  const [K2, N] = dims(b, transB);
  if (K !== K2) throw new RangeError(`refMatmul: inner dimensions ${K} and ${K2} differ`);
  const c = refArray([M, N]);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += at(a, transA, i, k) * at(b, transB, k, j);
      c.data[i * N + j] = s;
    }
  }
  return c;
}

/** Gradients of sum(G ⊙ op(A)·op(B)) with respect to A and B (in A's and B's own layouts). */
export function refMatmulBackward(
  g: RefArray,
  a: RefArray,
  b: RefArray,
  transA = false,
  transB = false,
): { da: RefArray; db: RefArray } {
  const [M, K] = dims(a, transA);
  const N = dims(b, transB)[1];
  const da = refArray(a.shape);
  const db = refArray(b.shape);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      for (let j = 0; j < N; j++) {
        const gv = g.data[i * N + j];
        // d/d op(A)[i,k] = G[i,j]·op(B)[k,j]; d/d op(B)[k,j] = op(A)[i,k]·G[i,j]
        const aIdx = transA ? k * M + i : i * K + k;
        const bIdx = transB ? j * K + k : k * N + j;
        da.data[aIdx] += gv * b.data[bIdx];
        db.data[bIdx] += gv * a.data[aIdx];
      }
    }
  }
  return { da, db };
}

/** y = x·Wᵀ + b, x [B, in], W [out, in], b [out]. */
export function refLinear(x: RefArray, w: RefArray, bias: RefArray | null): RefArray {
  const y = refMatmul(x, w, false, true);
  const out = w.shape[0];
  if (bias) for (let i = 0; i < y.data.length; i++) y.data[i] += bias.data[i % out];
  return y;
}

/** Gradients of sum(G ⊙ linear(x, W, b)). */
export function refLinearBackward(g: RefArray, x: RefArray, w: RefArray): { dx: RefArray; dw: RefArray; db: RefArray } {
  const { da, db } = refMatmulBackward(g, x, w, false, true);
  const [rows, out] = g.shape;
  const dbias = refArray([out]);
  for (let r = 0; r < rows; r++) for (let o = 0; o < out; o++) dbias.data[o] += g.data[r * out + o];
  return { dx: da, dw: db, db: dbias };
}
