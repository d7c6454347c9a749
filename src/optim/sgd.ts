/**
 * SGD with momentum, weight decay and Nesterov, exactly PyTorch's torch.optim.SGD (dampening 0):
 *   g' = g + wd * p
 *   momentum 0:  p -= lr * g'
 *   otherwise:   b = g' on a parameter's first step, later b = momentum * b + g'
 *                d = g' + momentum * b (nesterov) or d = b;  p -= lr * d
 * One fused WGSL kernel per parameter (shaders/sgd.wgsl). Parameters whose grad is null are skipped
 * (and their momentum buffer is neither created nor decayed, like PyTorch).
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
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
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

export class SGD {
  private baseLr: number;
  private readonly groups: Group[];
  /** A [1] zero word bound as the skip flag of ungated steps. */
  private noSkip: Tensor<'u32'> | null = null;

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
   * Applies one update to every parameter that has a gradient; with `skip`, only where skip[0] is 0 when
   * the update runs on the GPU (loss scaling's found-inf word).
   */
  step(skip?: Tensor<'u32'>): void {
    const gate = skip ?? (this.noSkip ??= keep(Tensor.from(new Uint32Array(1), [1], 'u32')));
    this.groups.forEach((g, gi) => {
      const lr = this.groupLr(gi);
      g.params.forEach((p, pi) => {
        const grad = p.grad;
        if (!grad) return;
        if (!shapesEqual(grad.shape, p.shape)) {
          throw new RangeError(
            `SGD.step: gradient ${fmtShape(grad.shape)} does not match parameter ${fmtShape(p.shape)}`,
          );
        }
        if (p.size === 0) return;
        const n = p.size;
        const workgroups = grid(Math.ceil(n / 256));
        if (g.momentum === 0) {
          dispatchKernel(kernels.sgd_plain, {
            params: { n, lr, wd: g.weightDecay },
            bindings: { param: p.buffer, grad: grad.buffer, skip: gate.buffer },
            workgroups,
          });
          return;
        }
        let buf = g.buffers[pi];
        const first = buf === null && !skip;
        if (!buf) {
          buf = keep(skip ? fill(p.shape, 0) : Tensor.empty(p.shape, 'f32'));
          g.buffers[pi] = buf;
        }
        dispatchKernel(kernels.sgd_momentum, {
          params: { n, lr, momentum: g.momentum, wd: g.weightDecay, nesterov: g.nesterov, first },
          bindings: { param: p.buffer, grad: grad.buffer, buf: buf.buffer, skip: gate.buffer },
          workgroups,
        });
      });
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

  /** Frees the momentum buffers (the parameters and their grads are not touched). */
  dispose(): void {
    this.noSkip?.dispose();
    this.noSkip = null;
    for (const g of this.groups) {
      g.buffers.forEach((b, i) => {
        b?.dispose();
        g.buffers[i] = null;
      });
    }
  }
}
