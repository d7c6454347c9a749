// Weighted softmax cross-entropy, reduced as the mean over row chunks of per-chunk weighted means
// (src/ops/loss.ts). Forward: ce_rows (one 64-thread workgroup per row) then ce_reduce (one workgroup).
// Backward: ce_coef (one workgroup) then ce_backward (one workgroup per row).
//
// A label outside [0, cols) is never used as an index: its row's weight and CE become NaN, so the loss
// and that row's gradient are NaN (a visible failure without a host readback).

// Parameters and bindings: src/kernels/loss.ts.
// ce_backward: logits @1, labels @2 as above

var<workgroup> red64: array<f32, 64>;
var<workgroup> red256: array<f32, 256>;
var<workgroup> red256b: array<f32, 256>;

fn nan_f32() -> f32 {
  let bits = 0x7fc00000u;
  return bitcast<f32>(bits);
}

fn row_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

fn max64(lid: u32, v: f32) -> f32 {
  red64[lid] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) { red64[lid] = max(red64[lid], red64[lid + s]); }
    workgroupBarrier();
  }
  let r = red64[0];
  workgroupBarrier();
  return r;
}

fn sum64(lid: u32, v: f32) -> f32 {
  red64[lid] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) { red64[lid] = red64[lid] + red64[lid + s]; }
    workgroupBarrier();
  }
  let r = red64[0];
  workgroupBarrier();
  return r;
}

// Sums two values over 256 threads at once (fixed tree order).
fn sum256x2(lid: u32, a: f32, b: f32) -> vec2f {
  red256[lid] = a;
  red256b[lid] = b;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red256[lid] = red256[lid] + red256[lid + s];
      red256b[lid] = red256b[lid] + red256b[lid + s];
    }
    workgroupBarrier();
  }
  let r = vec2f(red256[0], red256b[0]);
  workgroupBarrier();
  return r;
}

// Weight of row i's label: weights[y], 1 when unweighted, NaN when y is out of range.
fn label_weight(i: u32) -> f32 {
  let y = labels[i];
  if (y >= p.cols) { return nan_f32(); }
  if (p.weighted == 0u) { return 1.0; }
  return weights[y];
}

// Row maximum and sum of exp(x - max) over the row (max-subtracted, so exp never overflows).
fn row_stats(row: u32, lid: u32) -> vec2f {
  let base = row * p.cols;
  var m = -3.4028234663852886e38;
  for (var k = lid; k < p.cols; k = k + 64u) { m = max(m, logits[base + k]); }
  let rmax = max64(lid, m);
  var s = 0.0;
  for (var k = lid; k < p.cols; k = k + 64u) { s = s + exp(logits[base + k] - rmax); }
  let rsum = sum64(lid, s);
  return vec2f(rmax, rsum);
}

@compute @workgroup_size(64)
fn ce_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nwg);
  if (row >= p.rows) { return; }
  let st = row_stats(row, lid);
  if (lid == 0u) {
    let y = labels[row];
    let w = label_weight(row);
    var ce = nan_f32();
    if (y < p.cols) { ce = st.x + log(st.y) - logits[row * p.cols + y]; }
    terms[2u * row] = w * ce;
    terms[2u * row + 1u] = w;
  }
}

@compute @workgroup_size(256)
fn ce_reduce(@builtin(local_invocation_index) lid: u32) {
  let nchunks = (p.rows + p.chunk - 1u) / p.chunk;
  var acc = 0.0;
  for (var c = 0u; c < nchunks; c = c + 1u) {
    let lo = c * p.chunk;
    let hi = min(lo + p.chunk, p.rows);
    var num = 0.0;
    var den = 0.0;
    for (var i = lo + lid; i < hi; i = i + 256u) {
      num = num + terms[2u * i];
      den = den + terms[2u * i + 1u];
    }
    let t = sum256x2(lid, num, den);
    acc = acc + t.x / t.y;
  }
  if (lid == 0u) { loss[0] = acc / f32(nchunks); }
}

// coef[i] = gout[0] * w_i / (S_c * nchunks), S_c = sum of w over row i's chunk.
@compute @workgroup_size(256)
fn ce_coef(@builtin(local_invocation_index) lid: u32) {
  let nchunks = (p.rows + p.chunk - 1u) / p.chunk;
  let g = gout[0];
  for (var c = 0u; c < nchunks; c = c + 1u) {
    let lo = c * p.chunk;
    let hi = min(lo + p.chunk, p.rows);
    var den = 0.0;
    for (var i = lo + lid; i < hi; i = i + 256u) { den = den + label_weight(i); }
    let t = sum256x2(lid, den, 0.0);
    let scale = g / (t.x * f32(nchunks));
    for (var i = lo + lid; i < hi; i = i + 256u) { coef[i] = scale * label_weight(i); }
  }
}

// grad[i, k] = coef[i] * (softmax(x_i)[k] - [k == y_i]).
@compute @workgroup_size(64)
fn ce_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nwg);
  if (row >= p.rows) { return; }
  let st = row_stats(row, lid);
  let y = labels[row];
  let c = coef[row];
  let inv = 1.0 / st.y;
  let base = row * p.cols;
  for (var k = lid; k < p.cols; k = k + 64u) {
    let sm = exp(logits[base + k] - st.x) * inv;
    grad[base + k] = c * (sm - select(0.0, 1.0, k == y));
  }
}
