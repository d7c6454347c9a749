// Multi-tensor SGD update, PyTorch's rule (torch.optim.SGD, dampening 0), one thread per parameter element:
//   g' = g + wd * p
//   momentum off:  p = p - lr * g'
//   momentum on:   b = g' on the parameter's first step, else b = momentum * b + g'
//                  d = g' + momentum * b if nesterov, else d = b
//                  p = p - lr * d
// One dispatch updates up to SLOTS parameters of one group (same hyper-parameters): slot s owns the
// workgroups [start_s, start_{s+1}) of the linear workgroup grid (start_0 = 0; an unused slot starts at
// 0xffffffff) and elements [0, n_s) of its own param_s / grad_s / buf_s bindings. WGSL cannot index
// bindings at run time, so each entry spells out its slots; the arithmetic is the one function below.
// Every entry leaves everything untouched when skip[0] != 0 (dynamic loss scaling found an inf/NaN gradient).
// A slot's buf is read only with momentum after the first step: without momentum, and in unused slots, param
// and buf are bound to placeholders of 16 bytes (WebGPU forbids binding one buffer writable twice).

// Parameters and bindings: src/kernels/sgd.ts.

// The update of one element: (new momentum buffer, new parameter).
fn sgd_element(w: f32, grad_value: f32, buf_value: f32, first: u32) -> vec2f {
  let g = grad_value + p.wd * w;
  if (p.use_momentum == 0u) { return vec2f(0.0, w - p.lr * g); }
  var b = g;
  if (first == 0u) { b = p.momentum * buf_value + g; }
  var d = b;
  if (p.nesterov != 0u) { d = g + p.momentum * b; }
  return vec2f(b, w - p.lr * d);
}

@compute @workgroup_size(256)
fn sgd_pair(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (skip[0] != 0u) { return; }
  let w = wid.x + wid.y * nwg.x;
  if (w >= p.start_1) {
    let i = (w - p.start_1) * 256u + lid;
    if (i >= p.n_1) { return; }
    var b = 0.0;
    if (p.use_momentum != 0u && p.first_1 == 0u) { b = buf_1[i]; }
    let r = sgd_element(param_1[i], grad_1[i], b, p.first_1);
    if (p.use_momentum != 0u) { buf_1[i] = r.x; }
    param_1[i] = r.y;
  } else {
    let i = w * 256u + lid;
    if (i >= p.n_0) { return; }
    var b = 0.0;
    if (p.use_momentum != 0u && p.first_0 == 0u) { b = buf_0[i]; }
    let r = sgd_element(param_0[i], grad_0[i], b, p.first_0);
    if (p.use_momentum != 0u) { buf_0[i] = r.x; }
    param_0[i] = r.y;
  }
}

@compute @workgroup_size(256)
fn sgd_wide(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (skip[0] != 0u) { return; }
  let w = wid.x + wid.y * nwg.x;
  var slot = 0u;
  var start = 0u;
  if (w >= p.start_1) { slot = 1u; start = p.start_1; }
  if (w >= p.start_2) { slot = 2u; start = p.start_2; }
  if (w >= p.start_3) { slot = 3u; start = p.start_3; }
  if (w >= p.start_4) { slot = 4u; start = p.start_4; }
  let i = (w - start) * 256u + lid;
  let m = p.use_momentum != 0u;
  switch slot {
    case 0u: {
      if (i >= p.n_0) { return; }
      var b = 0.0;
      if (p.use_momentum != 0u && p.first_0 == 0u) { b = buf_0[i]; }
      let r = sgd_element(param_0[i], grad_0[i], b, p.first_0);
      if (m) { buf_0[i] = r.x; }
      param_0[i] = r.y;
    }
    case 1u: {
      if (i >= p.n_1) { return; }
      var b = 0.0;
      if (p.use_momentum != 0u && p.first_1 == 0u) { b = buf_1[i]; }
      let r = sgd_element(param_1[i], grad_1[i], b, p.first_1);
      if (m) { buf_1[i] = r.x; }
      param_1[i] = r.y;
    }
    case 2u: {
      if (i >= p.n_2) { return; }
      var b = 0.0;
      if (p.use_momentum != 0u && p.first_2 == 0u) { b = buf_2[i]; }
      let r = sgd_element(param_2[i], grad_2[i], b, p.first_2);
      if (m) { buf_2[i] = r.x; }
      param_2[i] = r.y;
    }
    case 3u: {
      if (i >= p.n_3) { return; }
      var b = 0.0;
      if (p.use_momentum != 0u && p.first_3 == 0u) { b = buf_3[i]; }
      let r = sgd_element(param_3[i], grad_3[i], b, p.first_3);
      if (m) { buf_3[i] = r.x; }
      param_3[i] = r.y;
    }
    default: {
      if (i >= p.n_4) { return; }
      var b = 0.0;
      if (p.use_momentum != 0u && p.first_4 == 0u) { b = buf_4[i]; }
      let r = sgd_element(param_4[i], grad_4[i], b, p.first_4);
      if (m) { buf_4[i] = r.x; }
      param_4[i] = r.y;
    }
  }
}
