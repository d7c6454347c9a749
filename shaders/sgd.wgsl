// Fused SGD update, PyTorch's rule (torch.optim.SGD, dampening 0), one thread per parameter element:
//   g' = g + wd * p
//   momentum == 0:  p = p - lr * g'                                   (sgd_plain)
//   else:           b = g' on the first step, else b = momentum * b + g'
//                   d = g' + momentum * b if nesterov, else d = b
//                   p = p - lr * d                                    (sgd_momentum)
// Both leave everything untouched when skip[0] != 0 (dynamic loss scaling found an inf/NaN gradient).

// Parameters and bindings: src/kernels/sgd.ts.

//!include grid

@compute @workgroup_size(256)
fn sgd_plain(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.n || skip[0] != 0u) { return; }
  let w = param[i];
  let g = grad[i] + p.wd * w;
  param[i] = w - p.lr * g;
}

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.n || skip[0] != 0u) { return; }
  let w = param[i];
  let g = grad[i] + p.wd * w;
  var b = g;
  if (p.first == 0u) { b = p.momentum * buf[i] + g; }
  buf[i] = b;
  var d = b;
  if (p.nesterov != 0u) { d = g + p.momentum * b; }
  param[i] = w - p.lr * d;
}
