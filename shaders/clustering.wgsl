// Clustering primitives (src/ops/clustering.ts): the fused nearest-centroid GEMM + row argmax (tiled,
// never materialises M x K), centroid biases for L2 / masked dot-product assignment, the label
// histogram, deterministic fixed-point centroid means, ordered stream compaction, deterministic
// two-stage sums and row norms. Parameters and bindings (named per entry point): src/kernels/clustering.ts.
//
// 1-D launches use 256-wide workgroups on a 2-D grid (grid() in src/gpu/device.ts).
// Determinism: nothing here depends on scheduling. Float sums run in a fixed order inside one thread
// or a fixed tree; the only atomics are integer ones (histogram counts, 64-bit fixed-point sums built
// from two u32 words), and integer addition is associative.

//!include grid
//!include workgroup_sum

const NEG_BIG: f32 = -3.0e38;

// ---------------------------------------------------------------------------------------------------
// nearest: for each of n rows x (row r is x[idx[r]] when gather), the argmax over c < k of
//   score(c) = x . C[c] + (has_bias ? bias[c] : 0)
// ties to the lowest c. labels[r] = argmax; scores[r] = max when write_scores.
// L2 nearest centroid: bias = -||c||^2 / 2. Dot product (ODC relabel): no bias. Masked: bias -3e38.
// Launch: x = 64-row tiles, y = centroid split (centroids [y*split_size, min(k, (y+1)*split_size)));
// `partials` writes per-split partials (label/score at [y*n + r]) for nearest_merge.
// Tiles: 64 rows x 64 centroids per step, d in chunks of 16 staged in workgroup memory; each of the
// 256 threads owns 4 rows x 4 centroids (strided by 16). Every dot product is summed over d in order
// 0..d-1 by one thread, so results do not depend on the tiling or the schedule.

const TM: u32 = 64u;
const TN: u32 = 64u;
const TD: u32 = 16u;

var<workgroup> xs: array<f32, 1024>;   // [TD][TM]
var<workgroup> cs: array<f32, 1024>;   // [TD][TN]
var<workgroup> red_s: array<f32, 1024>; // [TM][16]
var<workgroup> red_i: array<u32, 1024>;

@compute @workgroup_size(256)
fn nearest(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row0 = wid.x * TM;
  let c_lo = wid.y * p.split_size;
  let c_hi = min(p.k, c_lo + p.split_size);
  if (row0 >= p.n) { return; }
  let tr = lid / 16u;
  let tc = lid % 16u;
  let gather = p.gather != 0u;
  let use_bias = p.has_bias != 0u;
  var best_s = array<f32, 4>(NEG_BIG * 1.1, NEG_BIG * 1.1, NEG_BIG * 1.1, NEG_BIG * 1.1);
  var best_i = array<u32, 4>(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  for (var c0 = c_lo; c0 < c_hi; c0 += TN) {
    var acc: array<f32, 16>;
    for (var z = 0u; z < 16u; z++) { acc[z] = 0.0; }
    for (var d0 = 0u; d0 < p.d; d0 += TD) {
      for (var q = 0u; q < 4u; q++) {
        let e = lid + 256u * q;
        let r = e / TD;
        let dd = e % TD;
        let gd = d0 + dd;
        let gr = row0 + r;
        var v = 0.0;
        if (gr < p.n && gd < p.d) {
          let src = select(gr, idx[gr], gather);
          v = x[src * p.d + gd];
        }
        xs[dd * TM + r] = v;
        let gc = c0 + r;
        var w = 0.0;
        if (gc < c_hi && gd < p.d) { w = centroids[gc * p.d + gd]; }
        cs[dd * TN + r] = w;
      }
      workgroupBarrier();
      let dmax = min(TD, p.d - d0);
      for (var dd = 0u; dd < dmax; dd++) {
        let x0 = xs[dd * TM + tr * 4u];
        let x1 = xs[dd * TM + tr * 4u + 1u];
        let x2 = xs[dd * TM + tr * 4u + 2u];
        let x3 = xs[dd * TM + tr * 4u + 3u];
        for (var j = 0u; j < 4u; j++) {
          let cv = cs[dd * TN + tc + 16u * j];
          acc[j] = acc[j] + x0 * cv;
          acc[4u + j] = acc[4u + j] + x1 * cv;
          acc[8u + j] = acc[8u + j] + x2 * cv;
          acc[12u + j] = acc[12u + j] + x3 * cv;
        }
      }
      workgroupBarrier();
    }
    for (var j = 0u; j < 4u; j++) {
      let col = c0 + tc + 16u * j;
      if (col < c_hi) {
        var bv = 0.0;
        if (use_bias) { bv = bias[col]; }
        for (var i = 0u; i < 4u; i++) {
          let s = acc[i * 4u + j] + bv;
          if (s > best_s[i] || (s == best_s[i] && col < best_i[i])) {
            best_s[i] = s;
            best_i[i] = col;
          }
        }
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    red_s[(tr * 4u + i) * 16u + tc] = best_s[i];
    red_i[(tr * 4u + i) * 16u + tc] = best_i[i];
  }
  workgroupBarrier();
  if (lid < TM) {
    let gr = row0 + lid;
    if (gr < p.n) {
      var bs = red_s[lid * 16u];
      var bi = red_i[lid * 16u];
      for (var t = 1u; t < 16u; t++) {
        let s = red_s[lid * 16u + t];
        let ii = red_i[lid * 16u + t];
        if (s > bs || (s == bs && ii < bi)) {
          bs = s;
          bi = ii;
        }
      }
      store_best(gr, wid.y, bs, bi);
    }
  }
}

// Writes one row's result: directly, or as split `split`'s partial (`partials`) for nearest_merge.
fn store_best(r: u32, split: u32, bs: f32, bi: u32) {
  if (p.partials != 0u) {
    labels[split * p.n + r] = bi;
    scores[split * p.n + r] = bs;
  } else {
    labels[r] = bi;
    if (p.write_scores != 0u) { scores[r] = bs; }
  }
}

// nearest_regs: the same contract as `nearest` without workgroup memory or barriers (CPU adapters such
// as lavapipe run those slowly): each invocation owns 4 rows and walks its split's centroids 4 at a
// time in vec4 registers, in ascending order with a strict > (so ties keep the lowest index).
@compute @workgroup_size(64)
fn nearest_regs(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r0 = (wid.x * 64u + lid) * 4u;
  if (r0 >= p.n) { return; }
  let c_lo = wid.y * p.split_size;
  let c_hi = min(p.k, c_lo + p.split_size);
  let gather = p.gather != 0u;
  let use_bias = p.has_bias != 0u;
  var base: array<u32, 4>;
  for (var i = 0u; i < 4u; i++) {
    let r = min(r0 + i, p.n - 1u);
    base[i] = select(r, idx[r], gather) * p.d;
  }
  let b0 = base[0];
  let b1 = base[1];
  let b2 = base[2];
  let b3 = base[3];
  var s0 = NEG_BIG * 1.1;
  var s1 = NEG_BIG * 1.1;
  var s2 = NEG_BIG * 1.1;
  var s3 = NEG_BIG * 1.1;
  var i0 = 0xffffffffu;
  var i1 = 0xffffffffu;
  var i2 = 0xffffffffu;
  var i3 = 0xffffffffu;
  for (var c0 = c_lo; c0 < c_hi; c0 += 4u) {
    let q0 = c0 * p.d;
    let q1 = min(c0 + 1u, c_hi - 1u) * p.d;
    let q2 = min(c0 + 2u, c_hi - 1u) * p.d;
    let q3 = min(c0 + 3u, c_hi - 1u) * p.d;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var j = 0u; j < p.d; j++) {
      let cv = vec4<f32>(centroids[q0 + j], centroids[q1 + j], centroids[q2 + j], centroids[q3 + j]);
      a0 += x[b0 + j] * cv;
      a1 += x[b1 + j] * cv;
      a2 += x[b2 + j] * cv;
      a3 += x[b3 + j] * cv;
    }
    for (var t = 0u; t < 4u; t++) {
      let col = c0 + t;
      if (col < c_hi) {
        var bv = 0.0;
        if (use_bias) { bv = bias[col]; }
        let v0 = a0[t] + bv;
        let v1 = a1[t] + bv;
        let v2 = a2[t] + bv;
        let v3 = a3[t] + bv;
        if (v0 > s0) { s0 = v0; i0 = col; }
        if (v1 > s1) { s1 = v1; i1 = col; }
        if (v2 > s2) { s2 = v2; i2 = col; }
        if (v3 > s3) { s3 = v3; i3 = col; }
      }
    }
  }
  store_best(r0, wid.y, s0, i0);
  if (r0 + 1u < p.n) { store_best(r0 + 1u, wid.y, s1, i1); }
  if (r0 + 2u < p.n) { store_best(r0 + 2u, wid.y, s2, i2); }
  if (r0 + 3u < p.n) { store_best(r0 + 3u, wid.y, s3, i3); }
}

// nearest_merge: combines the split partials (split s covers lower centroid ids than s + 1): the highest
// score, the earlier split on ties (= the lowest index). n rows.

@compute @workgroup_size(256)
fn nearest_merge(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  var bs = part_scores[r];
  var bi = part_labels[r];
  for (var s = 1u; s < p.splits; s++) {
    let v = part_scores[s * p.n + r];
    if (v > bs) {
      bs = v;
      bi = part_labels[s * p.n + r];
    }
  }
  labels[r] = bi;
  if (p.write_scores != 0u) { scores[r] = bs; }
}

// ---------------------------------------------------------------------------------------------------
// l2_bias: bias[c] = -||C[c]||^2 / 2 (k centroids of d).

@compute @workgroup_size(256)
fn l2_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = linear_index(wid, nwg, lid);
  if (c >= p.k) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = centroids[c * p.d + j]; s += v * v; }
  bias[c] = -0.5 * s;
}

// mask_bias: bias[c] = mask[c] != 0 ? -3e38 : 0 (excluded clusters can never win while one is allowed).

@compute @workgroup_size(256)
fn mask_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = linear_index(wid, nwg, lid);
  if (c >= p.k) { return; }
  bias[c] = select(0.0, NEG_BIG, mask[c] != 0u);
}
// Fixed-point scale of the centroid sums: |x| <= ~1 (unit rows) gives |x * 2^24| <= 2^24 in an i32.
const FIX_SCALE: f32 = 16777216.0;
const FIX_INV: f32 = 5.9604644775390625e-8; // 2^-24
const CHUNK: u32 = 4096u;                   // elements per workgroup in compaction and sums (256 x 16)

fn chunk_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// gather_rows: out[r, :] = src[idx[r], :] (n = count, d = width).

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let r = t / p.d;
  let j = t % p.d;
  out[t] = src[idx[r] * p.d + j];
}

// gather_rows_range: as gather_rows from one shard holding rows [row0, row0 + row_count) of a sharded matrix;
// rows of other shards are left alone (each shard's launch writes its own).

@compute @workgroup_size(256)
fn gather_rows_range(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let r = t / p.d;
  let i = idx[r];
  if (i < p.row0 || i - p.row0 >= p.row_count) { return; }
  out[t] = src[(i - p.row0) * p.d + t % p.d];
}

// fill_u32: out[i] = value for i < n.

@compute @workgroup_size(256)
fn fill_u32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i < p.n) { out[i] = p.value; }
}

// histogram: hist[labels[i]] += 1 for i < n (labels >= k are skipped).

@compute @workgroup_size(256)
fn histogram(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let c = labels[i];
  if (c < p.k) { atomicAdd(&hist[c], 1u); }
}

// ---------------------------------------------------------------------------------------------------
// Deterministic segmented means by label (centroids): 64-bit fixed-point sums in two u32 words per
// element, scale 2^24, built with integer atomics (order-independent), then divided by the counts.
//
// acc_zero: for j < n (cluster list[j] when listed, else cluster j): zero acc rows and counts.

@compute @workgroup_size(256)
fn acc_zero(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let j = t / p.d;
  let dd = t % p.d;
  let c = select(j, list[j], p.listed != 0u);
  acc[2u * (c * p.d + dd)] = 0u;
  acc[2u * (c * p.d + dd) + 1u] = 0u;
  if (dd == 0u) { counts[c] = 0u; }
}

// acc_rows: for r < n, row = idx[r] if gather else r; c = labels[r]; acc[c] += x[row] (fixed point), counts[c] += 1.

@compute @workgroup_size(256)
fn acc_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let r = t / p.d;
  let dd = t % p.d;
  let row = select(r, idx[r], p.gather != 0u);
  let c = labels[p.label_offset + r];
  if (c >= p.k) { return; }
  let v = i32(round(x[row * p.d + dd] * FIX_SCALE));
  let lo = bitcast<u32>(v);
  let slot = 2u * (c * p.d + dd);
  let old = atomicAdd(&acc[slot], lo);
  let carry = select(0u, 1u, old + lo < old);
  let hi = select(0u, 0xffffffffu, v < 0) + carry;
  if (hi != 0u) { atomicAdd(&acc[slot + 1u], hi); }
  if (dd == 0u) { atomicAdd(&counts[c], 1u); }
}

// acc_finalize: for the listed (or all) clusters with counts > 0: out[c] = sum / count; others keep out[c].

@compute @workgroup_size(256)
fn acc_finalize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = linear_index(wid, nwg, lid);
  if (t >= p.n * p.d) { return; }
  let j = t / p.d;
  let dd = t % p.d;
  let c = select(j, list[j], p.listed != 0u);
  let cnt = counts[c];
  if (cnt == 0u) { return; }
  var lo = acc[2u * (c * p.d + dd)];
  var hi = acc[2u * (c * p.d + dd) + 1u];
  let neg = (hi & 0x80000000u) != 0u;
  if (neg) {
    // two's complement negation of the 64-bit value, so the magnitude converts without cancellation
    lo = ~lo + 1u;
    hi = ~hi + select(0u, 1u, lo == 0u);
  }
  let mag = f32(hi) * 4294967296.0 + f32(lo);
  let mean = (mag * FIX_INV) / f32(cnt);
  out[c * p.d + dd] = select(mean, -mean, neg);
}

// ---------------------------------------------------------------------------------------------------
// Ordered stream compaction of indices i < n with pred(i): labels[i] == value, or (by_mask) mask[labels[i]] != 0.
// compact_count: one workgroup per CHUNK, counts[chunk] = #pred. compact_scan: one workgroup, exclusive
// prefix over the chunk counts (n = #chunks) in place, total into counts[n]. compact_write: writes the
// indices in ascending order.

var<workgroup> red_u: array<u32, 256>;

fn cp_pred(i: u32) -> bool {
  if (i >= p.n) { return false; }
  let c = labels[i];
  if (p.by_mask == 0u) { return c == p.value; }
  return c < p.k && mask[c] != 0u;
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
  if (lid == 0u) { counts[ch] = red_u[0]; }
}

// In place: counts[0..n) becomes the exclusive prefix, counts[n] the total.
@compute @workgroup_size(1)
fn compact_scan() {
  var s = 0u;
  for (var j = 0u; j < p.n; j++) {
    let v = counts[j];
    counts[j] = s;
    s += v;
  }
  counts[p.n] = s;
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
  var o = offsets[ch] + red_u[lid] - s;
  for (var q = 0u; q < 16u; q++) {
    if (cp_pred(base + q)) {
      out[o] = base + q;
      o++;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Deterministic sums. sum_partial: one workgroup per CHUNK of v[i] = x[i], or (squared_distance)
// max(x[i] - 2 y[i], 0) (squared distance from ||x||^2 and the best score x.c - ||c||^2/2); partial[chunk] = sum.
// sum_final (one workgroup): out[slot] = sum of partial[0..n).

@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ch = chunk_index(wid, nwg);
  let base = ch * CHUNK + lid * 16u;
  var s = 0.0;
  for (var q = 0u; q < 16u; q++) {
    let i = base + q;
    if (i < p.n) {
      var v = x[i];
      if (p.squared_distance != 0u) { v = max(v - 2.0 * y[i], 0.0); }
      s += v;
    }
  }
  let total = workgroup_sum(lid, s);
  if (lid == 0u) { partial[ch] = total; }
}

@compute @workgroup_size(256)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var j = lid; j < p.n; j += 256u) { s += partial[j]; }
  let total = workgroup_sum(lid, s);
  if (lid == 0u) { out[p.slot] = total; }
}

// row_norm2: out[r] = ||x[r]||^2 (n rows of d).

@compute @workgroup_size(256)
fn row_norm2(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = x[r * p.d + j]; s += v * v; }
  out[r] = s;
}
