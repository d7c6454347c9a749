// ODC memory kernels: row normalisation, the batch momentum update and its scatter, gathers, the label
// histogram, loss weights, deterministic fixed-point centroid means, ordered stream compaction and
// deterministic two-stage sums. Used by src/odc/memory.ts, src/odc/kmeans.ts and src/odc/split.ts.
//
// 1-D launches use 256-wide workgroups on a 2-D grid (grid() in src/gpu/device.ts); the linear id is
// (wid.x + wid.y * nwg.x) * 256 + lid.
//
// Determinism: nothing here depends on scheduling. Float sums run in a fixed order inside one thread
// or a fixed tree; the only atomics are integer ones (histogram counts, 64-bit fixed-point sums built
// from two u32 words, error flags), and integer addition is associative.

//!include odc_params

const EPS_NORM: f32 = 1e-10;
// Fixed-point scale of the centroid sums: |x| <= ~1 (unit rows) gives |x * 2^24| <= 2^24 in an i32.
const FIX_SCALE: f32 = 16777216.0;
const FIX_INV: f32 = 5.9604644775390625e-8; // 2^-24
const CHUNK: u32 = 4096u;                   // elements per workgroup in compaction and sums (256 x 16)

//!include grid
//!include workgroup_sum

fn chunk_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// ---------------------------------------------------------------------------------------------------
// normalize_rows: dst[r] = src[r] / (||src[r]|| + 1e-10); n rows of d.
@group(0) @binding(1) var<storage, read> nr_src: array<f32>;
@group(0) @binding(2) var<storage, read_write> nr_dst: array<f32>;

@compute @workgroup_size(256)
fn normalize_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let base = r * p.d;
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = nr_src[base + j]; s += v * v; }
  let inv = 1.0 / (sqrt(s) + EPS_NORM);
  for (var j = 0u; j < p.d; j++) { nr_dst[base + j] = nr_src[base + j] * inv; }
}

// ---------------------------------------------------------------------------------------------------
// momentum: one thread per batch row b (n = batch, k = memory rows, f0 = momentum m).
//   fresh = f[b] / (||f[b]|| + eps); mix = (1 - m) * bank[idx[b]] + m * fresh; out[b] = mix / (||mix|| + eps)
//   winner[b] = 1 iff b is the LAST occurrence of idx[b] in the batch (duplicate rule: last one wins).
// Out-of-range indices: winner 0, out row 0, and status[0] counts them.
@group(0) @binding(1) var<storage, read> mo_idx: array<u32>;
@group(0) @binding(2) var<storage, read> mo_f: array<f32>;
@group(0) @binding(3) var<storage, read> mo_bank: array<f32>;
@group(0) @binding(4) var<storage, read_write> mo_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> mo_winner: array<u32>;
@group(0) @binding(6) var<storage, read_write> mo_status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn momentum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n) { return; }
  let i = mo_idx[b];
  let ob = b * p.d;
  if (i >= p.k) {
    atomicAdd(&mo_status[0], 1u);
    mo_winner[b] = 0u;
    for (var j = 0u; j < p.d; j++) { mo_out[ob + j] = 0.0; }
    return;
  }
  var last = 1u;
  for (var q = b + 1u; q < p.n; q++) {
    if (mo_idx[q] == i) { last = 0u; break; }
  }
  mo_winner[b] = last;
  var sf = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = mo_f[ob + j]; sf += v * v; }
  let invf = 1.0 / (sqrt(sf) + EPS_NORM);
  let m = p.f0;
  let ib = i * p.d;
  var sm = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let v = (1.0 - m) * mo_bank[ib + j] + m * (mo_f[ob + j] * invf);
    mo_out[ob + j] = v;
    sm += v * v;
  }
  let invm = 1.0 / (sqrt(sm) + EPS_NORM);
  for (var j = 0u; j < p.d; j++) { mo_out[ob + j] = mo_out[ob + j] * invm; }
}

// count_changes: status-free; count[0] += #{b : idx[b] valid and newl[b] != labels[idx[b]]} (n = batch, k = N).
@group(0) @binding(1) var<storage, read> cc_idx: array<u32>;
@group(0) @binding(2) var<storage, read> cc_new: array<u32>;
@group(0) @binding(3) var<storage, read> cc_labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> cc_count: array<atomic<u32>>;

@compute @workgroup_size(256)
fn count_changes(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n) { return; }
  let i = cc_idx[b];
  if (i < p.k && cc_new[b] != cc_labels[i]) { atomicAdd(&cc_count[0], 1u); }
}

// scatter_update: winners write their row and label back (n = batch, k = N).
@group(0) @binding(1) var<storage, read> su_idx: array<u32>;
@group(0) @binding(2) var<storage, read> su_rows: array<f32>;
@group(0) @binding(3) var<storage, read> su_new: array<u32>;
@group(0) @binding(4) var<storage, read> su_winner: array<u32>;
@group(0) @binding(5) var<storage, read_write> su_bank: array<f32>;
@group(0) @binding(6) var<storage, read_write> su_labels: array<u32>;

@compute @workgroup_size(256)
fn scatter_update(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n || su_winner[b] == 0u) { return; }
  let i = su_idx[b];
  if (i >= p.k) { return; }
  for (var j = 0u; j < p.d; j++) { su_bank[i * p.d + j] = su_rows[b * p.d + j]; }
  su_labels[i] = su_new[b];
}

// ---------------------------------------------------------------------------------------------------
// gather_u32: out[r] = src[idx[r]] (n = count, k = length of src); out-of-range -> 0 and status[0]++.
@group(0) @binding(1) var<storage, read> gu_idx: array<u32>;
@group(0) @binding(2) var<storage, read> gu_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> gu_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> gu_status: array<atomic<u32>>;

@compute @workgroup_size(256)
fn gather_u32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let i = gu_idx[r];
  if (i >= p.k) {
    gu_out[r] = 0u;
    atomicAdd(&gu_status[0], 1u);
    return;
  }
  gu_out[r] = gu_src[i];
}

// gather_rows: out[r, :] = src[idx[r], :] (n = count, d = width).
@group(0) @binding(1) var<storage, read> gr_idx: array<u32>;
@group(0) @binding(2) var<storage, read> gr_src: array<f32>;
@group(0) @binding(3) var<storage, read_write> gr_out: array<f32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let r = t / p.d;
  let j = t % p.d;
  gr_out[t] = gr_src[gr_idx[r] * p.d + j];
}

// scatter_labels: labels[idx[r]] = vals[r] (n = count).
@group(0) @binding(1) var<storage, read> sl_idx: array<u32>;
@group(0) @binding(2) var<storage, read> sl_vals: array<u32>;
@group(0) @binding(3) var<storage, read_write> sl_labels: array<u32>;

@compute @workgroup_size(256)
fn scatter_labels(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  sl_labels[sl_idx[r]] = sl_vals[r];
}

// fill_u32: buf[i] = a (n = count).
@group(0) @binding(1) var<storage, read_write> fu_buf: array<u32>;

@compute @workgroup_size(256)
fn fill_u32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { fu_buf[i] = p.a; }
}

// histogram: hist[labels[i]] += 1 (n = N, k = K; labels >= K are counted in status-free slot-less way: skipped).
@group(0) @binding(1) var<storage, read> hi_labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> hi_hist: array<atomic<u32>>;

@compute @workgroup_size(256)
fn histogram(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let c = hi_labels[i];
  if (c < p.k) { atomicAdd(&hi_hist[c], 1u); }
}

// ---------------------------------------------------------------------------------------------------
// weights (one workgroup): w[c] = (hist[c] + f1)^(-f0), then w /= sum(w). k = K.
@group(0) @binding(1) var<storage, read> we_hist: array<u32>;
@group(0) @binding(2) var<storage, read_write> we_w: array<f32>;

@compute @workgroup_size(256)
fn weights(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var c = lid; c < p.k; c += 256u) {
    let w = pow(f32(we_hist[c]) + p.f1, -p.f0);
    we_w[c] = w;
    s += w;
  }
  let inv = 1.0 / workgroup_sum(lid, s);
  for (var c = lid; c < p.k; c += 256u) { we_w[c] = we_w[c] * inv; }
}

// ---------------------------------------------------------------------------------------------------
// Deterministic segmented means by label (centroids): 64-bit fixed-point sums in two u32 words per
// element, scale 2^24, built with integer atomics (order-independent), then divided by the counts.
//
// acc_zero: for j < n (clusters listed in list[] when flags & 1, else cluster j): zero acc rows and counts.
@group(0) @binding(1) var<storage, read> az_list: array<u32>;
@group(0) @binding(2) var<storage, read_write> az_acc: array<u32>;
@group(0) @binding(3) var<storage, read_write> az_cnt: array<u32>;

@compute @workgroup_size(256)
fn acc_zero(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let j = t / p.d;
  let dd = t % p.d;
  let c = select(j, az_list[j], (p.flags & 1u) != 0u);
  az_acc[2u * (c * p.d + dd)] = 0u;
  az_acc[2u * (c * p.d + dd) + 1u] = 0u;
  if (dd == 0u) { az_cnt[c] = 0u; }
}

// acc_rows: for r < n, row = idx[r] if flags & 1 else r; c = lab[r]; acc[c] += x[row] (fixed point), cnt[c] += 1.
@group(0) @binding(1) var<storage, read> ar_x: array<f32>;
@group(0) @binding(2) var<storage, read> ar_idx: array<u32>;
@group(0) @binding(3) var<storage, read> ar_lab: array<u32>;
@group(0) @binding(4) var<storage, read_write> ar_acc: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> ar_cnt: array<atomic<u32>>;

@compute @workgroup_size(256)
fn acc_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let r = t / p.d;
  let dd = t % p.d;
  let row = select(r, ar_idx[r], (p.flags & 1u) != 0u);
  let c = ar_lab[r];
  if (c >= p.k) { return; }
  let v = i32(round(ar_x[row * p.d + dd] * FIX_SCALE));
  let lo = bitcast<u32>(v);
  let slot = 2u * (c * p.d + dd);
  let old = atomicAdd(&ar_acc[slot], lo);
  let carry = select(0u, 1u, old + lo < old);
  let hi = select(0u, 0xffffffffu, v < 0) + carry;
  if (hi != 0u) { atomicAdd(&ar_acc[slot + 1u], hi); }
  if (dd == 0u) { atomicAdd(&ar_cnt[c], 1u); }
}

// acc_finalize: for listed (flags & 1) or all clusters with cnt > 0: out[c] = sum / cnt; others keep out[c].
@group(0) @binding(1) var<storage, read> af_list: array<u32>;
@group(0) @binding(2) var<storage, read> af_acc: array<u32>;
@group(0) @binding(3) var<storage, read> af_cnt: array<u32>;
@group(0) @binding(4) var<storage, read_write> af_out: array<f32>;

@compute @workgroup_size(256)
fn acc_finalize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let j = t / p.d;
  let dd = t % p.d;
  let c = select(j, af_list[j], (p.flags & 1u) != 0u);
  let cnt = af_cnt[c];
  if (cnt == 0u) { return; }
  var lo = af_acc[2u * (c * p.d + dd)];
  var hi = af_acc[2u * (c * p.d + dd) + 1u];
  let neg = (hi & 0x80000000u) != 0u;
  if (neg) {
    // two's complement negation of the 64-bit value, so the magnitude converts without cancellation
    lo = ~lo + 1u;
    hi = ~hi + select(0u, 1u, lo == 0u);
  }
  let mag = f32(hi) * 4294967296.0 + f32(lo);
  let mean = (mag * FIX_INV) / f32(cnt);
  af_out[c * p.d + dd] = select(mean, -mean, neg);
}

// ---------------------------------------------------------------------------------------------------
// Ordered stream compaction of indices i < n with pred(i): flags 0: labels[i] == a; flags 1: mask[labels[i]] != 0.
// compact_count: one workgroup per CHUNK, cnt[chunk] = #pred. compact_scan: one workgroup, exclusive
// prefix over the chunk counts (n = #chunks) into offs, total into offs[n]. compact_write: writes the
// indices in ascending order.
@group(0) @binding(1) var<storage, read> cp_labels: array<u32>;
@group(0) @binding(2) var<storage, read> cp_mask: array<u32>;
@group(0) @binding(3) var<storage, read_write> cp_cnt: array<u32>;
@group(0) @binding(3) var<storage, read> cp_offs: array<u32>;
@group(0) @binding(4) var<storage, read_write> cp_out: array<u32>;

var<workgroup> red_u: array<u32, 256>;

fn cp_pred(i: u32) -> bool {
  if (i >= p.n) { return false; }
  let c = cp_labels[i];
  if (p.flags == 0u) { return c == p.a; }
  return c < p.k && cp_mask[c] != 0u;
}

@compute @workgroup_size(256)
fn compact_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ch = chunk_index(wid, nwg);
  let base = ch * CHUNK + lid * 16u;
  var s = 0u;
  for (var q = 0u; q < 16u; q++) { if (cp_pred(base + q)) { s++; } }
  red_u[lid] = s;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h >>= 1u) {
    if (lid < h) { red_u[lid] = red_u[lid] + red_u[lid + h]; }
    workgroupBarrier();
  }
  if (lid == 0u) { cp_cnt[ch] = red_u[0]; }
}

@group(0) @binding(1) var<storage, read_write> cs_cnt: array<u32>;

// In place: cs_cnt[0..n) becomes the exclusive prefix, cs_cnt[n] the total.
@compute @workgroup_size(1)
fn compact_scan() {
  var s = 0u;
  for (var j = 0u; j < p.n; j++) {
    let v = cs_cnt[j];
    cs_cnt[j] = s;
    s += v;
  }
  cs_cnt[p.n] = s;
}

@compute @workgroup_size(256)
fn compact_write(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ch = chunk_index(wid, nwg);
  let base = ch * CHUNK + lid * 16u;
  var s = 0u;
  for (var q = 0u; q < 16u; q++) { if (cp_pred(base + q)) { s++; } }
  red_u[lid] = s;
  workgroupBarrier();
  // exclusive scan of the 256 thread counts (Hillis-Steele on an inclusive copy)
  for (var h = 1u; h < 256u; h <<= 1u) {
    var v = red_u[lid];
    if (lid >= h) { v += red_u[lid - h]; }
    workgroupBarrier();
    red_u[lid] = v;
    workgroupBarrier();
  }
  var o = cp_offs[ch] + red_u[lid] - s;
  for (var q = 0u; q < 16u; q++) {
    if (cp_pred(base + q)) {
      cp_out[o] = base + q;
      o++;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Deterministic sums. sum_partial: one workgroup per CHUNK of v[i] = flags 0: x[i]; flags 1: x[i] - 2 y[i]
// (squared distance from ||x||^2 and the best score x.c - ||c||^2/2); part[chunk] = sum.
// sum_final (one workgroup): out[a] = sum of part[0..n).
@group(0) @binding(1) var<storage, read> sp_x: array<f32>;
@group(0) @binding(2) var<storage, read> sp_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> sp_part: array<f32>;

@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ch = chunk_index(wid, nwg);
  let base = ch * CHUNK + lid * 16u;
  var s = 0.0;
  for (var q = 0u; q < 16u; q++) {
    let i = base + q;
    if (i < p.n) {
      var v = sp_x[i];
      if (p.flags == 1u) { v = max(v - 2.0 * sp_y[i], 0.0); }
      s += v;
    }
  }
  let total = workgroup_sum(lid, s);
  if (lid == 0u) { sp_part[ch] = total; }
}

@group(0) @binding(1) var<storage, read> sf_part: array<f32>;
@group(0) @binding(2) var<storage, read_write> sf_out: array<f32>;

@compute @workgroup_size(256)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var j = lid; j < p.n; j += 256u) { s += sf_part[j]; }
  let total = workgroup_sum(lid, s);
  if (lid == 0u) { sf_out[p.a] = total; }
}

// row_norm2: out[r] = ||x[r]||^2 (n rows of d).
@group(0) @binding(1) var<storage, read> rn_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> rn_out: array<f32>;

@compute @workgroup_size(256)
fn row_norm2(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = rn_x[r * p.d + j]; s += v * v; }
  rn_out[r] = s;
}
