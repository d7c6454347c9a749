// Elementwise kernels over flat arrays of n elements. Launched on a 2-D grid of 256-wide workgroups
// (see grid() in src/gpu/device.ts); the linear index is wid.x + wid.y * nwg.x.

// Parameters and bindings: src/kernels/elementwise.ts.

//!include grid

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = p.value; }
}

// out = alpha * a + beta  (copy, scale, shift, negate)
@compute @workgroup_size(256)
fn affine(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = p.alpha * a[i] + p.beta; }
}

@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = max(a[i], 0.0); }
}

// out = alpha * a + beta * b  (add, sub, axpby), computed in f32 (rounded once for f16 activations)
@compute @workgroup_size(256)
fn axpby(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = float(p.alpha * f32(a[i]) + p.beta * f32(b[i])); }
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = a[i] * b[i]; }
}

// ReLU backward: grad = gradient of the output, output = the ReLU output (or input: same sign pattern)
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = select(0.0, grad[i], output[i] > 0.0); }
}

// acc += alpha * b  (in-place accumulation)
@compute @workgroup_size(256)
fn accumulate(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { acc[i] = acc[i] + p.alpha * b[i]; }
}
