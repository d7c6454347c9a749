// Clustering kernels: the fused nearest-centroid GEMM + row argmax (tiled, never materialises M x K),
// centroid biases for L2 / masked dot-product assignment, faiss-style empty-cluster repair, and the
// small kernels of the GPU 2-means splitter. Used by src/odc/kmeans.ts, src/odc/split.ts, src/odc/memory.ts.

//!include odc_params

const NEG_BIG: f32 = -3.0e38;

//!include grid

// ---------------------------------------------------------------------------------------------------
// nearest: for each of n rows x (row r is x[idx[r]] when flags & 1), the argmax over c < k of
//   score(c) = x . C[c] + (flags & 2 ? bias[c] : 0)
// ties to the lowest c. label[r] = argmax; score[r] = max when flags & 4.
// L2 nearest centroid: bias = -||c||^2 / 2. Dot product (ODC relabel): no bias. Masked: bias -3e38.
// Launch: x = 64-row tiles, y = centroid split (centroids [y*a, min(k, (y+1)*a))); flags & 8 writes
// per-split partials (label/score at [y*n + r]) for nearest_merge.
// Tiles: 64 rows x 64 centroids per step, d in chunks of 16 staged in workgroup memory; each of the
// 256 threads owns 4 rows x 4 centroids (strided by 16). Every dot product is summed over d in order
// 0..d-1 by one thread, so results do not depend on the tiling or the schedule.
@group(0) @binding(1) var<storage, read> nx: array<f32>;
@group(0) @binding(2) var<storage, read> nidx: array<u32>;
@group(0) @binding(3) var<storage, read> ncen: array<f32>;
@group(0) @binding(4) var<storage, read> nbias: array<f32>;
@group(0) @binding(5) var<storage, read_write> nlabel: array<u32>;
@group(0) @binding(6) var<storage, read_write> nscore: array<f32>;

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
  let c_lo = wid.y * p.a;
  let c_hi = min(p.k, c_lo + p.a);
  if (row0 >= p.n) { return; }
  let tr = lid / 16u;
  let tc = lid % 16u;
  let gather = (p.flags & 1u) != 0u;
  let use_bias = (p.flags & 2u) != 0u;
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
          let src = select(gr, nidx[gr], gather);
          v = nx[src * p.d + gd];
        }
        xs[dd * TM + r] = v;
        let gc = c0 + r;
        var w = 0.0;
        if (gc < c_hi && gd < p.d) { w = ncen[gc * p.d + gd]; }
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
        if (use_bias) { bv = nbias[col]; }
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

// Writes one row's result: directly, or as split `split`'s partial (flags & 8) for nearest_merge.
fn store_best(r: u32, split: u32, bs: f32, bi: u32) {
  if ((p.flags & 8u) != 0u) {
    nlabel[split * p.n + r] = bi;
    nscore[split * p.n + r] = bs;
  } else {
    nlabel[r] = bi;
    if ((p.flags & 4u) != 0u) { nscore[r] = bs; }
  }
}

// nearest_regs: the same contract as `nearest` without workgroup memory or barriers (CPU adapters such
// as lavapipe run those slowly): each invocation owns 4 rows and walks its split's centroids 4 at a
// time in vec4 registers, in ascending order with a strict > (so ties keep the lowest index).
@compute @workgroup_size(64)
fn nearest_regs(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r0 = (wid.x * 64u + lid) * 4u;
  if (r0 >= p.n) { return; }
  let c_lo = wid.y * p.a;
  let c_hi = min(p.k, c_lo + p.a);
  let gather = (p.flags & 1u) != 0u;
  let use_bias = (p.flags & 2u) != 0u;
  var base: array<u32, 4>;
  for (var i = 0u; i < 4u; i++) {
    let r = min(r0 + i, p.n - 1u);
    base[i] = select(r, nidx[r], gather) * p.d;
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
      let cv = vec4<f32>(ncen[q0 + j], ncen[q1 + j], ncen[q2 + j], ncen[q3 + j]);
      a0 += nx[b0 + j] * cv;
      a1 += nx[b1 + j] * cv;
      a2 += nx[b2 + j] * cv;
      a3 += nx[b3 + j] * cv;
    }
    for (var t = 0u; t < 4u; t++) {
      let col = c0 + t;
      if (col < c_hi) {
        var bv = 0.0;
        if (use_bias) { bv = nbias[col]; }
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

// nearest_merge: combines k split partials (split s covers lower centroid ids than s + 1): the highest
// score, the earlier split on ties (= the lowest index). n rows.
@group(0) @binding(1) var<storage, read> nm_lab: array<u32>;
@group(0) @binding(2) var<storage, read> nm_score: array<f32>;
@group(0) @binding(3) var<storage, read_write> nm_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> nm_out_score: array<f32>;

@compute @workgroup_size(256)
fn nearest_merge(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  var bs = nm_score[r];
  var bi = nm_lab[r];
  for (var s = 1u; s < p.k; s++) {
    let v = nm_score[s * p.n + r];
    if (v > bs) {
      bs = v;
      bi = nm_lab[s * p.n + r];
    }
  }
  nm_out[r] = bi;
  if ((p.flags & 4u) != 0u) { nm_out_score[r] = bs; }
}

// ---------------------------------------------------------------------------------------------------
// l2_bias: bias[c] = -||C[c]||^2 / 2 (k centroids of d).
@group(0) @binding(1) var<storage, read> lb_cen: array<f32>;
@group(0) @binding(2) var<storage, read_write> lb_bias: array<f32>;

@compute @workgroup_size(256)
fn l2_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = linear_index(wid, nwg, lid);
  if (c >= p.k) { return; }
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = lb_cen[c * p.d + j]; s += v * v; }
  lb_bias[c] = -0.5 * s;
}

// mask_bias: bias[c] = mask[c] != 0 ? -3e38 : 0 (excluded clusters can never win while one is allowed).
@group(0) @binding(1) var<storage, read> mb_mask: array<u32>;
@group(0) @binding(2) var<storage, read_write> mb_bias: array<f32>;

@compute @workgroup_size(256)
fn mask_bias(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = linear_index(wid, nwg, lid);
  if (c >= p.k) { return; }
  mb_bias[c] = select(0.0, NEG_BIG, mb_mask[c] != 0u);
}

// ---------------------------------------------------------------------------------------------------
// repair_empty (one thread; runs after a k-means centroid update). For each empty cluster ci in
// ascending order: draw cj with probability proportional to cnt[cj] - 1 (clusters of size >= 2), copy
// its centroid and push the two apart by a relative +-1/1024 on alternating dimensions (ci gets
// (1 + eps) on even dimensions, cj (1 - eps); the other way round on odd ones), and split the count
// (cnt[ci] = cnt[cj] / 2, cnt[cj] -= cnt[ci]), as faiss does. RNG: PCG-style hash of (seed, draw).
// stats[2a] = #empty before, stats[2a + 1] = #empty after.
@group(0) @binding(1) var<storage, read_write> re_cnt: array<u32>;
@group(0) @binding(2) var<storage, read_write> re_cen: array<f32>;
@group(0) @binding(3) var<storage, read_write> re_stats: array<u32>;

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(1)
fn repair_empty() {
  let eps = 1.0 / 1024.0;
  var total = 0u; // sum over clusters of max(cnt - 1, 0)
  for (var c = 0u; c < p.k; c++) { let h = re_cnt[c]; if (h > 1u) { total += h - 1u; } }
  var before = 0u;
  var draw = 0u;
  for (var ci = 0u; ci < p.k; ci++) {
    if (re_cnt[ci] != 0u) { continue; }
    before++;
    if (total == 0u) { continue; }
    let u = pcg(pcg(p.a ^ pcg(draw)) + draw);
    draw++;
    let rr = u % total;
    var acc = 0u;
    var cj = 0u;
    for (var c = 0u; c < p.k; c++) {
      let h = re_cnt[c];
      if (h > 1u) {
        acc += h - 1u;
        if (rr < acc) { cj = c; break; }
      }
    }
    for (var j = 0u; j < p.d; j++) {
      let v = re_cen[cj * p.d + j];
      if (j % 2u == 0u) {
        re_cen[ci * p.d + j] = v * (1.0 + eps);
        re_cen[cj * p.d + j] = v * (1.0 - eps);
      } else {
        re_cen[ci * p.d + j] = v * (1.0 - eps);
        re_cen[cj * p.d + j] = v * (1.0 + eps);
      }
    }
    let h = re_cnt[cj];
    let h2 = h / 2u;
    re_cnt[ci] = h2;
    re_cnt[cj] = h - h2;
    // update total: cj contributed h - 1; now (h - h2 - 1) + (h2 - 1 if h2 > 1)
    total -= h - 1u;
    total += h - h2 - 1u;
    if (h2 > 1u) { total += h2 - 1u; }
  }
  var after = 0u;
  for (var c = 0u; c < p.k; c++) { if (re_cnt[c] == 0u) { after++; } }
  re_stats[2u * p.b] = before;
  re_stats[2u * p.b + 1u] = after;
}

// ---------------------------------------------------------------------------------------------------
// 2-means on the n rows x[idx[r]] (one cluster's members). Centers live in a [2, d] buffer.

// tm_center_from_row (one workgroup): centers[b] = x[idx[a]].
@group(0) @binding(1) var<storage, read> tc_x: array<f32>;
@group(0) @binding(2) var<storage, read> tc_idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> tc_cen: array<f32>;

@compute @workgroup_size(256)
fn tm_center_from_row(@builtin(local_invocation_index) lid: u32) {
  let row = tc_idx[p.a];
  for (var j = lid; j < p.d; j += 256u) { tc_cen[p.b * p.d + j] = tc_x[row * p.d + j]; }
}

// tm_dist: d2[r] = ||x[row r] - centers[b]||^2 (row r = idx[r] when flags & 1, else r); with flags & 2
// d2[r] = min(d2[r], that) (k-means++ running minimum).
@group(0) @binding(1) var<storage, read> td_x: array<f32>;
@group(0) @binding(2) var<storage, read> td_idx: array<u32>;
@group(0) @binding(3) var<storage, read> td_cen: array<f32>;
@group(0) @binding(4) var<storage, read_write> td_d2: array<f32>;

@compute @workgroup_size(256)
fn tm_dist(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let row = select(r, td_idx[r], (p.flags & 1u) != 0u);
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = td_x[row * p.d + j] - td_cen[p.b * p.d + j]; s += v * v; }
  if ((p.flags & 2u) != 0u) { s = min(s, td_d2[r]); }
  td_d2[r] = s;
}

// tm_pick (one workgroup): k-means++ seeding. Draws r with probability d2[r] / sum(d2) using the
// uniform f0 in [0, 1), then centers[b] = x[row r] (row r = idx[r] when flags & 1, else r). Chunk sums in fixed order, so it is deterministic.
@group(0) @binding(1) var<storage, read> tp_x: array<f32>;
@group(0) @binding(2) var<storage, read> tp_idx: array<u32>;
@group(0) @binding(3) var<storage, read> tp_d2: array<f32>;
@group(0) @binding(4) var<storage, read_write> tp_cen: array<f32>;

var<workgroup> tp_sums: array<f32, 256>;
var<workgroup> tp_choice: u32;

@compute @workgroup_size(256)
fn tm_pick(@builtin(local_invocation_index) lid: u32) {
  let per = (p.n + 255u) / 256u;
  let lo = lid * per;
  let hi = min(lo + per, p.n);
  var s = 0.0;
  for (var r = lo; r < hi; r++) { s += tp_d2[r]; }
  tp_sums[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    var last_chunk = 0u;
    for (var t = 0u; t < 256u; t++) {
      total += tp_sums[t];
      if (tp_sums[t] > 0.0) { last_chunk = t; }
    }
    var choice = 0u;
    if (total > 0.0) {
      let goal = p.f0 * total;
      var acc = 0.0;
      var chunk = last_chunk;
      for (var t = 0u; t < 256u; t++) {
        if (acc + tp_sums[t] > goal) { chunk = t; break; }
        acc += tp_sums[t];
      }
      // inside the chosen chunk: the first point whose running sum passes the goal, else its last positive point
      let t_lo = chunk * per;
      let t_hi = min(t_lo + per, p.n);
      var done = false;
      for (var r = t_lo; r < t_hi; r++) {
        let v = tp_d2[r];
        if (v > 0.0 && !done) {
          choice = r;
          acc += v;
          if (acc > goal) { done = true; }
        }
      }
    }
    tp_choice = choice;
  }
  workgroupBarrier();
  let chosen = workgroupUniformLoad(&tp_choice);
  let row = select(chosen, tp_idx[chosen], (p.flags & 1u) != 0u);
  for (var j = lid; j < p.d; j += 256u) { tp_cen[p.b * p.d + j] = tp_x[row * p.d + j]; }
}

// tm_assign: side[r] = 1 if ||x - c1||^2 < ||x - c0||^2 else 0 (ties to 0); dmin[r] = the smaller one.
@group(0) @binding(1) var<storage, read> ta_x: array<f32>;
@group(0) @binding(2) var<storage, read> ta_idx: array<u32>;
@group(0) @binding(3) var<storage, read> ta_cen: array<f32>;
@group(0) @binding(4) var<storage, read_write> ta_side: array<u32>;
@group(0) @binding(5) var<storage, read_write> ta_dmin: array<f32>;

@compute @workgroup_size(256)
fn tm_assign(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let row = ta_idx[r];
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let v = ta_x[row * p.d + j];
    let a0 = v - ta_cen[j];
    let a1 = v - ta_cen[p.d + j];
    s0 += a0 * a0;
    s1 += a1 * a1;
  }
  let one = s1 < s0;
  ta_side[r] = select(0u, 1u, one);
  ta_dmin[r] = select(s0, s1, one);
}

// tm_keep_best (one thread): if inertia[0] < best[0] (strict: earlier restarts win ties), best = inertia, flag = 1.
@group(0) @binding(1) var<storage, read> tk_inertia: array<f32>;
@group(0) @binding(2) var<storage, read_write> tk_best: array<f32>;
@group(0) @binding(3) var<storage, read_write> tk_flag: array<u32>;

@compute @workgroup_size(1)
fn tm_keep_best() {
  let v = tk_inertia[0];
  if (v < tk_best[0]) {
    tk_best[0] = v;
    tk_flag[0] = 1u;
  } else {
    tk_flag[0] = 0u;
  }
}

// tm_copy_if: dst[r] = src[r] where flag[0] != 0.
@group(0) @binding(1) var<storage, read> ti_flag: array<u32>;
@group(0) @binding(2) var<storage, read> ti_src: array<u32>;
@group(0) @binding(3) var<storage, read_write> ti_dst: array<u32>;

@compute @workgroup_size(256)
fn tm_copy_if(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n || ti_flag[0] == 0u) { return; }
  ti_dst[r] = ti_src[r];
}

// tm_count: cnt[a] += #{r : side[r] == 1}.
@group(0) @binding(1) var<storage, read> tn_side: array<u32>;
@group(0) @binding(2) var<storage, read_write> tn_cnt: array<atomic<u32>>;

@compute @workgroup_size(256)
fn tm_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  if (tn_side[r] == 1u) { atomicAdd(&tn_cnt[p.a], 1u); }
}

// tm_fallback: if cnt[0] == 0 or cnt[0] == n (one side empty), side[r] = halves[r] (a random half).
@group(0) @binding(1) var<storage, read> tf_cnt: array<u32>;
@group(0) @binding(2) var<storage, read> tf_halves: array<u32>;
@group(0) @binding(3) var<storage, read_write> tf_side: array<u32>;

@compute @workgroup_size(256)
fn tm_fallback(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let c1 = tf_cnt[0];
  if (c1 == 0u || c1 == p.n) { tf_side[r] = tf_halves[r]; }
}

// tm_relabel: labels[idx[r]] = a where side[r] == 1.
@group(0) @binding(1) var<storage, read> tl_idx: array<u32>;
@group(0) @binding(2) var<storage, read> tl_side: array<u32>;
@group(0) @binding(3) var<storage, read_write> tl_labels: array<u32>;

@compute @workgroup_size(256)
fn tm_relabel(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  if (tl_side[r] == 1u) { tl_labels[tl_idx[r]] = p.a; }
}

// pp_choose (one workgroup): greedy k-means++: of the k candidate rows cands[0..k), the one with the
// lowest potential pot[l] (ties to the lowest l) becomes centers[b].
@group(0) @binding(1) var<storage, read> pc_pot: array<f32>;
@group(0) @binding(2) var<storage, read> pc_cands: array<f32>;
@group(0) @binding(3) var<storage, read_write> pc_cen: array<f32>;

@compute @workgroup_size(64)
fn pp_choose(@builtin(local_invocation_index) lid: u32) {
  var best = 0u;
  for (var l = 1u; l < p.k; l++) { if (pc_pot[l] < pc_pot[best]) { best = l; } }
  for (var j = lid; j < p.d; j += 64u) { pc_cen[p.b * p.d + j] = pc_cands[best * p.d + j]; }
}
