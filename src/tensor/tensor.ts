/**
 * Tensor: a shape, a dtype and a GPU buffer (refcounted storage, so views share it), plus the autograd
 * fields. Lifetime is explicit: `dispose()`, or create inside `tidy()` (src/tensor/scope.ts).
 */
import { gpu } from '../gpu/device.ts';
import { trackTensor } from './scope.ts';

/**
 * f16 tensors are the activations and operand copies of `--precision f16` (made on the GPU; read back as raw
 * bits).
 */
export type DType = 'f32' | 'i32' | 'u32' | 'f16';
/** The dtypes an activation may have: f32, or f16 between ops under `--precision f16`. */
export type FloatDType = 'f32' | 'f16';
export type TypedArrayFor<D extends DType> = D extends 'f32'
  ? Float32Array
  : D extends 'i32'
    ? Int32Array
    : D extends 'f16'
      ? Uint16Array
      : Uint32Array;

/** Bytes per element of a dtype. */
export function dtypeBytes(dtype: DType): number {
  return dtype === 'f16' ? 2 : 4;
}
export type Shape = readonly number[];

/**
 * The record of the op that produced a tensor (attached by autograd.ts's `record`). It lives here, beside
 * the field that holds it, so that tensor.ts imports nothing from autograd.ts.
 */
export interface GradNode {
  op: string;
  inputs: readonly Tensor[];
  /**
   * Gradients for each input (null where not needed). Must return new tensors or views, never gradOutput itself.
   * `pending[k]`, where given, is the gradient input k has collected so far, in storage of its own: the closure
   * may add its gradient into it in place and return pending[k] itself (a GEMM's epilogue, C := A·B + C), which
   * saves the separate sum. pending is only valid during the call.
   */
  backward(
    gradOutput: Tensor<'f32'>,
    pending?: ReadonlyArray<Tensor<'f32'> | null>,
  ): ReadonlyArray<Tensor<'f32'> | null>;
}

class Storage {
  refs = 1;
  constructor(readonly buffer: GPUBuffer) {}
}

let nextId = 1;

export function sizeOf(shape: Shape): number {
  let size = 1;
  for (let i = 0; i < shape.length; i++) size *= shape[i];
  return size;
}

/** Throws a clear error unless every dimension is a non-negative integer. */
export function checkShape(shape: Shape, what = 'shape'): void {
  if (!Array.isArray(shape)) throw new TypeError(`${what} must be an array of dimensions, got ${String(shape)}`);
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new RangeError(
        `${what} [${shape.join(', ')}] has an invalid dimension ${String(d)}: dimensions must be non-negative integers`,
      );
    }
  }
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export class Tensor<D extends DType = DType> {
  readonly id = nextId++;
  readonly size: number;
  requiresGrad = false;
  /** Accumulated gradient of a leaf after backward(); owned by the leaf (not by any scope). */
  grad: Tensor<'f32'> | null = null;
  /** The op that produced this tensor, while a backward pass may still need it. */
  node: GradNode | null = null;
  private storage: Storage | null;

  private constructor(
    readonly shape: Shape,
    readonly dtype: D,
    storage: Storage,
  ) {
    this.size = sizeOf(shape);
    this.storage = storage;
    trackTensor(this);
  }

  /** An uninitialised tensor (kernels write every element before anyone reads it). */
  static empty<D extends DType = 'f32'>(shape: Shape, dtype: D = 'f32' as D): Tensor<D> {
    checkShape(shape);
    const bytes = sizeOf(shape) * dtypeBytes(dtype);
    const g = gpu();
    // the message is built only when the check fails (this runs for every tensor an op makes)
    if (bytes > g.maxBindingBytes) g.checkBindingSize(bytes, `A tensor of shape ${fmtShape(shape)}`);
    return new Tensor(shape.slice(), dtype, new Storage(g.pool.acquire(bytes)));
  }

  /** A tensor holding `data` (row-major); length must match the shape. */
  static from<D extends DType = 'f32'>(data: ArrayLike<number>, shape: Shape, dtype: D = 'f32' as D): Tensor<D> {
    checkShape(shape);
    if (data.length !== sizeOf(shape)) {
      throw new RangeError(
        `Tensor.from: ${data.length} values do not fill shape ${fmtShape(shape)} (${sizeOf(shape)} elements)`,
      );
    }
    if (dtype === 'f16')
      throw new TypeError('Tensor.from: f16 tensors are made on the GPU from f32 ones (toWorkingPrecision)');
    const t = Tensor.empty(shape, dtype);
    const Ctor = dtype === 'f32' ? Float32Array : dtype === 'i32' ? Int32Array : Uint32Array;
    const host = data instanceof Ctor ? data : Ctor.from(data);
    if (host.length > 0) gpu().write(t.buffer, host);
    return t;
  }

  get isDisposed(): boolean {
    return this.storage === null;
  }

  get buffer(): GPUBuffer {
    if (!this.storage) throw new Error(`Tensor #${this.id} ${fmtShape(this.shape)} was used after dispose()`);
    return this.storage.buffer;
  }

  /** True while another tensor object views the same storage (in-place writes would show through). */
  get isShared(): boolean {
    return (this.storage?.refs ?? 0) > 1;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** A new tensor object over the same storage with another shape of the same size (no copy). */
  view(shape: Shape = this.shape): Tensor<D> {
    checkShape(shape);
    if (sizeOf(shape) !== this.size)
      throw new RangeError(`cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}: sizes differ`);
    const storage = this.storage;
    if (!storage) throw new Error(`Tensor #${this.id} was used after dispose()`);
    storage.refs++;
    return new Tensor(shape.slice(), this.dtype, storage);
  }

  /** Releases this tensor's hold on its storage (idempotent). Does not touch `grad`. */
  dispose(): void {
    const storage = this.storage;
    if (!storage) return;
    this.storage = null;
    this.node = null;
    if (--storage.refs === 0) gpu().pool.release(storage.buffer);
  }

  /** Copies the values to the host (waits for the GPU). */
  async data(): Promise<TypedArrayFor<D>> {
    const bytes = await gpu().read(this.buffer, Math.ceil((this.size * dtypeBytes(this.dtype)) / 4) * 4);
    const out =
      this.dtype === 'f32'
        ? new Float32Array(bytes)
        : this.dtype === 'i32'
          ? new Int32Array(bytes)
          : this.dtype === 'f16'
            ? new Uint16Array(bytes, 0, this.size)
            : new Uint32Array(bytes);
    return out as TypedArrayFor<D>;
  }

  toString(): string {
    return `Tensor#${this.id}(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', grad' : ''})`;
  }
}

/** Throws unless `t` has dtype `dtype`. */
/** Throws unless t holds f32 or f16 values (an activation); `what` names the caller in the error. */
export function expectFloat(t: Tensor, what: string): asserts t is Tensor<FloatDType> {
  if (t.dtype !== 'f32' && t.dtype !== 'f16')
    throw new TypeError(`${what}: expected an f32 or f16 tensor, got ${t.dtype} ${fmtShape(t.shape)}`);
}

export function expectDType(t: Tensor, dtype: DType, what: string): void {
  if (t.dtype !== dtype)
    throw new TypeError(`${what}: expected a ${dtype} tensor, got ${t.dtype} ${fmtShape(t.shape)}`);
}

/** Throws unless `t` has exactly `shape` (-1 matches any size). */
export function expectShape(t: Tensor, shape: Shape, what: string): void {
  const ok = t.shape.length === shape.length && shape.every((d, i) => d === -1 || d === t.shape[i]);
  if (!ok)
    throw new RangeError(
      `${what}: expected shape ${fmtShape(shape.map((d) => (d === -1 ? Number.NaN : d))).replace(
        /NaN/g,
        '*',
      )}, got ${fmtShape(t.shape)}`,
    );
}
