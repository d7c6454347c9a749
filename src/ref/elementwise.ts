/** CPU float64 reference for the elementwise family (src/ops/elementwise.ts). */
import { refMap, refZip, type RefArray } from './array.ts';

export const refRelu = (x: RefArray): RefArray => refMap(x, (v) => Math.max(v, 0));
export const refReluBackward = (g: RefArray, x: RefArray): RefArray => refZip(g, x, (gv, xv) => (xv > 0 ? gv : 0));
export const refAxpby = (alpha: number, a: RefArray, beta: number, b: RefArray): RefArray =>
  refZip(a, b, (x, y) => alpha * x + beta * y);
export const refMul = (a: RefArray, b: RefArray): RefArray => refZip(a, b, (x, y) => x * y);
