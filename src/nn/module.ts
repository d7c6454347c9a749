/**
 * Module: a tree of layers with named parameters and buffers (PyTorch's state-dict names, so weights
 * export under the keys a PyTorch model expects). Parameters and buffers live outside any tidy() scope
 * and are freed by dispose().
 */
import type { FloatDType, Tensor } from '../tensor/tensor.ts';

export abstract class Module {
  /** Training mode (batch statistics, dropout) or evaluation mode. */
  training = true;
  private readonly childModules = new Map<string, Module>();
  private readonly params = new Map<string, Tensor<'f32'>>();
  private readonly buffers = new Map<string, Tensor<'f32'>>();

  /** Activations between layers are f32, or f16 under `--precision f16` (src/ops/precision.ts). */
  abstract forward(x: Tensor<FloatDType>): Tensor<FloatDType>;

  protected addModule<M extends Module>(name: string, module: M): M {
    this.childModules.set(name, module);
    return module;
  }

  protected addParameter(name: string, tensor: Tensor<'f32'>): Tensor<'f32'> {
    tensor.requiresGrad = true;
    this.params.set(name, tensor);
    return tensor;
  }

  /** A non-trainable state tensor that belongs in checkpoints (BN running statistics). */
  protected addBuffer(name: string, tensor: Tensor<'f32'>): Tensor<'f32'> {
    this.buffers.set(name, tensor);
    return tensor;
  }

  children(): IterableIterator<[string, Module]> {
    return this.childModules.entries();
  }

  /** Every parameter under this module, with dotted PyTorch-style names. */
  namedParameters(prefix = ''): Array<[string, Tensor<'f32'>]> {
    const out: Array<[string, Tensor<'f32'>]> = [];
    for (const [name, p] of this.params) out.push([prefix + name, p]);
    for (const [name, child] of this.childModules) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }

  namedBuffers(prefix = ''): Array<[string, Tensor<'f32'>]> {
    const out: Array<[string, Tensor<'f32'>]> = [];
    for (const [name, b] of this.buffers) out.push([prefix + name, b]);
    for (const [name, child] of this.childModules) out.push(...child.namedBuffers(`${prefix}${name}.`));
    return out;
  }

  parameters(): Tensor<'f32'>[] {
    return this.namedParameters().map(([, p]) => p);
  }

  /** Sets training or evaluation mode on the whole tree; returns this. */
  train(mode = true): this {
    this.training = mode;
    for (const child of this.childModules.values()) child.train(mode);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * What decides which kernels a training step records besides shapes, in tree order, one character each: every
   * training flag ('1'/'0': a submodule in eval mode) and every parameter's requiresGrad and pending gradient ('0'-'3':
   * a frozen parameter; a gradient left on it, which backward adds into), so a replayed step (src/odc/step.ts) keys
   * its tape by it.
   */
  recordingSignature(): string {
    let signature = this.training ? '1' : '0';
    for (const p of this.params.values()) signature += (p.requiresGrad ? 1 : 0) + (p.grad ? 2 : 0);
    for (const child of this.childModules.values()) signature += child.recordingSignature();
    return signature;
  }

  dispose(): void {
    for (const p of this.params.values()) {
      p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
    for (const b of this.buffers.values()) b.dispose();
    for (const child of this.childModules.values()) child.dispose();
  }
}
