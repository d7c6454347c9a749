// Evaluation kernels over frozen features (src/eval/knn.ts, src/eval/linear-probe.ts):
//   topk            - per row of a similarity block, the k largest entries (value desc, index asc on ties),
//                     optionally skipping the column equal to the row's global index (leave-one-out);
//                     one 64-thread workgroup per row (GPUs)
//   topk_rows       - the same, one invocation per row with a heap (CPU adapters: no barriers)
// (The similarity block itself comes from the engine's GEMM, src/ops/matmul.ts runGemm.)
//   column_moments  - per-column mean and 1/std over all rows (two passes), for standardisation
//   standardize     - out = (x - mean[col]) * invstd[col]
// Row-per-workgroup kernels run on a 2-D grid; the linear workgroup id is wid.x + wid.y * nwg.x.
// The rows are L2-normalised by src/ops/rows.ts's normalizeRows. Parameters and bindings: src/kernels/knn.ts.

const LOWEST: f32 = -3.4028234e38;
const NONE: u32 = 0xffffffffu;

// ---------------------------------------------------------------------------------------------------
// Top-k per row: each of 64 threads keeps a sorted list of the best k among columns j = lid (mod 64);
// the lists are sized KMAX (a template bucket >= k, so few variants compile). Then k rounds of a workgroup max-reduction over the 64 list heads pick the winners in order. The
// winner's owner is its column mod 64, so it advances its head.
const KMAX: u32 = {{KMAX}}u;
var<workgroup> red_val: array<f32, 64>;
var<workgroup> red_idx: array<u32, 64>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v > w || (v == w && i < j);
}

@compute @workgroup_size(64)
fn topk(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.rows) { return; }
  let grow = p.row_offset + row;
  let K = p.k;
  var vals: array<f32, KMAX>;
  var idxs: array<u32, KMAX>;
  for (var t = 0u; t < KMAX; t++) {
    vals[t] = LOWEST;
    idxs[t] = NONE;
  }
  let skip = select(NONE, grow, p.exclude_self != 0u);
  let base = row * p.cols;
  for (var j = lid; j < p.cols; j += 64u) {
    if (j == skip) { continue; }
    let v = sim[base + j];
    if (!better(v, j, vals[K - 1u], idxs[K - 1u])) { continue; }
    var pos = K - 1u;
    while (pos > 0u && better(v, j, vals[pos - 1u], idxs[pos - 1u])) {
      vals[pos] = vals[pos - 1u];
      idxs[pos] = idxs[pos - 1u];
      pos -= 1u;
    }
    vals[pos] = v;
    idxs[pos] = j;
  }
  var head = 0u;
  for (var r = 0u; r < K; r++) {
    if (head < K) {
      red_val[lid] = vals[head];
      red_idx[lid] = idxs[head];
    } else {
      red_val[lid] = LOWEST;
      red_idx[lid] = NONE;
    }
    workgroupBarrier();
    for (var h = 32u; h > 0u; h >>= 1u) {
      if (lid < h && better(red_val[lid + h], red_idx[lid + h], red_val[lid], red_idx[lid])) {
        red_val[lid] = red_val[lid + h];
        red_idx[lid] = red_idx[lid + h];
      }
      workgroupBarrier();
    }
    let wi = red_idx[0];
    let wv = red_val[0];
    if (wi != NONE && wi % 64u == lid) { head += 1u; }
    if (lid == 0u) {
      top_val[grow * K + r] = wv;
      top_idx[grow * K + r] = wi;
    }
    workgroupBarrier();
  }
}

// Top-k, one invocation per row (CPU adapters, where workgroup barriers are expensive): a binary heap
// of the best k seen so far with the worst at the root (O(log k) per accepted candidate), then a heap
// sort writes them best first. Same ordering and output as `topk`; no workgroup memory.
fn worse(v: f32, i: u32, w: f32, j: u32) -> bool {
  return v < w || (v == w && i > j);
}

@compute @workgroup_size(64)
fn topk_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (row >= p.rows) { return; }
  let grow = p.row_offset + row;
  let K = p.k;
  var vals: array<f32, KMAX>;
  var idxs: array<u32, KMAX>;
  for (var t = 0u; t < KMAX; t++) {
    vals[t] = LOWEST;
    idxs[t] = NONE;
  }
  let skip = select(NONE, grow, p.exclude_self != 0u);
  let base = row * p.cols;
  for (var j = 0u; j < p.cols; j++) {
    let v = sim[base + j];
    if (j == skip || !better(v, j, vals[0], idxs[0])) { continue; }
    // replace the root and sift it down
    var pos = 0u;
    loop {
      let l = 2u * pos + 1u;
      if (l >= K) { break; }
      var c = l;
      if (l + 1u < K && worse(vals[l + 1u], idxs[l + 1u], vals[l], idxs[l])) { c = l + 1u; }
      if (!worse(vals[c], idxs[c], v, j)) { break; }
      vals[pos] = vals[c];
      idxs[pos] = idxs[c];
      pos = c;
    }
    vals[pos] = v;
    idxs[pos] = j;
  }
  // heap sort: pop the worst into the last free output slot
  for (var r = 0u; r < K; r++) {
    let n = K - 1u - r;
    top_val[grow * K + n] = vals[0];
    top_idx[grow * K + n] = idxs[0];
    let v = vals[n];
    let j = idxs[n];
    var pos = 0u;
    loop {
      let l = 2u * pos + 1u;
      if (l >= n) { break; }
      var c = l;
      if (l + 1u < n && worse(vals[l + 1u], idxs[l + 1u], vals[l], idxs[l])) { c = l + 1u; }
      if (!worse(vals[c], idxs[c], v, j)) { break; }
      vals[pos] = vals[c];
      idxs[pos] = idxs[c];
      pos = c;
    }
    if (n > 0u) {
      vals[pos] = v;
      idxs[pos] = j;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// out[c] = mean of column c, out[dim + c] = 1 / std (population), or 1 for a (numerically) constant column.
@compute @workgroup_size(64)
fn column_moments(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.dim) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += x[r * p.dim + c]; }
  let mean = s / f32(p.rows);
  var q = 0.0;
  for (var r = 0u; r < p.rows; r++) {
    let d = x[r * p.dim + c] - mean;
    q += d * d;
  }
  let variance = q / f32(p.rows);
  out[c] = mean;
  out[p.dim + c] = select(1.0 / sqrt(variance), 1.0, variance <= 1e-12 * mean * mean || variance <= 1e-30);
}

@compute @workgroup_size(256)
fn standardize(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.cols) { return; }
  let c = i % p.dim;
  out[i] = (x[i] - stats[c]) * stats[p.dim + c];
}
