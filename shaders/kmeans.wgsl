// The k-means algorithm's own kernels (src/odc/kmeans.ts, src/odc/split.ts): faiss-style repair of empty
// clusters, greedy k-means++ seeding, and the small kernels of the GPU 2-means splitter. The clustering
// primitives they build on are shaders/clustering.wgsl. Parameters and bindings (named per entry
// point): src/kernels/kmeans.ts.

//!include grid
// ---------------------------------------------------------------------------------------------------
// repair_empty (one thread; runs after a k-means centroid update). For each empty cluster ci in
// ascending order: draw cj with probability proportional to cnt[cj] - 1 (clusters of size >= 2), copy
// its centroid and push the two apart by a relative +-1/1024 on alternating dimensions (ci gets
// (1 + eps) on even dimensions, cj (1 - eps); the other way round on odd ones), and split the count
// (cnt[ci] = cnt[cj] / 2, cnt[cj] -= cnt[ci]), as faiss does. RNG: PCG-style hash of (seed, draw).
// stats[2·iteration] = #empty before, stats[2·iteration + 1] = #empty after.

fn pcg(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(1)
fn repair_empty() {
  let eps = 1.0 / 1024.0;
  var total = 0u; // sum over clusters of max(cnt - 1, 0)
  for (var c = 0u; c < p.k; c++) { let h = counts[c]; if (h > 1u) { total += h - 1u; } }
  var before = 0u;
  var draw = 0u;
  for (var ci = 0u; ci < p.k; ci++) {
    if (counts[ci] != 0u) { continue; }
    before++;
    if (total == 0u) { continue; }
    let u = pcg(pcg(p.seed ^ pcg(draw)) + draw);
    draw++;
    let rr = u % total;
    var acc = 0u;
    var cj = 0u;
    for (var c = 0u; c < p.k; c++) {
      let h = counts[c];
      if (h > 1u) {
        acc += h - 1u;
        if (rr < acc) { cj = c; break; }
      }
    }
    for (var j = 0u; j < p.d; j++) {
      let v = centroids[cj * p.d + j];
      if (j % 2u == 0u) {
        centroids[ci * p.d + j] = v * (1.0 + eps);
        centroids[cj * p.d + j] = v * (1.0 - eps);
      } else {
        centroids[ci * p.d + j] = v * (1.0 - eps);
        centroids[cj * p.d + j] = v * (1.0 + eps);
      }
    }
    let h = counts[cj];
    let h2 = h / 2u;
    counts[ci] = h2;
    counts[cj] = h - h2;
    // update total: cj contributed h - 1; now (h - h2 - 1) + (h2 - 1 if h2 > 1)
    total -= h - 1u;
    total += h - h2 - 1u;
    if (h2 > 1u) { total += h2 - 1u; }
  }
  var after = 0u;
  for (var c = 0u; c < p.k; c++) { if (counts[c] == 0u) { after++; } }
  stats[2u * p.iteration] = before;
  stats[2u * p.iteration + 1u] = after;
}

// ---------------------------------------------------------------------------------------------------
// 2-means on the n rows x[idx[r]] (one cluster's members). Centers live in a [2, d] buffer.

// tm_center_from_row (one workgroup): centers[center] = x[idx[member]].

@compute @workgroup_size(256)
fn tm_center_from_row(@builtin(local_invocation_index) lid: u32) {
  let row = idx[p.member];
  for (var j = lid; j < p.d; j += 256u) { centers[p.center * p.d + j] = x[row * p.d + j]; }
}

// tm_dist: d2[d2_row0 + r] = ||x[row r] - centers[center]||^2 (row r = idx[r] when gather, else r); with
// running_min the minimum of that and the d2 entry (k-means++ running minimum). d2_row0: a shard's first row.

@compute @workgroup_size(256)
fn tm_dist(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let row = select(r, idx[r], p.gather != 0u);
  var s = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = x[row * p.d + j] - centers[p.center * p.d + j]; s += v * v; }
  let slot = p.d2_row0 + r;
  if (p.running_min != 0u) { s = min(s, d2[slot]); }
  d2[slot] = s;
}

// tm_pick (one workgroup): k-means++ seeding. Draws r with probability d2[r] / sum(d2) using the
// uniform `draw` in [0, 1), then centers[center] = x[row r] (row r = idx[r] when gather, else r) when row r is
// in [row0, row0 + row_count), x holding those rows (one shard of a sharded matrix: one launch per shard, each
// draws the same r). Chunk sums in fixed order, so it is deterministic.

var<workgroup> tp_sums: array<f32, 256>;
var<workgroup> tp_choice: u32;

@compute @workgroup_size(256)
fn tm_pick(@builtin(local_invocation_index) lid: u32) {
  let per = (p.n + 255u) / 256u;
  let lo = lid * per;
  let hi = min(lo + per, p.n);
  var s = 0.0;
  for (var r = lo; r < hi; r++) { s += d2[r]; }
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
      let goal = p.draw * total;
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
        let v = d2[r];
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
  let row = select(chosen, idx[chosen], p.gather != 0u);
  if (row < p.row0 || row - p.row0 >= p.row_count) { return; }
  let shard_row = row - p.row0;
  for (var j = lid; j < p.d; j += 256u) { centers[p.center * p.d + j] = x[shard_row * p.d + j]; }
}

// tm_assign: side[r] = 1 if ||x - c1||^2 < ||x - c0||^2 else 0 (ties to 0); dmin[r] = the smaller one.

@compute @workgroup_size(256)
fn tm_assign(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let row = idx[r];
  var s0 = 0.0;
  var s1 = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let v = x[row * p.d + j];
    let a0 = v - centers[j];
    let a1 = v - centers[p.d + j];
    s0 += a0 * a0;
    s1 += a1 * a1;
  }
  let one = s1 < s0;
  side[r] = select(0u, 1u, one);
  dmin[r] = select(s0, s1, one);
}

// tm_keep_best (one thread): if inertia[0] < best[0] (strict: earlier restarts win ties), best = inertia, flag = 1.

@compute @workgroup_size(1)
fn tm_keep_best() {
  let v = inertia[0];
  if (v < best[0]) {
    best[0] = v;
    flag[0] = 1u;
  } else {
    flag[0] = 0u;
  }
}

// tm_copy_if: dst[r] = src[r] where flag[0] != 0.

@compute @workgroup_size(256)
fn tm_copy_if(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n || flag[0] == 0u) { return; }
  dst[r] = src[r];
}

// tm_count: counts[slot] += #{r : side[r] == 1}.

@compute @workgroup_size(256)
fn tm_count(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  if (side[r] == 1u) { atomicAdd(&counts[p.slot], 1u); }
}

// tm_fallback: if counts[0] == 0 or counts[0] == n (one side empty), side[r] = halves[r] (a random half).

@compute @workgroup_size(256)
fn tm_fallback(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let c1 = counts[0];
  if (c1 == 0u || c1 == p.n) { side[r] = halves[r]; }
}

// tm_relabel: labels[idx[r]] = label where side[r] == 1.

@compute @workgroup_size(256)
fn tm_relabel(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  if (side[r] == 1u) { labels[idx[r]] = p.label; }
}

// pp_choose (one workgroup): greedy k-means++: of the candidate rows candidates[0..trials), the one with
// the lowest potential[l] (ties to the lowest l) becomes centers[center].

@compute @workgroup_size(64)
fn pp_choose(@builtin(local_invocation_index) lid: u32) {
  var best = 0u;
  for (var l = 1u; l < p.trials; l++) { if (potential[l] < potential[best]) { best = l; } }
  for (var j = lid; j < p.d; j += 64u) { centers[p.center * p.d + j] = candidates[best * p.d + j]; }
}
