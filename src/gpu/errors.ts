/**
 * The two GPU faults training cannot go on from, each with one message that says what happened and what to
 * change. Thrown by src/gpu (device.ts, pool.ts); the CLI adds where the last checkpoint is.
 */

/**
 * The GPU device is gone (driver reset or crash, GPU removed, or `device.destroy()`): nothing on it can be
 * used any more, so training stops; the last checkpoint on disk is untouched.
 */
export class GpuDeviceLostError extends Error {
  constructor(readonly reason: string) {
    super(`the GPU device was lost (${reason}); nothing computed since the last checkpoint can be saved.`);
    this.name = 'GpuDeviceLostError';
  }
}

/** A buffer the adapter cannot provide: bigger than its per-buffer limit, or more memory than it has left. */
export class GpuOutOfMemoryError extends Error {
  constructor(detail: string) {
    super(
      `out of GPU memory: ${detail}. Lower optim.batchSize (--batch-size) or the model's size (model.*, odc.k), ` +
        'or use a GPU with more memory.',
    );
    this.name = 'GpuOutOfMemoryError';
  }
}

/** Bytes as MiB with one decimal, for messages. */
export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/** Whether a WebGPU error is an out-of-memory error (GPUOutOfMemoryError), on Dawn and on wgpu. */
export function isOutOfMemory(error: GPUError): boolean {
  const OutOfMemory = (globalThis as { GPUOutOfMemoryError?: abstract new (...args: never[]) => GPUError })
    .GPUOutOfMemoryError;
  return (
    (OutOfMemory !== undefined && error instanceof OutOfMemory) || error.constructor?.name === 'GPUOutOfMemoryError'
  );
}
