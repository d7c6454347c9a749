// Elementwise kernels over flat arrays of n elements. Launched on a 2-D grid of 256-wide workgroups
// (see grid() in src/gpu/device.ts); the linear index is wid.x + wid.y * nwg.x.

struct Params {
  n: u32,
  alpha: f32,
  beta: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Unary: out = f(a)
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
// Binary: out2 = f(a, b)
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out2: array<f32>;
// Nullary: fill
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;

//!include grid

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { acc[i] = p.alpha; }
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

// out2 = alpha * a + beta * b  (add, sub, axpby)
@compute @workgroup_size(256)
fn axpby(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out2[i] = p.alpha * a[i] + p.beta * b[i]; }
}

@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out2[i] = a[i] * b[i]; }
}

// ReLU backward: a = gradient of the output, b = the ReLU output (or input: same sign pattern)
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out2[i] = select(0.0, a[i], b[i] > 0.0); }
}

// acc += alpha * b  (in-place accumulation)
@compute @workgroup_size(256)
fn accumulate(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { acc[i] = acc[i] + p.alpha * b[i]; }
}
