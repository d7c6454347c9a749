/**
 * Reductions: sum, mean (to shape [1]) and sumAxis0 ([R, C] -> [C]). Deterministic two-pass kernels
 * (shaders/reduce.wgsl): the split into partial sums depends only on the shape and every partial is
 * added in a fixed order, so the same input always gives bit-identical results. All differentiable.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { reduce } from '../kernels/reduce.ts';
import { Tensor, expectDType, fmtShape, type Shape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

/** Elements a first-pass workgroup sums at least (before the number of partials is capped). */
const SUM_PER_GROUP = 1024;
const MAX_PARTIALS = 256;
/** Rows a sumAxis0 partial sums at least; at most MAX_AXIS0_PARTIALS partials. */
const AXIS0_ROWS_PER_GROUP = 32;
const MAX_AXIS0_PARTIALS = 64;

/** alpha * sum of all elements, shape [1]. */
function sumScaled(x: Tensor<'f32'>, alpha: number): Tensor<'f32'> {
  const n = x.size;
  const groups = Math.max(1, Math.min(MAX_PARTIALS, Math.ceil(n / SUM_PER_GROUP)));
  const per = Math.ceil(n / groups);
  const partial = Tensor.empty([groups], 'f32');
  const out = Tensor.empty([1], 'f32');
  dispatchKernel(reduce.sum_partial, {
    params: { n, per },
    bindings: { src: x.buffer, dst: partial.buffer },
    workgroups: [groups],
  });
  dispatchKernel(reduce.sum_final, {
    params: { groups, alpha },
    bindings: { src: partial.buffer, dst: out.buffer },
    workgroups: [1],
  });
  partial.dispose();
  return out;
}

/** A tensor of `shape` with every element alpha * g[0] (g has one element). */
function broadcastScalar(g: Tensor<'f32'>, shape: Shape, alpha: number): Tensor<'f32'> {
  const out = Tensor.empty(shape, 'f32');
  dispatchKernel(reduce.broadcast_scalar, {
    params: { n: out.size, alpha },
    bindings: { src: g.buffer, dst: out.buffer },
    workgroups: grid(Math.ceil(out.size / 256)),
  });
  return out;
}

/** Sum of all elements, shape [1] (0 for an empty tensor). */
export function sum(x: Tensor<'f32'>): Tensor<'f32'> {
  expectDType(x, 'f32', 'sum');
  const out = sumScaled(x, 1);
  return record(out, 'sum', [x], (g) => [broadcastScalar(g, x.shape, 1)]);
}

/** Mean of all elements, shape [1]. Throws for an empty tensor (the mean is undefined). */
export function mean(x: Tensor<'f32'>): Tensor<'f32'> {
  expectDType(x, 'f32', 'mean');
  if (x.size === 0) throw new RangeError(`mean: the input ${fmtShape(x.shape)} is empty`);
  const inv = 1 / x.size;
  const out = sumScaled(x, inv);
  return record(out, 'mean', [x], (g) => [broadcastScalar(g, x.shape, inv)]);
}

/** Column sums of a [R, C] matrix, shape [C] (rows added in order within fixed blocks, then blocks in order). */
export function sumAxis0(x: Tensor<'f32'>): Tensor<'f32'> {
  expectDType(x, 'f32', 'sumAxis0');
  if (x.rank !== 2) throw new RangeError(`sumAxis0: expected a rank-2 [R, C] tensor, got ${fmtShape(x.shape)}`);
  const [rows, cols] = x.shape;
  const groups = Math.max(1, Math.min(MAX_AXIS0_PARTIALS, Math.ceil(rows / AXIS0_ROWS_PER_GROUP)));
  const per = Math.ceil(rows / groups);
  const partial = Tensor.empty([groups, cols], 'f32');
  const out = Tensor.empty([cols], 'f32');
  dispatchKernel(reduce.sum_axis0_partial, {
    params: { n: rows, cols, groups, per },
    bindings: { src: x.buffer, dst: partial.buffer },
    workgroups: grid(Math.ceil((groups * cols) / 256)),
  });
  dispatchKernel(reduce.sum_axis0_final, {
    params: { cols, groups, alpha: 1 },
    bindings: { src: partial.buffer, dst: out.buffer },
    workgroups: grid(Math.ceil(cols / 256)),
  });
  partial.dispose();
  return record(out, 'sumAxis0', [x], (g) => {
    const gx = Tensor.empty(x.shape, 'f32');
    dispatchKernel(reduce.broadcast_rows, {
      params: { n: gx.size, cols, alpha: 1 },
      bindings: { src: g.buffer, dst: gx.buffer },
      workgroups: grid(Math.ceil(gx.size / 256)),
    });
    return [gx];
  });
}
