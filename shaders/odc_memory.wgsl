// ODC memory kernels (src/odc/memory.ts, src/odc/small-clusters.ts): the batch momentum update and its
// scatter, label changes, label gathers and scatters, and the loss weights. The clustering primitives
// the memory also uses are shaders/clustering.wgsl. Parameters and bindings (named per entry point):
// src/kernels/odc_memory.ts.
//
// 1-D launches use 256-wide workgroups on a 2-D grid (grid() in src/gpu/device.ts); the linear id is
// (wid.x + wid.y * nwg.x) * 256 + lid.
//
// Determinism: nothing here depends on scheduling. Float sums run in a fixed order inside one thread
// or a fixed tree; the only atomics are integer ones (change counts, error flags).

//!include grid
//!include workgroup_sum

const EPS_NORM: f32 = 1e-10;

// ---------------------------------------------------------------------------------------------------
// momentum: one thread per batch row b (n = batch, bank_rows = memory rows, m = momentum); bank is the shard of
// memory rows [row0, row0 + row_count) (sharded memory, src/odc/memory.ts): one launch per shard.
//   fresh = f[b] / (||f[b]|| + eps); mix = (1 - m) * bank[idx[b]] + m * fresh; out[b] = mix / (||mix|| + eps)
//   winner[b] = 1 iff b is the LAST occurrence of idx[b] in the batch (duplicate rule: last one wins).
// Out-of-range indices: winner 0, out row 0, and status[0] counts them.

@compute @workgroup_size(256)
fn momentum(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n) { return; }
  let i = idx[b];
  let ob = b * p.d;
  if (i >= p.bank_rows) {
    if (p.row0 != 0u) { return; } // counted once, by the first shard's launch
    atomicAdd(&status[0], 1u);
    winner[b] = 0u;
    for (var j = 0u; j < p.d; j++) { out[ob + j] = 0.0; }
    return;
  }
  if (i < p.row0 || i - p.row0 >= p.row_count) { return; } // another shard's row
  var last = 1u;
  for (var q = b + 1u; q < p.n; q++) {
    if (idx[q] == i) { last = 0u; break; }
  }
  winner[b] = last;
  var sf = 0.0;
  for (var j = 0u; j < p.d; j++) { let v = features[ob + j]; sf += v * v; }
  let invf = 1.0 / (sqrt(sf) + EPS_NORM);
  let m = p.momentum;
  let ib = (i - p.row0) * p.d;
  var sm = 0.0;
  for (var j = 0u; j < p.d; j++) {
    let v = (1.0 - m) * bank[ib + j] + m * (features[ob + j] * invf);
    out[ob + j] = v;
    sm += v * v;
  }
  let invm = 1.0 / (sqrt(sm) + EPS_NORM);
  for (var j = 0u; j < p.d; j++) { out[ob + j] = out[ob + j] * invm; }
}

// count_changes: count[0] += #{b : idx[b] valid and new_labels[b] != labels[idx[b]]} (n = batch).

@compute @workgroup_size(256)
fn count_changes(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n) { return; }
  let i = idx[b];
  if (i < p.bank_rows && new_labels[b] != labels[i]) { atomicAdd(&count[0], 1u); }
}

// scatter_update: winners write their row and label back (n = batch).

@compute @workgroup_size(256)
fn scatter_update(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = linear_index(wid, nwg, lid);
  if (b >= p.n || winner[b] == 0u) { return; }
  let i = idx[b];
  if (i >= p.bank_rows || i < p.row0 || i - p.row0 >= p.row_count) { return; }
  let ib = (i - p.row0) * p.d;
  for (var j = 0u; j < p.d; j++) { bank[ib + j] = rows[b * p.d + j]; }
  labels[i] = new_labels[b];
}

// ---------------------------------------------------------------------------------------------------
// gather_u32: out[r] = src[idx[r]] (n = count); past src_len -> 0 and status[0]++.

@compute @workgroup_size(256)
fn gather_u32(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  let i = idx[r];
  if (i >= p.src_len) {
    out[r] = 0u;
    atomicAdd(&status[0], 1u);
    return;
  }
  out[r] = src[i];
}

// scatter_labels: labels[idx[r]] = values[r] (n = count).

@compute @workgroup_size(256)
fn scatter_labels(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = linear_index(wid, nwg, lid);
  if (r >= p.n) { return; }
  labels[idx[r]] = values[r];
}

// ---------------------------------------------------------------------------------------------------
// weights (one workgroup): out[c] = (hist[c] + smoothing)^(-power), then out /= sum(out), for c < k.

@compute @workgroup_size(256)
fn weights(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var c = lid; c < p.k; c += 256u) {
    let w = pow(f32(hist[c]) + p.smoothing, -p.power);
    out[c] = w;
    s += w;
  }
  let inv = 1.0 / workgroup_sum(lid, s);
  for (var c = lid; c < p.k; c += 256u) { out[c] = out[c] * inv; }
}
