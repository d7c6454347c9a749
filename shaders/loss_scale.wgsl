// Dynamic loss scaling for `--precision f16`, PyTorch's GradScaler on the GPU (src/optim/loss-scale.ts).
// The backward pass starts from `scale` instead of 1; `unscale_check` then multiplies every f32 gradient by
// `inverse` (1 / scale, a power of two, so exact) and raises the found-inf word of `state` when a gradient
// is inf or NaN; the SGD kernels skip their update when that word is set; `update_scale` halves the scale
// after an overflow, doubles it after `growth_interval` clean steps in a row, and clears the word.
// state: [0] found inf/NaN in this step, [1] clean steps in a row, [2] skipped steps in all.

//!include grid

// Scales stay in [2^-64, 2^64] so the inverse stays a normal f32 (GPUs may flush subnormals to zero).
const MIN_SCALE = 5.421010862427522e-20;
const MAX_SCALE = 1.8446744073709552e19;

@compute @workgroup_size(256)
fn unscale_check(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = grad[i];
  // Tested on the bits: WGSL lets an implementation assume floats are finite, so `g != g` may fold away.
  if ((bitcast<u32>(g) & 0x7f800000u) == 0x7f800000u) { atomicStore(&state[0], 1u); }
  grad[i] = g * inverse[0];
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
