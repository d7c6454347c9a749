/** Entry points of shaders/loss_scale.wgsl: dynamic loss scaling (`--precision f16`), PyTorch's GradScaler on the GPU. */
import { declareKernels, type BindingDecl, type BindingsDecl, type ParamsDecl } from '../gpu/kernel.ts';
import { readF32, writeF32, writeU32 } from './common.ts';

/** Gradients per dispatch of the multi-tensor unscale: within WebGPU's default 8 storage bindings, or 16. */
export const NARROW_SLOTS = 6;
export const WIDE_SLOTS = 14;

/** n_0 .. n_{slots-1} (elements per slot), then start_1 .. start_{slots-1} (each slot's first workgroup). */
function slotParams(slots: number): ParamsDecl {
  const params: Record<string, 'u32'> = {};
  for (let s = 0; s < slots; s++) params[`n_${s}`] = 'u32';
  for (let s = 1; s < slots; s++) params[`start_${s}`] = 'u32';
  return params;
}

/** grad_0 .. grad_{slots-1} (unscaled in place), the shared inverse scale and the found-inf word. */
function slotBindings(slots: number): BindingsDecl {
  const bindings: Record<string, BindingDecl> = {};
  for (let s = 0; s < slots; s++) bindings[`grad_${s}`] = writeF32;
  bindings.inverse = readF32;
  bindings.state = { access: 'read_write', type: 'atomic<u32>' };
  return bindings;
}

export const lossScale = declareKernels('loss_scale', {
  /** grad_s *= inverse[0] in place for up to 6 parameters (slots); state[0] = 1 when a gradient is inf or NaN */
  unscale_narrow: { params: slotParams(NARROW_SLOTS), bindings: slotBindings(NARROW_SLOTS) },
  /** the same for up to 14 parameters (16 storage bindings) */
  unscale_wide: { params: slotParams(WIDE_SLOTS), bindings: slotBindings(WIDE_SLOTS) },
  /** halve the scale after an overflow, double it after growth_interval clean steps; clear the found-inf word */
  update_scale: {
    params: { growth_interval: 'u32' },
    bindings: { scale: writeF32, inverse: writeF32, state: writeU32 },
  },
});
