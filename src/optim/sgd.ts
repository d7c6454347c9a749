/**
 * SGD with momentum, weight decay and Nesterov, exactly PyTorch's torch.optim.SGD (dampening 0):
 *   g' = g + wd * p
 *   momentum 0:  p -= lr * g'
 *   otherwise:   b = g' on a parameter's first step, later b = momentum * b + g'
 *                d = g' + momentum * b (nesterov) or d = b;  p -= lr * d
 * One fused multi-tensor WGSL kernel (shaders/sgd.wgsl) updates up to 5 parameters of a group per dispatch.
 * Parameters whose grad is null are skipped (and their momentum buffer is neither created nor decayed, like
 * PyTorch).
 *
 * Learning rate: `setLr(lr)` sets the base learning rate (the defaults' lr); a group that gave its own
 * lr keeps its ratio to the base (as PyTorch's LR schedulers scale every group's initial lr).
 *
 * Dynamic loss scaling (src/optim/loss-scale.ts) gates the update on the GPU: `step(skip)` leaves every
 * parameter and momentum buffer untouched when skip[0] != 0, without the host knowing which steps ran. So
 * under a gate a new momentum buffer starts at zero and the kernel's first-step rule is not used
 * (momentum · 0 + g' = g' exactly: the same first step, whichever step that turns out to be).
 *
 * Checkpoints: `exportState()` is async (the momentum buffers are read back to host Float32Arrays);
 * `loadState()` is synchronous (it uploads). Buffers are listed in parameter order, groups in order.
 */
import { gpu, grid } from '../gpu/device.ts';
import { dispatchKernel, type DispatchOf } from '../gpu/kernel.ts';
import { sgd as kernels } from '../kernels/sgd.ts';
import { Tensor, fmtShape, shapesEqual } from '../tensor/tensor.ts';
import { keep } from '../tensor/scope.ts';
import { fill } from '../tensor/kernels.ts';

export interface ParamGroup {
  params: Tensor<'f32'>[];
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export interface SgdDefaults {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

export interface SgdState {
  /** The base learning rate at export time. */
  lr: number;
  /** One entry per parameter (groups in order, parameters in order): its momentum buffer, or null before its first step or when its group has momentum 0. */
  momentumBuffers: Array<Float32Array | null>;
}

interface Group {
  params: Tensor<'f32'>[];
  /** lr = this ratio * base lr, for a group that gave its own lr (null otherwise). */
  lrRatio: number | null;
  /** A group's own lr when the base lr was 0 at construction (no ratio): it stays fixed. Null: follows the base lr. */
  fixedLr: number | null;
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
  buffers: Array<Tensor<'f32'> | null>;
}

function checkNumber(value: number, what: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new RangeError(`SGD: ${what} must be a finite number >= 0, got ${String(value)}`);
}

/** One parameter of a multi-tensor dispatch: its buffers (buf: the momentum buffer, null without momentum), size, first step. */
interface SlotEntry {
  param: GPUBuffer;
  grad: GPUBuffer;
  buf: GPUBuffer | null;
  n: number;
  first: boolean;
}

/** The multi-tensor entry the adapter can bind: 5 parameters per dispatch, or 2 within WebGPU's default limits. */
interface MultiKernel {
  wide: boolean;
  slots: number;
}

const WIDE: MultiKernel = { wide: true, slots: 5 };
const PAIR: MultiKernel = { wide: false, slots: 2 };

let forcedKernel: MultiKernel | null = null;

/** Tests run the 2-slot kernel where the adapter would take the 5-slot one: `forceSgdSlots(2)`; null restores the choice. */
export function forceSgdSlots(slots: 2 | 5 | null): void {
  forcedKernel = slots === null ? null : slots === 5 ? WIDE : PAIR;
}

function multiKernel(): MultiKernel {
  // Three storage buffers per slot and one kept free (src/kernels/sgd.ts).
  return forcedKernel ?? (gpu().limits.maxStorageBuffersPerShaderStage >= 3 * WIDE.slots + 1 ? WIDE : PAIR);
}

/** The first workgroup of an unused slot: past every workgroup of the launch. */
const UNUSED_SLOT = 0xffffffff;

/**
 * Records one multi-tensor update of `entries` (at most kernel.slots) of group `g` with learning rate `lr`.
 * `placeholders` (2 per slot, 16 bytes each) stand in for the writable bindings nothing reads or writes: an unused
 * slot's param and buf, and a used slot's buf without momentum. `skip`: the step's gate word (zero: update).
 */
function launch(
  kernel: MultiKernel,
  g: Group,
  lr: number,
  entries: readonly SlotEntry[],
  placeholders: readonly GPUBuffer[],
  skip: GPUBuffer,
): void {
  const params: Record<string, number | boolean> = {
    lr,
    momentum: g.momentum,
    wd: g.weightDecay,
    nesterov: g.nesterov,
    use_momentum: g.momentum !== 0,
  };
  const bindings: Record<string, GPUBuffer> = { skip };
  let workgroups = 0;
  for (let s = 0; s < kernel.slots; s++) {
    // No workgroup reaches an unused slot: it reads slot 0's grad (a read binding may repeat).
    const e = entries[s];
    if (s > 0) params[`start_${s}`] = e ? workgroups : UNUSED_SLOT;
    params[`n_${s}`] = e ? e.n : 0;
    params[`first_${s}`] = e ? e.first : false;
    bindings[`param_${s}`] = e ? e.param : placeholders[2 * s];
    bindings[`grad_${s}`] = (e ?? entries[0]).grad;
    bindings[`buf_${s}`] = e?.buf ?? placeholders[2 * s + 1];
    if (e) workgroups += Math.ceil(e.n / 256);
  }
  // The slot names are built here; the kernel's declaration lists them (checked when it compiles).
  if (kernel.wide) {
    const args = { params, bindings, workgroups: grid(workgroups) } as unknown as DispatchOf<typeof kernels.sgd_wide>;
    dispatchKernel(kernels.sgd_wide, args);
  } else {
    const args = { params, bindings, workgroups: grid(workgroups) } as unknown as DispatchOf<typeof kernels.sgd_pair>;
    dispatchKernel(kernels.sgd_pair, args);
  }
}

export class SGD {
  private baseLr: number;
  private readonly groups: Group[];
  /** A [1] zero word bound as the skip flag of ungated steps. */
  private noSkip: Tensor<'u32'> | null = null;
  /** The parameters of the dispatch being gathered (reused by every step). */
  private readonly batch: SlotEntry[] = [];
  /** Stand-ins for unused writable bindings of the multi-tensor kernel (see `launch`), made at the first step. */
  private readonly placeholders: GPUBuffer[] = [];

  constructor(groups: ParamGroup[], defaults: SgdDefaults) {
    checkNumber(defaults.lr, 'lr');
    this.baseLr = defaults.lr;
    const seen = new Set<Tensor>();
    this.groups = groups.map((g, gi) => {
      const lr = g.lr ?? defaults.lr;
      const momentum = g.momentum ?? defaults.momentum ?? 0;
      const weightDecay = g.weightDecay ?? defaults.weightDecay ?? 0;
      const nesterov = g.nesterov ?? defaults.nesterov ?? false;
      checkNumber(lr, `group ${gi} lr`);
      checkNumber(momentum, `group ${gi} momentum`);
      checkNumber(weightDecay, `group ${gi} weightDecay`);
      if (nesterov && momentum === 0)
        throw new RangeError(`SGD: group ${gi} asks for Nesterov momentum with momentum 0`);
      for (const p of g.params) {
        if (p.dtype !== 'f32')
          throw new TypeError(`SGD: parameters must be f32 tensors, got ${p.dtype} ${fmtShape(p.shape)}`);
        if (seen.has(p)) throw new Error(`SGD: parameter ${p.toString()} appears in more than one place`);
        seen.add(p);
      }
      const lrRatio = g.lr === undefined || defaults.lr === 0 ? null : g.lr / defaults.lr;
      const fixedLr = g.lr !== undefined && defaults.lr === 0 ? g.lr : null;
      return {
        params: g.params.slice(),
        lrRatio,
        fixedLr,
        momentum,
        weightDecay,
        nesterov,
        buffers: g.params.map(() => null),
      };
    });
  }

  get lr(): number {
    return this.baseLr;
  }

  setLr(lr: number): void {
    checkNumber(lr, 'lr');
    this.baseLr = lr;
  }

  /** The learning rate group `i` uses now. */
  groupLr(i: number): number {
    const g = this.groups[i];
    if (g.lrRatio !== null) return g.lrRatio * this.baseLr;
    return g.fixedLr ?? this.baseLr;
  }

  /**
   * Applies one update to every parameter that has a gradient: the parameters of a group go to the multi-tensor
   * kernel (shaders/sgd.wgsl) several per dispatch, in order, with the same per-element arithmetic as one
   * parameter at a time; with `skip`, only where skip[0] is 0 when the update runs on the GPU (loss scaling's
   * found-inf word).
   */
  step(skip?: Tensor<'u32'>): void {
    const gate = (skip ?? (this.noSkip ??= keep(Tensor.from(new Uint32Array(1), [1], 'u32')))).buffer;
    const kernel = multiKernel();
    const batch = this.batch;
    while (this.placeholders.length < 2 * kernel.slots) this.placeholders.push(gpu().pool.acquire(16));
    const placeholders = this.placeholders;
    this.groups.forEach((g, gi) => {
      const lr = this.groupLr(gi);
      batch.length = 0;
      g.params.forEach((p, pi) => {
        const grad = p.grad;
        if (!grad) return;
        if (!shapesEqual(grad.shape, p.shape)) {
          throw new RangeError(
            `SGD.step: gradient ${fmtShape(grad.shape)} does not match parameter ${fmtShape(p.shape)}`,
          );
        }
        if (p.size === 0) return;
        let buf = g.buffers[pi];
        const first = buf === null && !skip;
        if (g.momentum !== 0 && !buf) {
          buf = keep(skip ? fill(p.shape, 0) : Tensor.empty(p.shape, 'f32'));
          g.buffers[pi] = buf;
        }
        // Two parameters viewing one storage are updated one after the other, as before, never in one dispatch.
        if (batch.length === kernel.slots || batch.some((e) => e.param === p.buffer)) {
          launch(kernel, g, lr, batch, placeholders, gate);
          batch.length = 0;
        }
        batch.push({ param: p.buffer, grad: grad.buffer, buf: buf?.buffer ?? null, n: p.size, first });
      });
      if (batch.length > 0) launch(kernel, g, lr, batch, placeholders, gate);
    });
  }

  /** Disposes every parameter's gradient and sets it to null. */
  zeroGrad(): void {
    for (const g of this.groups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** The momentum buffers read back to the host, for checkpoints. */
  async exportState(): Promise<SgdState> {
    const momentumBuffers: Array<Float32Array | null> = [];
    for (const g of this.groups) {
      for (const b of g.buffers) momentumBuffers.push(b ? await b.data() : null);
    }
    return { lr: this.baseLr, momentumBuffers };
  }

  /** Alias of exportState() (the state lives on the GPU, so reading it is asynchronous). */
  state(): Promise<SgdState> {
    return this.exportState();
  }

  /** Restores a state from exportState(): base lr and momentum buffers (null: the next step is a first step). */
  loadState(s: SgdState): void {
    const total = this.groups.reduce((a, g) => a + g.params.length, 0);
    if (s.momentumBuffers.length !== total) {
      throw new RangeError(
        `SGD.loadState: the state has ${s.momentumBuffers.length} momentum buffers, this optimiser has ${total} parameters`,
      );
    }
    let k = 0;
    const uploads: Array<[Group, number, Float32Array | null]> = [];
    for (const g of this.groups) {
      g.params.forEach((p, pi) => {
        const host = s.momentumBuffers[k++];
        if (host && host.length !== p.size) {
          throw new RangeError(
            `SGD.loadState: momentum buffer ${k - 1} has ${host.length} values, its parameter ${fmtShape(p.shape)} has ${p.size}`,
          );
        }
        if (host && g.momentum === 0)
          throw new RangeError(
            `SGD.loadState: momentum buffer ${k - 1} given for a parameter whose group has momentum 0`,
          );
        uploads.push([g, pi, host]);
      });
    }
    this.setLr(s.lr);
    for (const [g, pi, host] of uploads) {
      g.buffers[pi]?.dispose();
      g.buffers[pi] = host ? keep(Tensor.from(host, g.params[pi].shape, 'f32')) : null;
    }
  }

  /** Frees the momentum buffers and the kernel's placeholders (the parameters and their grads are not touched). */
  dispose(): void {
    this.noSkip?.dispose();
    this.noSkip = null;
    for (const b of this.placeholders) gpu().pool.release(b);
    this.placeholders.length = 0;
    for (const g of this.groups) {
      g.buffers.forEach((b, i) => {
        b?.dispose();
        g.buffers[i] = null;
      });
    }
  }
}
