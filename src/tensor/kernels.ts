/**
 * The kernel layer under both src/ops and autograd: the raw elementwise dispatches (one WGSL family,
 * shaders/elementwise.wgsl, one thread per element) and the unrecorded tensor primitives that gradient
 * accumulation needs (fill, copy, a·x + b·y, accumulate in place). Nothing here records for autograd, so
 * autograd.ts accumulates gradients through this file without importing an op family, and
 * src/ops/elementwise.ts builds its differentiable ops on the same launches.
 */
import { gpu, grid } from '../gpu/device.ts';
import { params } from '../gpu/params.ts';
import { Tensor, expectDType, fmtShape, shapesEqual, type Shape } from './tensor.ts';

/** The entry points of shaders/elementwise.wgsl. */
export type ElementwiseEntry = 'fill' | 'affine' | 'axpby' | 'accumulate' | 'mul' | 'relu' | 'relu_backward';

/** One elementwise dispatch over n elements; alpha and beta mean what the entry says (fill value, scale, shift). */
export function launchElementwise(entry: ElementwiseEntry, n: number, alpha: number, beta: number, buffers: Array<[GPUBuffer, 'read' | 'rw']>): void {
  gpu().dispatch({
    kernel: { family: 'elementwise', entry },
    params: params().u32(n).f32(alpha, beta).u32(0),
    bindings: buffers.map(([buffer, access]) => ({ buffer, access })),
    workgroups: grid(Math.ceil(n / 256)),
  });
}

/** Throws unless a and b are f32 tensors of one shape; `op` names the caller in the error. */
export function checkSameShape(a: Tensor, b: Tensor, op: string): void {
  expectDType(a, 'f32', op);
  expectDType(b, 'f32', op);
  if (!shapesEqual(a.shape, b.shape)) throw new RangeError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
}

/** A new f32 tensor with every element `value`. */
export function fill(shape: Shape, value: number): Tensor<'f32'> {
  const out = Tensor.empty(shape, 'f32');
  launchElementwise('fill', out.size, value, 0, [[out.buffer, 'rw']]);
  return out;
}

/** Writes `value` into every element of an existing tensor. */
export function fillInPlace(t: Tensor<'f32'>, value: number): void {
  launchElementwise('fill', t.size, value, 0, [[t.buffer, 'rw']]);
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
  launchElementwise('axpby', a.size, alpha, beta, [[a.buffer, 'read'], [b.buffer, 'read'], [out.buffer, 'rw']]);
  return out;
}

/** a += alpha * b, in place, not recorded (gradient accumulation, optimiser updates). */
export function addInPlace(a: Tensor<'f32'>, b: Tensor<'f32'>, alpha = 1): void {
  checkSameShape(a, b, 'addInPlace');
  launchElementwise('accumulate', a.size, alpha, 0, [[a.buffer, 'rw'], [b.buffer, 'read']]);
}
