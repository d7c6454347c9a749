/**
 * Elementwise ops over same-shape f32 tensors: fill, copy/scale/shift, add/sub/mul, ReLU; relu and add also
 * over f16 activations (`--precision f16`: f16 out, computed in f32; their gradients are f32).
 * One WGSL family (shaders/elementwise.wgsl), one thread per element, launched through the kernel layer
 * src/tensor/kernels.ts, which also holds the unrecorded primitives (fill, clone, addInPlace) re-exported here.
 */
import { gpu } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { elementwise } from '../kernels/elementwise.ts';
import {
  Tensor,
  expectDType,
  expectFloat,
  fmtShape,
  shapesEqual,
  type FloatDType,
  type Shape,
} from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { axpbyNoGrad, checkSameShape, fill, perElement } from '../tensor/kernels.ts';

export { addInPlace, clone, fill, fillInPlace } from '../tensor/kernels.ts';

export function zeros(shape: Shape): Tensor<'f32'> {
  return fill(shape, 0);
}

/** alpha * x + beta, differentiable. */
export function affine(x: Tensor<'f32'>, alpha: number, beta = 0): Tensor<'f32'> {
  expectDType(x, 'f32', 'affine');
  const out = Tensor.empty(x.shape, 'f32');
  dispatchKernel(elementwise.affine, {
    params: { n: x.size, alpha, beta },
    bindings: { a: x.buffer, out: out.buffer },
    workgroups: perElement(x.size),
  });
  return record(out, 'affine', [x], (g) => [affine(g, alpha)]);
}

/** Copies src's values into dst (same size). */
export function assign(dst: Tensor, src: Tensor): void {
  if (dst.size !== src.size || dst.dtype !== src.dtype) {
    throw new RangeError(`assign: ${src.dtype} ${fmtShape(src.shape)} into ${dst.dtype} ${fmtShape(dst.shape)}`);
  }
  gpu().copy(src.buffer, 0, dst.buffer, 0, src.size * 4);
}

export function scale(x: Tensor<'f32'>, alpha: number): Tensor<'f32'> {
  return affine(x, alpha, 0);
}

/** g scaled by alpha for a backward pass: a view of g itself when alpha is 1 (no copy dispatch; autograd allows views). */
function scaledGrad(g: Tensor<'f32'>, alpha: number): Tensor<'f32'> {
  return alpha === 1 ? g.view() : affine(g, alpha);
}

/** alpha * a + beta * b, differentiable. */
export function axpby(alpha: number, a: Tensor<'f32'>, beta: number, b: Tensor<'f32'>): Tensor<'f32'> {
  const out = axpbyNoGrad(alpha, a, beta, b);
  return record(out, 'axpby', [a, b], (g) => [
    a.requiresGrad ? scaledGrad(g, alpha) : null,
    b.requiresGrad ? scaledGrad(g, beta) : null,
  ]);
}

/** a + b, differentiable; two f16 activations (a residual connection) give an f16 sum. */
export function add<D extends FloatDType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  if (a.dtype === 'f32' && b.dtype === 'f32') return axpby(1, a as Tensor<'f32'>, 1, b as Tensor<'f32'>) as Tensor<D>;
  expectDType(a, 'f16', 'add');
  expectDType(b, 'f16', 'add');
  if (!shapesEqual(a.shape, b.shape))
    throw new RangeError(`add: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
  const out = Tensor.empty(a.shape, a.dtype);
  dispatchKernel(elementwise.axpby, {
    params: { n: a.size, alpha: 1, beta: 1 },
    bindings: { a: a.buffer, b: b.buffer, out: out.buffer },
    precision: 'f16',
    workgroups: perElement(a.size),
  });
  return record(out, 'add', [a, b], (g) => [a.requiresGrad ? g.view() : null, b.requiresGrad ? g.view() : null]);
}

export function sub(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  return axpby(1, a, -1, b);
}

export function mul(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  checkSameShape(a, b, 'mul');
  const out = Tensor.empty(a.shape, 'f32');
  dispatchKernel(elementwise.mul, {
    params: { n: a.size },
    bindings: { a: a.buffer, b: b.buffer, out: out.buffer },
    workgroups: perElement(a.size),
  });
  return record(out, 'mul', [a, b], (g) => [a.requiresGrad ? mul(g, b) : null, b.requiresGrad ? mul(g, a) : null]);
}

/** max(x, 0), differentiable; an f16 activation gives an f16 output. */
export function relu<D extends FloatDType>(x: Tensor<D>): Tensor<D> {
  expectFloat(x, 'relu');
  const out = Tensor.empty(x.shape, x.dtype);
  dispatchKernel(elementwise.relu, {
    params: { n: x.size },
    bindings: { a: x.buffer, out: out.buffer },
    precision: x.dtype,
    workgroups: perElement(x.size),
  });
  return record(out, 'relu', [x], (g) => [reluBackward(g, out)]);
}

/** g where the ReLU output (f32 or f16) is positive, else 0. */
export function reluBackward(g: Tensor<'f32'>, output: Tensor<FloatDType>): Tensor<'f32'> {
  expectDType(g, 'f32', 'reluBackward');
  expectFloat(output, 'reluBackward');
  if (!shapesEqual(g.shape, output.shape))
    throw new RangeError(`reluBackward: shapes ${fmtShape(g.shape)} and ${fmtShape(output.shape)} differ`);
  const out = Tensor.empty(g.shape, 'f32');
  dispatchKernel(elementwise.relu_backward, {
    params: { n: g.size },
    bindings: { grad: g.buffer, output: output.buffer, out: out.buffer },
    precision: output.dtype,
    workgroups: perElement(g.size),
  });
  return out;
}
