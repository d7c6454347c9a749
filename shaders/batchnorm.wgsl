// Batch normalisation over the last axis of x viewed as [rows, channels] (NHWC / [B, C]).
//
// Reductions are deterministic: no atomics. A partial pass gives each workgroup one block of rows and a
// tile of {{CT}} channels; {{RL}} row lanes stride through the block, and lane 0 folds the lanes together
// in lane order. A finalize pass (one thread per channel) folds the blocks in block order.
//
// Per-channel stats buffer (4·C floats): [mean | invstd | scale = weight·invstd | bias].
// Partial buffers hold two rows of C floats per block: block b at [2·b·C, 2·b·C + 2·C).
//
// Storage variables are named by binding and access (r = read, w = read_write); each entry point lists
// what it binds, in the order src/ops/batchnorm.ts passes the buffers.

struct Params {
  rows: u32,
  channels: u32,
  nblocks: u32,
  rows_per_block: u32,
  flags: u32, // 1: weight given, 2: bias given, 4: update running stats, 8: ReLU fused after the BN
  eps: f32,
  momentum: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> r1: array<f32>;
@group(0) @binding(2) var<storage, read> r2: array<f32>;
@group(0) @binding(3) var<storage, read> r3: array<f32>;
@group(0) @binding(4) var<storage, read> r4: array<f32>;
@group(0) @binding(5) var<storage, read> r5: array<f32>;
@group(0) @binding(2) var<storage, read_write> w2: array<f32>;
@group(0) @binding(3) var<storage, read_write> w3: array<f32>;
@group(0) @binding(4) var<storage, read_write> w4: array<f32>;
@group(0) @binding(5) var<storage, read_write> w5: array<f32>;
@group(0) @binding(6) var<storage, read_write> w6: array<f32>;
@group(0) @binding(7) var<storage, read> r7: array<f32>;

const CT: u32 = {{CT}}u; // channels per workgroup
const RL: u32 = {{RL}}u; // row lanes per workgroup (CT * RL = 256)
const RELU: u32 = 8u;

// With a fused ReLU the gradient reaching the BN output is dy only where the saved output is positive.
// Callers test `fused_relu() && !(out[i] > 0.0)`: `&&` short-circuits, so without a ReLU the output is
// never read.
fn fused_relu() -> bool {
  return (p.flags & RELU) != 0u;
}

var<workgroup> sh_a: array<f32, 256>;
var<workgroup> sh_b: array<f32, 256>;
var<workgroup> sh_c: array<f32, 256>;

// Chan et al.: merge (count, mean, M2) of two disjoint sets.
fn merge(a: vec3f, b: vec3f) -> vec3f {
  if (b.x == 0.0) { return a; }
  if (a.x == 0.0) { return b; }
  let n = a.x + b.x;
  let d = b.y - a.y;
  return vec3f(n, a.y + d * (b.x / n), a.z + b.z + d * d * (a.x * (b.x / n)));
}

fn block_rows(b: u32) -> f32 {
  let start = b * p.rows_per_block;
  return f32(min(p.rows_per_block, p.rows - start));
}

// Forward statistics, pass 1. r1 = x, w2 = partial (mean, M2 per block and channel).
// Each lane accumulates sums shifted by its first value (no cancellation when |mean| >> std).
@compute @workgroup_size({{CT}}, {{RL}})
fn stats_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let b = wid.y;
  let start = b * p.rows_per_block;
  let end = min(start + p.rows_per_block, p.rows);
  var cnt = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var shift = 0.0;
  if (c < p.channels) {
    let r0 = start + lid.y;
    if (r0 < end) { shift = r1[r0 * p.channels + c]; }
    for (var r = r0; r < end; r += RL) {
      let d = r1[r * p.channels + c] - shift;
      s1 += d;
      s2 += d * d;
      cnt += 1.0;
    }
  }
  let slot = lid.y * CT + lid.x;
  sh_a[slot] = cnt;
  sh_b[slot] = select(0.0, shift + s1 / cnt, cnt > 0.0);
  sh_c[slot] = select(0.0, max(s2 - s1 * (s1 / cnt), 0.0), cnt > 0.0);
  workgroupBarrier();
  if (lid.y == 0u && c < p.channels) {
    var acc = vec3f(sh_a[lid.x], sh_b[lid.x], sh_c[lid.x]);
    for (var l = 1u; l < RL; l++) {
      let s = l * CT + lid.x;
      acc = merge(acc, vec3f(sh_a[s], sh_b[s], sh_c[s]));
    }
    w2[2u * b * p.channels + c] = acc.y;
    w2[(2u * b + 1u) * p.channels + c] = acc.z;
  }
}

// Forward statistics, pass 2 (training). r1 = partial, r2 = weight, r3 = bias (placeholders when absent),
// w4 = stats, w5 = running mean, w6 = running var (updated in place, PyTorch's rule, unbiased variance).
@compute @workgroup_size(64)
fn stats_finalize(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.channels) { return; }
  var acc = vec3f(0.0);
  for (var b = 0u; b < p.nblocks; b++) {
    acc = merge(acc, vec3f(block_rows(b), r1[2u * b * p.channels + c], r1[(2u * b + 1u) * p.channels + c]));
  }
  let mean = acc.y;
  let invstd = 1.0 / sqrt(acc.z / acc.x + p.eps);
  let wt = select(1.0, r2[c], (p.flags & 1u) != 0u);
  let bs = select(0.0, r3[c], (p.flags & 2u) != 0u);
  let C = p.channels;
  w4[c] = mean;
  w4[C + c] = invstd;
  w4[2u * C + c] = wt * invstd;
  w4[3u * C + c] = bs;
  if ((p.flags & 4u) != 0u) {
    let unbiased = acc.z / (acc.x - 1.0);
    w5[c] = (1.0 - p.momentum) * w5[c] + p.momentum * mean;
    w6[c] = (1.0 - p.momentum) * w6[c] + p.momentum * unbiased;
  }
}

// Eval statistics from the running stats. r1 = running mean, r2 = running var, r3 = weight, r4 = bias,
// w5 = stats.
@compute @workgroup_size(64)
fn stats_eval(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.channels) { return; }
  let invstd = 1.0 / sqrt(r2[c] + p.eps);
  let wt = select(1.0, r3[c], (p.flags & 1u) != 0u);
  let bs = select(0.0, r4[c], (p.flags & 2u) != 0u);
  let C = p.channels;
  w5[c] = r1[c];
  w5[C + c] = invstd;
  w5[2u * C + c] = wt * invstd;
  w5[3u * C + c] = bs;
}

// The elementwise passes (apply, dx_train, dx_eval) run on the reductions' tiles of CT channels × RL
// rows, so the channel of an element needs no integer division (lavapipe scalarises u32 division: a
// per-element `i % C` made these passes ~4x slower than a plain elementwise kernel). Workgroup (x, y)
// takes channel tile x and rows y·RL + lane, then every RL·nwg.y rows.

// y = (x - mean) * scale + bias, then max(y, 0) with a fused ReLU. r1 = x, r2 = stats, w3 = y.
@compute @workgroup_size({{CT}}, {{RL}})
fn apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (c >= p.channels) { return; }
  let C = p.channels;
  let mean = r2[c];
  let scale = r2[2u * C + c];
  let shift = r2[3u * C + c];
  let clamp = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let y = (r1[i] - mean) * scale + shift;
    w3[i] = select(y, max(y, 0.0), clamp);
  }
}

// Backward sums, pass 1. r1 = dy, r2 = x, r3 = stats, w4 = partial (Σ dy, Σ dy·(x - mean) per block),
// r5 = the output (read only with a fused ReLU).
@compute @workgroup_size({{CT}}, {{RL}})
fn grad_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let b = wid.y;
  let start = b * p.rows_per_block;
  let end = min(start + p.rows_per_block, p.rows);
  var sdy = 0.0;
  var sdx = 0.0;
  if (c < p.channels) {
    let mean = r3[c];
    let relu = fused_relu();
    for (var r = start + lid.y; r < end; r += RL) {
      let i = r * p.channels + c;
      var g = r1[i];
      if (relu && !(r5[i] > 0.0)) { g = 0.0; }
      sdy += g;
      sdx += g * (r2[i] - mean);
    }
  }
  let slot = lid.y * CT + lid.x;
  sh_a[slot] = sdy;
  sh_b[slot] = sdx;
  workgroupBarrier();
  if (lid.y == 0u && c < p.channels) {
    var a = sh_a[lid.x];
    var d = sh_b[lid.x];
    for (var l = 1u; l < RL; l++) {
      a += sh_a[l * CT + lid.x];
      d += sh_b[l * CT + lid.x];
    }
    w4[2u * b * p.channels + c] = a;
    w4[(2u * b + 1u) * p.channels + c] = d;
  }
}

// Backward sums, pass 2. r1 = partial, r2 = stats, w3 = Σ dy (= d bias), w4 = Σ dy·x̂ (= d weight).
@compute @workgroup_size(64)
fn grad_finalize(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.channels) { return; }
  var a = 0.0;
  var d = 0.0;
  for (var b = 0u; b < p.nblocks; b++) {
    a += r1[2u * b * p.channels + c];
    d += r1[(2u * b + 1u) * p.channels + c];
  }
  w3[c] = a;
  w4[c] = d * r2[p.channels + c];
}

// Training dx = scale · (dy - (Σdy + x̂ · Σdy·x̂) / rows). r1 = dy, r2 = x, r3 = stats, r4 = Σ dy,
// r5 = Σ dy·x̂, w6 = dx, r7 = the output (read only with a fused ReLU).
@compute @workgroup_size({{CT}}, {{RL}})
fn dx_train(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (c >= p.channels) { return; }
  let C = p.channels;
  let mean = r3[c];
  let invstd = r3[C + c];
  let scale = r3[2u * C + c];
  let sum_dy = r4[c];
  let sum_dy_xhat = r5[c];
  let relu = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let xhat = (r2[i] - mean) * invstd;
    var g = r1[i];
    if (relu && !(r7[i] > 0.0)) { g = 0.0; }
    w6[i] = scale * (g - (sum_dy + xhat * sum_dy_xhat) / f32(p.rows));
  }
}

// Eval dx = scale · dy. r1 = dy, r2 = stats, w3 = dx, r4 = the output (read only with a fused ReLU).
@compute @workgroup_size({{CT}}, {{RL}})
fn dx_eval(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (c >= p.channels) { return; }
  let scale = r2[2u * p.channels + c];
  let relu = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * p.channels + c;
    var g = r1[i];
    if (relu && !(r4[i] > 0.0)) { g = 0.0; }
    w3[i] = g * scale;
  }
}
