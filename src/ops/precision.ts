/**
 * The working precision of GEMM operands (`--precision f32|f16`), and the f16 copies it needs.
 *
 * Under f16, conv2d, linear and matmul read f16 copies of their operands (activations, weights and, in
 * the backward pass, output gradients) and accumulate in f32; their outputs, the f32 master weights, the
 * SGD state, batch-norm statistics, the loss and the ODC memory stay f32. The f16 copies of the inputs are
 * what the backward pass keeps (half the bytes of the saved GEMM inputs). Under f32 nothing is copied and
 * every kernel is the one that ran before this setting existed.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel, type Precision } from '../gpu/kernel.ts';
import { precision as precisionKernels } from '../kernels/precision.ts';
import { Tensor, expectDType } from '../tensor/tensor.ts';

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

/** Bytes per element of a precision. */
export function elementBytes(p: Precision = 'f32'): number {
  return p === 'f16' ? 2 : 4;
}

/** An f16 copy of an f32 tensor (round to nearest even; not recorded by autograd). */
export function toF16(t: Tensor<'f32'>): Tensor<'f16'> {
  expectDType(t, 'f32', 'toF16');
  const out = Tensor.empty(t.shape, 'f16');
  if (t.size > 0) {
    dispatchKernel(precisionKernels.to_float, {
      params: { n: t.size },
      bindings: { src: t.buffer, dst: out.buffer },
      precision: 'f16',
      workgroups: grid(Math.ceil(t.size / 256)),
    });
  }
  return out;
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
 * Runs `run` with the buffers a GEMM reads for `tensors` in the working precision: the tensors' own
 * buffers in f32, else f16 copies made here and released when `run` returns (the GEMMs it records keep
 * the buffers alive until they have run).
 */
export function inWorkingPrecision<T>(
  tensors: ReadonlyArray<Tensor<'f32'>>,
  run: (buffers: GPUBuffer[], precision: Precision) => T,
): T {
  if (working === 'f32')
    return run(
      tensors.map((t) => t.buffer),
      'f32',
    );
  copyObserver?.(tensors);
  const copies = tensors.map(toF16);
  try {
    return run(
      copies.map((c) => c.buffer),
      'f16',
    );
  } finally {
    for (const c of copies) c.dispose();
  }
}
