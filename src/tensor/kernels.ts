/**
 * The kernel layer under both src/ops and autograd: the raw elementwise dispatches (one WGSL family,
 * shaders/elementwise.wgsl, one thread per element) and the unrecorded tensor primitives that gradient
 * accumulation needs (fill, copy, a·x + b·y, accumulate in place). Nothing here records for autograd, so
 * autograd.ts accumulates gradients through this file without importing an op family, and
 * src/ops/elementwise.ts builds its differentiable ops on the same launches.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { elementwise } from '../kernels/elementwise.ts';
import { Tensor, expectDType, fmtShape, shapesEqual, type Shape } from './tensor.ts';

/** Workgroups of a one-thread-per-element launch over n elements (256-wide workgroups on grid()). */
export function perElement(n: number): [number, number] {
  return grid(Math.ceil(n / 256));
}

/** Throws unless a and b are f32 tensors of one shape; `op` names the caller in the error. */
export function checkSameShape(a: Tensor, b: Tensor, op: string): void {
  expectDType(a, 'f32', op);
  expectDType(b, 'f32', op);
  if (!shapesEqual(a.shape, b.shape))
    throw new RangeError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
}

/** A new f32 tensor with every element `value`. */
export function fill(shape: Shape, value: number): Tensor<'f32'> {
  const out = Tensor.empty(shape, 'f32');
  fillInPlace(out, value);
  return out;
}

/** Writes `value` into every element of an existing tensor. */
export function fillInPlace(t: Tensor<'f32'>, value: number): void {
  dispatchKernel(elementwise.fill, {
    params: { n: t.size, value },
    bindings: { out: t.buffer },
    workgroups: perElement(t.size),
  });
}

/** A copy with its own storage (not recorded for autograd). */
export function clone(x: Tensor<'f32'>): Tensor<'f32'> {
  const out = Tensor.empty(x.shape, 'f32');
  gpu().copy(x.buffer, 0, out.buffer, 0, x.size * 4);
  return out;
}

/** alpha * a + beta * b into a new tensor, not recorded (ops/elementwise.ts's axpby records it). */
export function axpbyNoGrad(alpha: number, a: Tensor<'f32'>, beta: number, b: Tensor<'f32'>): Tensor<'f32'> {
  checkSameShape(a, b, 'axpby');
  const out = Tensor.empty(a.shape, 'f32');
  dispatchKernel(elementwise.axpby, {
    params: { n: a.size, alpha, beta },
    bindings: { a: a.buffer, b: b.buffer, out: out.buffer },
    precision: 'f32',
    workgroups: perElement(a.size),
  });
  return out;
}

/** a += alpha * b, in place, not recorded (gradient accumulation, optimiser updates). */
export function addInPlace(a: Tensor<'f32'>, b: Tensor<'f32'>, alpha = 1): void {
  checkSameShape(a, b, 'addInPlace');
  dispatchKernel(elementwise.accumulate, {
    params: { n: a.size, alpha },
    bindings: { acc: a.buffer, b: b.buffer },
    workgroups: perElement(a.size),
  });
}
