/**
 * Dynamic loss scaling for `--precision f16`, as PyTorch's torch.amp.GradScaler does it, with no host
 * read in the step. Without it most backward GEMM operands (dY) are subnormal in f16 and a third flush to
 * zero for resnet18 CIFAR at batch 512 (bench/f16-underflow.ts; numbers in bench/RESULTS.md).
 *
 * Per step: backward starts from `seed` (the scale, instead of 1), `unscale` multiplies every f32 gradient
 * by 1/scale (several gradients per dispatch) and raises a found-inf word on the GPU when one is inf or NaN, `sgd.step(skipFlag)` skips the
 * whole update when the word is set, and `update` halves the scale after an overflow or doubles it after
 * `growthInterval` clean steps, then clears the word. Scales are powers of two, so unscaling is exact:
 * with no overflow the unscaled gradients are those of the unscaled loss, bit for bit, whenever the scaled
 * values stay within f32's normal range. The state is read only by `read` (log records, checkpoints).
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel, type DispatchOf } from '../gpu/kernel.ts';
import { NARROW_SLOTS, WIDE_SLOTS, lossScale as kernels } from '../kernels/loss_scale.ts';
import { Tensor } from '../tensor/tensor.ts';
import { keep } from '../tensor/scope.ts';

/** The scaler's state as a checkpoint holds it. */
export interface LossScaleState {
  /** The current scale (a power of two). */
  scale: number;
  /** Clean steps in a row since the last change of scale. */
  cleanSteps: number;
  /** Steps skipped (inf/NaN gradients) since the run began. */
  skippedSteps: number;
}

const STATE_WORDS = 4; // found inf, clean steps, skipped steps, unused (16-byte buffer)

/** The first workgroup of an unused slot: past every workgroup of the launch. */
const UNUSED_SLOT = 0xffffffff;

let forcedSlots: number | null = null;

/** Tests run the 6-slot entry where the adapter would take the 14-slot one, or 1 (one gradient per dispatch); null restores the choice. */
export function forceUnscaleSlots(slots: 1 | typeof NARROW_SLOTS | typeof WIDE_SLOTS | null): void {
  forcedSlots = slots;
}

/** Gradients per unscale dispatch: 14 where the adapter binds 16 storage buffers per stage, else 6 (WebGPU's default 8). */
function unscaleSlots(): number {
  return forcedSlots ?? (gpu().limits.maxStorageBuffersPerShaderStage >= WIDE_SLOTS + 2 ? WIDE_SLOTS : NARROW_SLOTS);
}

export class LossScaler {
  private readonly scaleT: Tensor<'f32'>;
  private readonly inverseT: Tensor<'f32'>;
  private readonly stateT: Tensor<'u32'>;
  /** 16-byte stand-ins for the writable bindings of unused slots (made at the first unscale). */
  private readonly placeholders: GPUBuffer[] = [];
  /** The gradients of the dispatch being gathered (reused by every step). */
  private readonly batch: Array<Tensor<'f32'>> = [];

  /** `initialScale` must be a power of two (exact unscaling); `growthInterval` clean steps double it. */
  constructor(
    initialScale: number,
    readonly growthInterval: number,
  ) {
    checkScale(initialScale, 'the initial loss scale');
    if (!Number.isInteger(growthInterval) || growthInterval < 1)
      throw new RangeError(`loss scaling: the growth interval must be a positive integer, got ${growthInterval}`);
    this.scaleT = keep(Tensor.from(Float32Array.of(initialScale), [1]));
    this.inverseT = keep(Tensor.from(Float32Array.of(1 / initialScale), [1]));
    this.stateT = keep(Tensor.from(new Uint32Array(STATE_WORDS), [STATE_WORDS], 'u32'));
  }

  /** The gradient backward() starts from: [1] holding the scale. */
  get seed(): Tensor<'f32'> {
    return this.scaleT;
  }

  /** The word SGD.step reads: nonzero when this step's gradients held an inf or NaN. */
  get skipFlag(): Tensor<'u32'> {
    return this.stateT;
  }

  /**
   * Divides each gradient by the scale in place and records whether any is inf or NaN: several gradients per
   * dispatch (shaders/loss_scale.wgsl's multi-tensor entries), each element as one gradient at a time would.
   */
  unscale(params: Iterable<Tensor<'f32'>>): void {
    const slots = unscaleSlots();
    while (this.placeholders.length < WIDE_SLOTS) this.placeholders.push(gpu().pool.acquire(16));
    const batch = this.batch;
    batch.length = 0;
    for (const p of params) {
      const grad = p.grad;
      if (!grad || grad.size === 0) continue;
      // A gradient buffer seen twice in one dispatch would be bound writable twice: it goes to the next one (unscaled
      // twice, as one gradient at a time did).
      if (batch.length === slots || batch.some((g) => g.buffer === grad.buffer)) {
        this.launchUnscale(slots, batch);
        batch.length = 0;
      }
      batch.push(grad);
    }
    if (batch.length > 0) this.launchUnscale(slots, batch);
    batch.length = 0;
  }

  /** One multi-tensor unscale of `grads` (at most `slots`); unused slots start past every workgroup, on placeholders. */
  private launchUnscale(slots: number, grads: ReadonlyArray<Tensor<'f32'>>): void {
    const wide = slots > NARROW_SLOTS;
    const params: Record<string, number> = {};
    const bindings: Record<string, GPUBuffer> = { inverse: this.inverseT.buffer, state: this.stateT.buffer };
    let workgroups = 0;
    for (let s = 0; s < (wide ? WIDE_SLOTS : NARROW_SLOTS); s++) {
      const grad = grads[s];
      if (s > 0) params[`start_${s}`] = grad ? workgroups : UNUSED_SLOT;
      params[`n_${s}`] = grad ? grad.size : 0;
      bindings[`grad_${s}`] = grad ? grad.buffer : this.placeholders[s];
      if (grad) workgroups += Math.ceil(grad.size / 256);
    }
    // The slot names are built here; the kernel's declaration lists them (checked when it compiles).
    const kernel = wide ? kernels.unscale_wide : kernels.unscale_narrow;
    dispatchKernel(kernel, { params, bindings, workgroups: grid(workgroups) } as DispatchOf<typeof kernel>);
  }

  /** After the (gated) SGD step: backs off or grows the scale, and clears the found-inf word. */
  update(): void {
    dispatchKernel(kernels.update_scale, {
      params: { growth_interval: this.growthInterval },
      bindings: { scale: this.scaleT.buffer, inverse: this.inverseT.buffer, state: this.stateT.buffer },
      workgroups: [1],
    });
  }

  /** The state, read from the GPU (blocking: log records and checkpoints only). */
  async read(): Promise<LossScaleState> {
    const [scale, words] = [await this.scaleT.data(), await this.stateT.data()];
    return { scale: scale[0], cleanSteps: words[1], skippedSteps: words[2] };
  }

  /** Restores a state from `read` (a resume). */
  load(s: LossScaleState): void {
    checkScale(s.scale, "the checkpoint's loss scale");
    gpu().write(this.scaleT.buffer, Float32Array.of(s.scale));
    gpu().write(this.inverseT.buffer, Float32Array.of(1 / s.scale));
    gpu().write(this.stateT.buffer, Uint32Array.of(0, s.cleanSteps, s.skippedSteps, 0));
  }

  dispose(): void {
    for (const t of [this.scaleT, this.inverseT, this.stateT]) t.dispose();
    for (const b of this.placeholders) gpu().pool.release(b);
    this.placeholders.length = 0;
  }
}

/** Scales are powers of two in [2^-64, 2^64] (the kernel's bounds), so 1/scale is exact in f32. */
function checkScale(scale: number, what: string): void {
  const e = Math.log2(scale);
  if (!Number.isInteger(e) || e < -64 || e > 64)
    throw new RangeError(`loss scaling: ${what} must be a power of two in [2^-64, 2^64], got ${scale}`);
}
