// Dynamic loss scaling for `--precision f16`, PyTorch's GradScaler on the GPU (src/optim/loss-scale.ts).
// The backward pass starts from `scale` instead of 1; `unscale_*` then multiplies every f32 gradient by
// `inverse` (1 / scale, a power of two, so exact) and raises the found-inf word of `state` when a gradient
// is inf or NaN; the SGD kernels skip their update when that word is set; `update_scale` halves the scale
// after an overflow, doubles it after `growth_interval` clean steps in a row, and clears the word.
// state: [0] found inf/NaN in this step, [1] clean steps in a row, [2] skipped steps in all.

//!include grid

// Scales stay in [2^-64, 2^64] so the inverse stays a normal f32 (GPUs may flush subnormals to zero).
const MIN_SCALE = 5.421010862427522e-20;
const MAX_SCALE = 1.8446744073709552e19;

// One gradient element, unscaled: g · inverse, raising the found-inf word when g is inf or NaN. Tested on the
// bits: WGSL lets an implementation assume floats are finite, so `g != g` may fold away.
fn unscaled(g: f32) -> f32 {
  if ((bitcast<u32>(g) & 0x7f800000u) == 0x7f800000u) { atomicStore(&state[0], 1u); }
  return g * inverse[0];
}

// Multi-tensor unscale, in the layout of shaders/sgd.wgsl: one dispatch unscales the gradients of up to 6
// (unscale_narrow, 8 storage bindings: WebGPU's default) or 14 (unscale_wide, 16) parameters in place. Slot s
// owns the workgroups [start_s, start_{s+1}) of the linear grid (start_0 = 0; an unused slot starts at
// 0xffffffff and is bound to a 16-byte placeholder) and elements [0, n_s) of grad_s; all share inverse and the
// found-inf word. WGSL cannot index bindings at run time, so each entry spells out its slots.
@compute @workgroup_size(256)
fn unscale_narrow(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  var slot = 0u;
  var start = 0u;
  if (w >= p.start_1) { slot = 1u; start = p.start_1; }
  if (w >= p.start_2) { slot = 2u; start = p.start_2; }
  if (w >= p.start_3) { slot = 3u; start = p.start_3; }
  if (w >= p.start_4) { slot = 4u; start = p.start_4; }
  if (w >= p.start_5) { slot = 5u; start = p.start_5; }
  let i = (w - start) * 256u + lid;
  switch slot {
    case 0u: { if (i < p.n_0) { grad_0[i] = unscaled(grad_0[i]); } }
    case 1u: { if (i < p.n_1) { grad_1[i] = unscaled(grad_1[i]); } }
    case 2u: { if (i < p.n_2) { grad_2[i] = unscaled(grad_2[i]); } }
    case 3u: { if (i < p.n_3) { grad_3[i] = unscaled(grad_3[i]); } }
    case 4u: { if (i < p.n_4) { grad_4[i] = unscaled(grad_4[i]); } }
    default: { if (i < p.n_5) { grad_5[i] = unscaled(grad_5[i]); } }
  }
}

@compute @workgroup_size(256)
fn unscale_wide(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nwg.x;
  var slot = 0u;
  var start = 0u;
  if (w >= p.start_1) { slot = 1u; start = p.start_1; }
  if (w >= p.start_2) { slot = 2u; start = p.start_2; }
  if (w >= p.start_3) { slot = 3u; start = p.start_3; }
  if (w >= p.start_4) { slot = 4u; start = p.start_4; }
  if (w >= p.start_5) { slot = 5u; start = p.start_5; }
  if (w >= p.start_6) { slot = 6u; start = p.start_6; }
  if (w >= p.start_7) { slot = 7u; start = p.start_7; }
  if (w >= p.start_8) { slot = 8u; start = p.start_8; }
  if (w >= p.start_9) { slot = 9u; start = p.start_9; }
  if (w >= p.start_10) { slot = 10u; start = p.start_10; }
  if (w >= p.start_11) { slot = 11u; start = p.start_11; }
  if (w >= p.start_12) { slot = 12u; start = p.start_12; }
  if (w >= p.start_13) { slot = 13u; start = p.start_13; }
  let i = (w - start) * 256u + lid;
  switch slot {
    case 0u: { if (i < p.n_0) { grad_0[i] = unscaled(grad_0[i]); } }
    case 1u: { if (i < p.n_1) { grad_1[i] = unscaled(grad_1[i]); } }
    case 2u: { if (i < p.n_2) { grad_2[i] = unscaled(grad_2[i]); } }
    case 3u: { if (i < p.n_3) { grad_3[i] = unscaled(grad_3[i]); } }
    case 4u: { if (i < p.n_4) { grad_4[i] = unscaled(grad_4[i]); } }
    case 5u: { if (i < p.n_5) { grad_5[i] = unscaled(grad_5[i]); } }
    case 6u: { if (i < p.n_6) { grad_6[i] = unscaled(grad_6[i]); } }
    case 7u: { if (i < p.n_7) { grad_7[i] = unscaled(grad_7[i]); } }
    case 8u: { if (i < p.n_8) { grad_8[i] = unscaled(grad_8[i]); } }
    case 9u: { if (i < p.n_9) { grad_9[i] = unscaled(grad_9[i]); } }
    case 10u: { if (i < p.n_10) { grad_10[i] = unscaled(grad_10[i]); } }
    case 11u: { if (i < p.n_11) { grad_11[i] = unscaled(grad_11[i]); } }
    case 12u: { if (i < p.n_12) { grad_12[i] = unscaled(grad_12[i]); } }
    default: { if (i < p.n_13) { grad_13[i] = unscaled(grad_13[i]); } }
  }
}

@compute @workgroup_size(1)
fn update_scale() {
  if (state[0] != 0u) {
    if (scale[0] > MIN_SCALE) {
      scale[0] = scale[0] * 0.5;
      inverse[0] = inverse[0] * 2.0;
    }
    state[1] = 0u;
    state[2] = state[2] + 1u;
  } else {
    state[1] = state[1] + 1u;
    if (state[1] >= p.growth_interval) {
      if (scale[0] < MAX_SCALE) {
        scale[0] = scale[0] * 2.0;
        inverse[0] = inverse[0] * 0.5;
      }
      state[1] = 0u;
    }
  }
  state[0] = 0u;
}
