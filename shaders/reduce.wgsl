// Deterministic two-pass reductions and their broadcasts (src/ops/reduce.ts).
// The partition into workgroups depends only on the shape, and every tree/loop adds in a fixed order,
// so a given input always gives bit-identical output (no atomics).

// Parameters and bindings: src/kernels/reduce.ts.

//!include grid
//!include workgroup_sum

// dst[g] = sum of src[g*per .. min((g+1)*per, n)), one workgroup per partial.
@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x;
  let lo = g * p.per;
  let hi = min(lo + p.per, p.n);
  var acc = 0.0;
  for (var i = lo + lid; i < hi; i = i + 256u) { acc = acc + src[i]; }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { dst[g] = total; }
}

// dst[0] = alpha * sum of src[0 .. groups), one workgroup.
@compute @workgroup_size(256)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.groups; i = i + 256u) { acc = acc + src[i]; }
  let total = workgroup_sum(lid, acc);
  if (lid == 0u) { dst[0] = p.alpha * total; }
}

// src is [n, cols]; dst[g * cols + c] = sum over rows g*per .. min((g+1)*per, n) of src[r, c] (in row order).
@compute @workgroup_size(256)
fn sum_axis0_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.groups * p.cols) { return; }
  let g = i / p.cols;
  let c = i % p.cols;
  let lo = g * p.per;
  let hi = min(lo + p.per, p.n);
  var acc = 0.0;
  for (var r = lo; r < hi; r = r + 1u) { acc = acc + src[r * p.cols + c]; }
  dst[i] = acc;
}

// dst[c] = alpha * sum over g of src[g * cols + c] (in group order).
@compute @workgroup_size(256)
fn sum_axis0_final(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = linear_index(wid, nwg, lid);
  if (c >= p.cols) { return; }
  var acc = 0.0;
  for (var g = 0u; g < p.groups; g = g + 1u) { acc = acc + src[g * p.cols + c]; }
  dst[c] = p.alpha * acc;
}

// Backward of sum/mean: dst[i] = alpha * src[0] for i < n.
@compute @workgroup_size(256)
fn broadcast_scalar(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { dst[i] = p.alpha * src[0]; }
}

// Backward of sum_axis0: dst[r, c] = alpha * src[c] for the n = rows * cols elements.
@compute @workgroup_size(256)
fn broadcast_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { dst[i] = p.alpha * src[i % p.cols]; }
}
