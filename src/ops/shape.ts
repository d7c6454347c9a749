/**
 * Shape ops: views over the same storage (no copy, no kernel). Differentiable: the gradient of a
 * reshape is the incoming gradient viewed back in the input's shape.
 */
import type { Tensor } from '../tensor/tensor.ts';
import { checkShape, fmtShape, sizeOf, type DType, type Shape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

/**
 * A view of x with another shape of the same size. One dimension may be -1: it is inferred from the
 * others (as in PyTorch). The result shares x's storage, so in-place writes to either show in both.
 */
export function reshape<D extends DType>(x: Tensor<D>, shape: Shape): Tensor<D> {
  const inferred = shape.filter((d) => d === -1).length;
  if (inferred > 1) throw new RangeError(`reshape: at most one dimension may be -1, got ${fmtShape(shape)}`);
  let target: number[] = shape.slice();
  if (inferred === 1) {
    const known = shape.filter((d) => d !== -1);
    checkShape(known, 'reshape: shape');
    const rest = sizeOf(known);
    if (rest === 0 || x.size % rest !== 0) {
      throw new RangeError(`reshape: cannot view ${fmtShape(x.shape)} (${x.size} elements) as ${fmtShape(shape)}`);
    }
    target = shape.map((d) => (d === -1 ? x.size / rest : d));
  }
  checkShape(target, 'reshape: shape');
  if (sizeOf(target) !== x.size) {
    throw new RangeError(
      `reshape: cannot view ${fmtShape(x.shape)} (${x.size} elements) as ${fmtShape(target)} (${sizeOf(target)} elements)`,
    );
  }
  const out = x.view(target);
  const inShape = x.shape;
  return record(out, 'reshape', [x], (g) => [g.view(inShape)]);
}

/** [N, ...rest] -> [N, prod(rest)] (a rank-1 [N] becomes [N, 1]). */
export function flatten<D extends DType>(x: Tensor<D>): Tensor<D> {
  if (x.rank === 0) throw new RangeError('flatten: expected a tensor of rank >= 1, got a scalar of shape []');
  const n = x.shape[0];
  return reshape(x, [n, sizeOf(x.shape.slice(1))]);
}
