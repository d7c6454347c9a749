// Row ops over [rows, cols] matrices (src/ops/rows.ts): L2 normalisation (forward/backward), argmax,
// gather/scatter of rows by a u32 index (deterministic: no atomics), and counting equal u32 entries.
// Index entries outside [0, count) are never used to address memory: gather writes a zero row, the
// gather backward and scatter ignore them.

// Parameters and bindings: src/kernels/rows.ts.

var<workgroup> red: array<f32, 64>;
var<workgroup> red2: array<f32, 64>;
var<workgroup> best_v: array<f32, 64>;
var<workgroup> best_i: array<u32, 64>;
var<workgroup> cnt: array<u32, 256>;

fn row_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

//!include grid

fn sum64x2(lid: u32, a: f32, b: f32) -> vec2f {
  red[lid] = a;
  red2[lid] = b;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
      red2[lid] = red2[lid] + red2[lid + s];
    }
    workgroupBarrier();
  }
  let r = vec2f(red[0], red2[0]);
  workgroupBarrier();
  return r;
}

// y = x / (||x|| + eps) per row.
// The divisor of a row of norm `norm` under the entry's epsilon rule: 'add' gives ||x|| + eps (ODC-SPEC's
// memory rule), 'clamp' max(||x||, eps) (PyTorch's F.normalize).
fn norm_divisor(norm: f32) -> f32 {
  if (p.eps_rule == EPS_RULE_CLAMP) { return max(norm, p.eps); }
  return norm + p.eps;
}

@compute @workgroup_size(64)
fn l2n_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var ss = 0.0;
  for (var k = lid; k < p.cols; k = k + 64u) { let v = x[base + k]; ss = ss + v * v; }
  let t = sum64x2(lid, ss, 0.0);
  let inv = 1.0 / norm_divisor(sqrt(t.x));
  for (var k = lid; k < p.cols; k = k + 64u) { y[base + k] = x[base + k] * inv; }
}

// l2n_serial: the same normalisation with one thread per row summing the squares in order over the
// row (the order the ODC memory's momentum update uses), 256 rows per workgroup.
@compute @workgroup_size(256)
fn l2n_serial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.rows) { return; }
  let base = r * p.cols;
  var s = 0.0;
  for (var j = 0u; j < p.cols; j++) { let v = x[base + j]; s += v * v; }
  let inv = 1.0 / norm_divisor(sqrt(s));
  for (var j = 0u; j < p.cols; j++) { y[base + j] = x[base + j] * inv; }
}

// gx = gy / (n + eps) - x * (gy . x) / (n (n + eps)^2), n = ||x||; the second term is 0 when n == 0.
@compute @workgroup_size(64)
fn l2n_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var ss = 0.0;
  var dot = 0.0;
  for (var k = lid; k < p.cols; k = k + 64u) {
    let v = x[base + k];
    ss = ss + v * v;
    dot = dot + v * gy[base + k];
  }
  let t = sum64x2(lid, ss, dot);
  let n = sqrt(t.x);
  let d = n + p.eps;
  let a = 1.0 / d;
  var b = 0.0;
  if (n > 0.0) { b = t.y / (n * d * d); }
  for (var k = lid; k < p.cols; k = k + 64u) { gx[base + k] = a * gy[base + k] - b * x[base + k]; }
}

fn is_nan(v: f32) -> bool {
  // Bit test: comparisons with NaN may be folded away by fast-math compilers.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// True when (v, i) beats (bv, bi): NaN beats every number (like torch.argmax), then larger values,
// then the lower index among equals (so the result is the first maximum, or the first NaN).
fn beats(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  let vn = is_nan(v);
  let bn = is_nan(bv);
  if (vn || bn) {
    if (vn && bn) { return i < bi; }
    return vn;
  }
  return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(64)
fn argmax_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nwg);
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var bv = -3.4028234663852886e38;
  var bi = 0xffffffffu;
  for (var k = lid; k < p.cols; k = k + 64u) {
    let v = x[base + k];
    if (bi == 0xffffffffu || beats(v, k, bv, bi)) { bv = v; bi = k; }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      let oi = best_i[lid + s];
      let mi = best_i[lid];
      if (oi != 0xffffffffu && (mi == 0xffffffffu || beats(best_v[lid + s], oi, best_v[lid], mi))) {
        best_v[lid] = best_v[lid + s];
        best_i[lid] = oi;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { amax[row] = min(best_i[0], p.cols - 1u); }
}

// gathered[b, d] = x[index[b], d], or 0 when index[b] >= count.
@compute @workgroup_size(256)
fn gather_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.rows * p.cols) { return; }
  let b = i / p.cols;
  let d = i % p.cols;
  let r = index[b];
  var v = 0.0;
  if (r < p.count) { v = x[r * p.cols + d]; }
  gathered[i] = v;
}

// flag[b] = 1 when idx[b] is in range and no earlier position holds the same index.
@compute @workgroup_size(256)
fn mark_first(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.rows) { return; }
  let r = idx[b];
  var f = select(0u, 1u, r < p.count);
  for (var j = 0u; j < b; j = j + 1u) {
    if (idx[j] == r) { f = 0u; break; }
  }
  flag[b] = f;
}

// flag[b] = 1 when idx[b] is in range and no later position holds the same index (last write wins).
@compute @workgroup_size(256)
fn mark_last(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.rows) { return; }
  let r = idx[b];
  var f = select(0u, 1u, r < p.count);
  for (var j = b + 1u; j < p.rows; j = j + 1u) {
    if (idx[j] == r) { f = 0u; break; }
  }
  flag[b] = f;
}

// For each first occurrence b of an index r: rowdst[r, d] = sum over b' >= b with index[b'] == r of
// rowsrc[b', d], in increasing b' (one writer per output row, fixed order: deterministic).
@compute @workgroup_size(256)
fn gather_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.rows * p.cols) { return; }
  let b = i / p.cols;
  if (owner[b] == 0u) { return; }
  let d = i % p.cols;
  let r = index[b];
  var acc = 0.0;
  for (var j = b; j < p.rows; j = j + 1u) {
    if (index[j] == r) { acc = acc + rowsrc[j * p.cols + d]; }
  }
  rowdst[r * p.cols + d] = acc;
}

// rowdst[index[b], d] = rowsrc[b, d] for the owning (last) occurrence b of each index.
@compute @workgroup_size(256)
fn scatter_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.rows * p.cols) { return; }
  let b = i / p.cols;
  if (owner[b] == 0u) { return; }
  let d = i % p.cols;
  rowdst[index[b] * p.cols + d] = rowsrc[i];
}

@compute @workgroup_size(256)
fn fill_u32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.count) { out[i] = 0u; }
}

// win[r] = 1 + the largest b with idx[b] == r (integer atomics: the result does not depend on order).
@compute @workgroup_size(256)
fn mark_winner(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.rows) { return; }
  let r = idx[b];
  if (r < p.count) { atomicMax(&win[r], b + 1u); }
}

// rowdst[index[b], d] = rowsrc[b, d] when b is the winner (last occurrence) of its destination row.
@compute @workgroup_size(256)
fn scatter_rows_win(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.rows * p.cols) { return; }
  let b = i / p.cols;
  let r = index[b];
  if (r >= p.count) { return; }
  if (win[r] != b + 1u) { return; }
  rowdst[r * p.cols + i % p.cols] = rowsrc[i];
}

// total[0] = number of positions k < count with ua[k] == ub[k]; one workgroup.
@compute @workgroup_size(256)
fn count_equal(@builtin(local_invocation_index) lid: u32) {
  var c = 0u;
  for (var k = lid; k < p.count; k = k + 256u) { c = c + select(0u, 1u, ua[k] == ub[k]); }
  cnt[lid] = c;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { cnt[lid] = cnt[lid] + cnt[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { total[0] = cnt[0]; }
}
