/**
 * The working precision (`--precision f32|f16`), and the f16 copies it needs.
 *
 * Under f16, conv2d, linear and matmul read f16 operands (activations, weights and, in the backward pass,
 * output gradients; f32 ones are copied here) and accumulate in f32. conv2d writes its output in f16
 * (rounded on store), and batch norm, ReLU, residual adds and pooling keep f16 activations f16 from there
 * (batch-norm statistics in f32), so the activations the backward pass saves are f16: half the bytes.
 * Gradients stay f32; the global average pool writes f32 features, so the neck, the head, the loss and
 * the ODC memory stay f32, as do the master weights and the SGD state. Under f32 nothing is copied and
 * every kernel computes what it did before this setting existed.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel, type Precision } from '../gpu/kernel.ts';
import { precision as precisionKernels } from '../kernels/precision.ts';
import { Tensor, expectDType, type FloatDType } from '../tensor/tensor.ts';

let working: Precision = 'f32';
let copyObserver: ((sources: ReadonlyArray<Tensor<'f32'>>) => void) | null = null;

/** The precision GEMM operands are read in; f32 unless a run asked for f16. */
export function workingPrecision(): Precision {
  return working;
}

/**
 * Sets the working precision (the trainer does, for the run's lifetime; tests and benchmarks too).
 * f16 needs an adapter with shader-f16; the error names the setting to change.
 */
export function setWorkingPrecision(p: Precision): void {
  if (p === 'f16' && !gpu().features.f16) {
    throw new Error(
      `precision f16 needs the "shader-f16" feature, which ${gpu().adapterName} does not offer; use --precision f32`,
    );
  }
  working = p;
}

/** The dtype conv2d writes activations in: f16 under the f16 working precision, else f32. */
export function activationDType(): FloatDType {
  return working;
}

/** Bytes per element of a precision. */
export function elementBytes(p: Precision = 'f32'): number {
  return p === 'f16' ? 2 : 4;
}

/** An f16 copy of an f32 tensor (round to nearest even; not recorded by autograd). */
export function toF16(t: Tensor<'f32'>): Tensor<'f16'> {
  expectDType(t, 'f32', 'toF16');
  const out = Tensor.empty(t.shape, 'f16');
  roundToF16(t.buffer, out.buffer, t.size);
  return out;
}

/** dst (f16) = the first n values of src (f32) rounded to nearest even. */
export function roundToF16(src: GPUBuffer, dst: GPUBuffer, n: number): void {
  if (n === 0) return;
  dispatchKernel(precisionKernels.to_float, {
    params: { n },
    bindings: { src, dst },
    precision: 'f16',
    workgroups: grid(Math.ceil(n / 256)),
  });
}

/**
 * Runs `write` into an f32 buffer of `n` elements standing for `out`: `out` itself when `outPrecision` is f32, else
 * a pooled temporary rounded into the f16 `out` afterwards (for kernels that only write f32, as the tensor cores do).
 */
export function writeThroughF32(
  out: GPUBuffer,
  n: number,
  outPrecision: Precision,
  write: (out32: GPUBuffer) => void,
): void {
  if (outPrecision === 'f32') return write(out);
  const g = gpu();
  const out32 = g.pool.acquire(n * 4);
  write(out32);
  roundToF16(out32, out, n);
  g.pool.release(out32);
}

/** The f32 values of an f16 tensor (exact; not recorded by autograd). */
export function fromF16(t: Tensor<'f16'>): Tensor<'f32'> {
  expectDType(t, 'f16', 'fromF16');
  const out = Tensor.empty(t.shape, 'f32');
  if (t.size > 0) {
    dispatchKernel(precisionKernels.from_float, {
      params: { n: t.size },
      bindings: { src: t.buffer, dst: out.buffer },
      precision: 'f16',
      workgroups: grid(Math.ceil(t.size / 256)),
    });
  }
  return out;
}

/**
 * Calls `observer` with the f32 tensors of every `inWorkingPrecision` under f16, before they are copied
 * (bench/f16-underflow.ts counts which gradient values the copies flush to zero); null stops it.
 */
export function observeF16Copies(observer: ((sources: ReadonlyArray<Tensor<'f32'>>) => void) | null): void {
  copyObserver = observer;
}

/**
 * Runs `run` with the buffers a GEMM reads for `tensors` in the working precision: the buffers of tensors
 * already in it, else copies (f16 roundings, or f32 widenings of f16 activations under f32) made here and
 * released when `run` returns (the GEMMs it records keep the buffers alive until they have run).
 */
export function inWorkingPrecision<T>(
  tensors: ReadonlyArray<Tensor<FloatDType>>,
  run: (buffers: GPUBuffer[], precision: Precision) => T,
): T {
  const precision = working;
  if (tensors.every((t) => t.dtype === precision))
    return run(
      tensors.map((t) => t.buffer),
      precision,
    );
  if (precision === 'f16') copyObserver?.(tensors.filter((t): t is Tensor<'f32'> => t.dtype === 'f32'));
  const copies = tensors.map((t) =>
    t.dtype === precision ? null : t.dtype === 'f32' ? toF16(t as Tensor<'f32'>) : fromF16(t as Tensor<'f16'>),
  );
  try {
    return run(
      tensors.map((t, i) => (copies[i] ?? t).buffer),
      precision,
    );
  } finally {
    for (const c of copies) c?.dispose();
  }
}
