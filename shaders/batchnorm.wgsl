// Batch normalisation over the last axis of x viewed as [rows, channels] (NHWC / [B, C]).
//
// Reductions are deterministic: no atomics. A partial pass gives each workgroup one block of rows and a
// tile of {{CT}} channels; {{RL}} row lanes stride through the block, and lane 0 folds the lanes together
// in lane order. The blocks are then folded in block order per channel, inside the elementwise pass that
// needs the result (stats_apply, dx_train), so a batch norm is two dispatches forward and two backward.
//
// Per-channel stats buffer (4·C floats): [mean | invstd | scale = weight·invstd | bias].
// x, out and y are activations of the working precision (`float`: f16 under --precision f16), read as f32.
// Partial buffers hold two rows of C floats per block: block b at [2·b·C, 2·b·C + 2·C).
//
// Parameters and bindings (named per entry point): src/kernels/batchnorm.ts.

const CT: u32 = {{CT}}u; // channels per workgroup
const RL: u32 = {{RL}}u; // row lanes per workgroup (CT * RL = 256)

// With a fused ReLU the gradient reaching the BN output is dy only where the saved output is positive.
// Callers test `fused_relu() && !(y[i] > 0.0)`: `&&` short-circuits, so without a ReLU the output is
// never read.
fn fused_relu() -> bool {
  return p.relu != 0u;
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

// Forward statistics, pass 1: partial = (mean, M2) per block and channel.
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
    if (r0 < end) { shift = f32(x[r0 * p.channels + c]); }
    for (var r = r0; r < end; r += RL) {
      let d = f32(x[r * p.channels + c]) - shift;
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
    partial[2u * b * p.channels + c] = acc.y;
    partial[(2u * b + 1u) * p.channels + c] = acc.z;
  }
}

// Forward statistics, pass 2 (training): the blocks of channel c merged in block order.
fn fold_stats(c: u32) -> vec3f {
  var acc = vec3f(0.0);
  for (var b = 0u; b < p.nblocks; b++) {
    acc = merge(acc, vec3f(block_rows(b), partial[2u * b * p.channels + c], partial[(2u * b + 1u) * p.channels + c]));
  }
  return acc;
}

// Eval statistics from the running stats.
@compute @workgroup_size(64)
fn stats_eval(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.channels) { return; }
  let invstd = 1.0 / sqrt(running_var[c] + p.eps);
  let wt = select(1.0, weight[c], p.has_weight != 0u);
  let bs = select(0.0, bias[c], p.has_bias != 0u);
  let C = p.channels;
  stats[c] = running_mean[c];
  stats[C + c] = invstd;
  stats[2u * C + c] = wt * invstd;
  stats[3u * C + c] = bs;
}

// The elementwise passes (apply, dx_train, dx_eval) run on the reductions' tiles of CT channels × RL
// rows, so the channel of an element needs no integer division (lavapipe scalarises u32 division: a
// per-element `i % C` made these passes ~4x slower than a plain elementwise kernel). Workgroup (x, y)
// takes channel tile x and rows y·RL + lane, then every RL·nwg.y rows.

// y = (x - mean) * scale + bias, then max(y, 0) with a fused ReLU.
@compute @workgroup_size({{CT}}, {{RL}})
fn apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (c >= p.channels) { return; }
  let C = p.channels;
  let mean = stats[c];
  let scale = stats[2u * C + c];
  let shift = stats[3u * C + c];
  let clamp = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let y = (f32(x[i]) - mean) * scale + shift;
    out[i] = float(select(y, max(y, 0.0), clamp));
  }
}

// Training forward with the statistics' pass 2 folded in (one dispatch fewer per batch norm): lane row 0 of
// every workgroup folds the partials of its CT channels (the same fold, in the same order, as a finalize pass
// would), shares (mean, scale, bias) through workgroup memory (sh_a, sh_b, sh_c), and workgroups of row 0 also
// write the saved stats and update the running mean and var in place (PyTorch's rule, unbiased variance). weight
// and bias are placeholders when absent. The host keeps the row groups few (src/ops/batchnorm.ts) so the repeated
// fold stays a small part of the pass. Shared by stats_apply and stats_apply_add_relu.
fn fold_forward_stats(wid: vec3u, lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let C = p.channels;
  if (lid.y == 0u && c < C) {
    let acc = fold_stats(c);
    let mean = acc.y;
    let invstd = 1.0 / sqrt(acc.z / acc.x + p.eps);
    let wt = select(1.0, weight[c], p.has_weight != 0u);
    let bs = select(0.0, bias[c], p.has_bias != 0u);
    let scale = wt * invstd;
    sh_a[lid.x] = mean;
    sh_b[lid.x] = scale;
    sh_c[lid.x] = bs;
    if (wid.y == 0u) {
      stats[c] = mean;
      stats[C + c] = invstd;
      stats[2u * C + c] = scale;
      stats[3u * C + c] = bs;
      let unbiased = acc.z / (acc.x - 1.0);
      running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
      running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size({{CT}}, {{RL}})
fn stats_apply(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  fold_forward_stats(wid, lid);
  let c = wid.x * CT + lid.x;
  let C = p.channels;
  if (c >= C) { return; }
  let mean = sh_a[lid.x];
  let scale = sh_b[lid.x];
  let shift = sh_c[lid.x];
  let clamp = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let y = (f32(x[i]) - mean) * scale + shift;
    out[i] = float(select(y, max(y, 0.0), clamp));
  }
}

// A residual block's end, relu(bn(x) + res), in the training apply: the batch norm's output is rounded to the
// activation type and added to res in that type (a correctly rounded sum, as the separate add kernel's), then
// clamped: bit-identical to the separate BN, add and ReLU kernels, two dispatches fewer. Under f16, adding in f32
// and rounding once did not match: the compiler may drop the f32 -> f16 -> f32 round trip of the BN output.
@compute @workgroup_size({{CT}}, {{RL}})
fn stats_apply_add_relu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  fold_forward_stats(wid, lid);
  let c = wid.x * CT + lid.x;
  let C = p.channels;
  if (c >= C) { return; }
  let mean = sh_a[lid.x];
  let scale = sh_b[lid.x];
  let shift = sh_c[lid.x];
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let h = float((f32(x[i]) - mean) * scale + shift);
    out[i] = max(h + res[i], 0.0);
  }
}

// Backward sums, pass 1: partial = (Σ dy, Σ dy·(x - mean)) per block; y (the output) is read only with
// a fused ReLU.
@compute @workgroup_size({{CT}}, {{RL}})
fn grad_partial(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  let b = wid.y;
  let start = b * p.rows_per_block;
  let end = min(start + p.rows_per_block, p.rows);
  var sdy = 0.0;
  var sdx = 0.0;
  if (c < p.channels) {
    let mean = stats[c];
    let relu = fused_relu();
    for (var r = start + lid.y; r < end; r += RL) {
      let i = r * p.channels + c;
      var g = dy[i];
      if (relu && !(y[i] > 0.0)) { g = 0.0; }
      sdy += g;
      sdx += g * (f32(x[i]) - mean);
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
    partial[2u * b * p.channels + c] = a;
    partial[(2u * b + 1u) * p.channels + c] = d;
  }
}

// Backward sums, pass 2: (Σ dy, Σ dy·x̂) of channel c, the blocks added in block order.
fn fold_grads(c: u32) -> vec2f {
  var a = 0.0;
  var d = 0.0;
  for (var b = 0u; b < p.nblocks; b++) {
    a += partial[2u * b * p.channels + c];
    d += partial[(2u * b + 1u) * p.channels + c];
  }
  return vec2f(a, d * stats[p.channels + c]);
}

// Backward sums, pass 2, alone (when dx is not needed): dy_sum = Σ dy (= d bias), dy_xhat_sum = Σ dy·x̂ (= d weight).
@compute @workgroup_size(64)
fn grad_finalize(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.channels) { return; }
  let sums = fold_grads(c);
  dy_sum[c] = sums.x;
  dy_xhat_sum[c] = sums.y;
}

// The backward's pass 2 folded into the training dx pass, as in stats_apply: lane row 0 folds the partials of its
// channels into (Σdy, Σdy·x̂) in sh_a, sh_b, and workgroups of row 0 write dy_sum (= d bias) and dy_xhat_sum
// (= d weight). Shared by dx_train and dx_train_add_relu.
fn fold_backward_sums(wid: vec3u, lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (lid.y == 0u && c < p.channels) {
    let sums = fold_grads(c);
    sh_a[lid.x] = sums.x;
    sh_b[lid.x] = sums.y;
    if (wid.y == 0u) {
      dy_sum[c] = sums.x;
      dy_xhat_sum[c] = sums.y;
    }
  }
  workgroupBarrier();
}

// What the training dx of one channel needs: its stats and the folded sums (after fold_backward_sums).
struct DxChannel {
  mean: f32,
  invstd: f32,
  scale: f32,
  sum_dy: f32,
  sum_dy_xhat: f32,
}

fn dx_channel(c: u32, lane: u32) -> DxChannel {
  let C = p.channels;
  return DxChannel(stats[c], stats[C + c], stats[2u * C + c], sh_a[lane], sh_b[lane]);
}

// Training dx = scale · (g - (Σdy + x̂ · Σdy·x̂) / rows) of an element xi whose BN output receives the gradient g.
fn dx_element(k: DxChannel, xi: f32, g: f32) -> f32 {
  let xhat = (xi - k.mean) * k.invstd;
  return k.scale * (g - (k.sum_dy + xhat * k.sum_dy_xhat) / f32(p.rows));
}

// Training dx; y (the output) is read only with a fused ReLU.
@compute @workgroup_size({{CT}}, {{RL}})
fn dx_train(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  fold_backward_sums(wid, lid);
  let c = wid.x * CT + lid.x;
  let C = p.channels;
  if (c >= C) { return; }
  let k = dx_channel(c, lid.x);
  let relu = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    var g = dy[i];
    if (relu && !(y[i] > 0.0)) { g = 0.0; }
    dx[i] = dx_element(k, f32(x[i]), g);
  }
}

// The backward of stats_apply_add_relu: dy masked where the block's output y is not positive (the ReLU) is both
// the residual's gradient (dres, what the separate ReLU backward wrote) and the batch norm's output gradient.
@compute @workgroup_size({{CT}}, {{RL}})
fn dx_train_add_relu(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  fold_backward_sums(wid, lid);
  let c = wid.x * CT + lid.x;
  let C = p.channels;
  if (c >= C) { return; }
  let k = dx_channel(c, lid.x);
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * C + c;
    let g = select(0.0, dy[i], y[i] > 0.0);
    dres[i] = g;
    dx[i] = dx_element(k, f32(x[i]), g);
  }
}

// Eval dx = scale · dy; y (the output) is read only with a fused ReLU.
@compute @workgroup_size({{CT}}, {{RL}})
fn dx_eval(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c = wid.x * CT + lid.x;
  if (c >= p.channels) { return; }
  let scale = stats[2u * p.channels + c];
  let relu = fused_relu();
  for (var r = wid.y * RL + lid.y; r < p.rows; r += RL * nwg.y) {
    let i = r * p.channels + c;
    var g = dy[i];
    if (relu && !(y[i] > 0.0)) { g = 0.0; }
    dx[i] = g * scale;
  }
}
