/**
 * Elementwise ops over same-shape f32 tensors: fill, copy/scale/shift, add/sub/mul, ReLU.
 * One WGSL family (shaders/elementwise.wgsl), one thread per element.
 */
import { gpu, grid } from '../gpu/device.ts';
import { params } from '../gpu/params.ts';
import { Tensor, expectDType, fmtShape, shapesEqual, type Shape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';

const FAMILY = 'elementwise';

function launch(entry: string, n: number, alpha: number, beta: number, buffers: Array<[GPUBuffer, 'read' | 'rw']>): void {
  gpu().dispatch({
    kernel: { family: FAMILY, entry },
    params: params().u32(n).f32(alpha, beta).u32(0),
    bindings: buffers.map(([buffer, access]) => ({ buffer, access })),
    workgroups: grid(Math.ceil(n / 256)),
  });
}

function checkSameShape(a: Tensor, b: Tensor, op: string): void {
  expectDType(a, 'f32', op);
  expectDType(b, 'f32', op);
  if (!shapesEqual(a.shape, b.shape)) throw new RangeError(`${op}: shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} differ`);
}

/** A new f32 tensor with every element `value`. */
export function fill(shape: Shape, value: number): Tensor<'f32'> {
  const out = Tensor.empty(shape, 'f32');
  launch('fill', out.size, value, 0, [[out.buffer, 'rw']]);
  return out;
}

export function zeros(shape: Shape): Tensor<'f32'> {
  return fill(shape, 0);
}

/** Writes `value` into every element of an existing tensor. */
export function fillInPlace(t: Tensor<'f32'>, value: number): void {
  launch('fill', t.size, value, 0, [[t.buffer, 'rw']]);
}

/** alpha * x + beta, differentiable. */
export function affine(x: Tensor<'f32'>, alpha: number, beta = 0): Tensor<'f32'> {
  expectDType(x, 'f32', 'affine');
  const out = Tensor.empty(x.shape, 'f32');
  launch('affine', x.size, alpha, beta, [[x.buffer, 'read'], [out.buffer, 'rw']]);
  return record(out, 'affine', [x], (g) => [affine(g, alpha)]);
}

/** A copy with its own storage (not recorded for autograd). */
export function clone(x: Tensor<'f32'>): Tensor<'f32'> {
  const out = Tensor.empty(x.shape, 'f32');
  gpu().copy(x.buffer, 0, out.buffer, 0, x.size * 4);
  return out;
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

/** alpha * a + beta * b, differentiable. */
export function axpby(alpha: number, a: Tensor<'f32'>, beta: number, b: Tensor<'f32'>): Tensor<'f32'> {
  checkSameShape(a, b, 'axpby');
  const out = Tensor.empty(a.shape, 'f32');
  launch('axpby', a.size, alpha, beta, [[a.buffer, 'read'], [b.buffer, 'read'], [out.buffer, 'rw']]);
  return record(out, 'axpby', [a, b], (g) => [a.requiresGrad ? affine(g, alpha) : null, b.requiresGrad ? affine(g, beta) : null]);
}

export function add(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  return axpby(1, a, 1, b);
}

export function sub(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  return axpby(1, a, -1, b);
}

/** a += alpha * b, in place, not recorded (gradient accumulation, optimiser updates). */
export function addInPlace(a: Tensor<'f32'>, b: Tensor<'f32'>, alpha = 1): void {
  checkSameShape(a, b, 'addInPlace');
  launch('accumulate', a.size, alpha, 0, [[a.buffer, 'rw'], [b.buffer, 'read']]);
}

export function mul(a: Tensor<'f32'>, b: Tensor<'f32'>): Tensor<'f32'> {
  checkSameShape(a, b, 'mul');
  const out = Tensor.empty(a.shape, 'f32');
  launch('mul', a.size, 0, 0, [[a.buffer, 'read'], [b.buffer, 'read'], [out.buffer, 'rw']]);
  return record(out, 'mul', [a, b], (g) => [a.requiresGrad ? mul(g, b) : null, b.requiresGrad ? mul(g, a) : null]);
}

export function relu(x: Tensor<'f32'>): Tensor<'f32'> {
  expectDType(x, 'f32', 'relu');
  const out = Tensor.empty(x.shape, 'f32');
  launch('relu', x.size, 0, 0, [[x.buffer, 'read'], [out.buffer, 'rw']]);
  return record(out, 'relu', [x], (g) => [reluBackward(g, out)]);
}

/** g where the ReLU output is positive, else 0. */
export function reluBackward(g: Tensor<'f32'>, output: Tensor<'f32'>): Tensor<'f32'> {
  checkSameShape(g, output, 'reluBackward');
  const out = Tensor.empty(g.shape, 'f32');
  launch('relu_backward', g.size, 0, 0, [[g.buffer, 'read'], [output.buffer, 'read'], [out.buffer, 'rw']]);
  return out;
}
