// Parameters and bindings: src/kernels/gemm.ts (MODE_* are the values of the MODE template enum).
//
// One tiled GEMM body, C[M, N] = A[M, K] · B[K, N], shared by matmul/linear and conv2d (forward, dgrad,
// wgrad). The operands are never materialised: three small hooks (row_info/k_first/k_next, read_a,
// read_b, write_c) map GEMM coordinates onto the real tensors, selected by the compile-time MODE:
//   matmul:        A = a or aᵀ, B = b or bᵀ (TRANS_A/TRANS_B), optional bias in the epilogue
//   conv_forward:  A = im2col(x) [N·OH·OW, KH·KW·Cin], B = w [KH·KW·Cin, Cout]
//   conv_dgrad:    one GEMM per stride phase (ph, pw) = ((ih + pad) mod s, (iw + pad) mod s):
//                        the input pixels ih = s·t + ph - pad only meet kernel taps kh = ph + s·jh, at
//                        oh = t - jh, so A = dy gathered at (t - jh, u - jw) [N·Ht·Wt, KHp·KWp·Cout] and
//                        B = the weight with each tap transposed, wt[kh, kw, co, ci], seen as
//                        [KHp·KWp·Cout, Cin]: no stride waste, and B rows are contiguous (vec4 loads);
//                        with TRANS_B, B is the weight itself, w[kh, kw, ci, co], read transposed per tap.
// TRANS_B in gemm_regs: B[k, n] is contiguous along k, so the K loop reads 4 k of each of its columns with one
// vec4 load (where the k are 4-aligned and K, or dgrad's Cout, is a multiple of 4) and transposes them in
// registers: as many loads as the plain layout's, and the same fma order, so the result is bit-identical to
// transposing B with transpose2d first.
//   conv_wgrad:    A = im2col(x)ᵀ [KH·KW·Cin, N·OH·OW], B = dy [N·OH·OW, Cout]
// Branches on MODE/TRANS_* are on constants and vanish at compile time.
//
// Grid: tile rows run fastest (tileM = wid.x + wid.y · nwg.x), so consecutive workgroups share the
// same columns of B while it is hot in cache; wid.z = split · tilesN + tileN.
// Split-K: split s covers k in [s·kchunk, min(K, (s+1)·kchunk)) and writes its partial product at
// C[s·M·N ..]; `sum_splits` adds the partials in a fixed order (deterministic, no atomics).
//
// Two bodies share the hooks: `gemm_regs` (no workgroup memory, TM×TN outputs per invocation in
// registers; fastest measured on lavapipe, which runs a workgroup as 8-wide SIMD on one CPU thread) and
// `gemm_tiled` (A/B tiles staged in workgroup memory, for real GPUs), whose template values make the GPU
// family of src/ops/gemm-variants.ts: tile, outputs per invocation, K step, conflict-free staging, a
// double-buffered K loop, subgroup shuffles. Every variant sums each output over k in the same order
// with one fma per k, so variants with the same split count give bit-identical results.

const MODE: u32 = {{MODE}}u;
const TRANS_A: bool = {{TRANS_A}};
const TRANS_B: bool = {{TRANS_B}};
const HAS_BIAS: bool = {{HAS_BIAS}};
const ACCUMULATE: bool = {{ACCUMULATE}}; // add into C (the host sets it only on unsplit launches)
const TM: u32 = {{TM}}u;   // output rows per invocation
const TN: u32 = {{TN}}u;   // output columns per invocation (multiple of 4)
const WGM: u32 = {{WGM}}u; // invocations along M in a workgroup
const WGN: u32 = {{WGN}}u; // invocations along N in a workgroup
const TK: u32 = {{TK}}u;   // K step of gemm_tiled
const VEC_B: bool = {{VEC_B}}; // B rows are vec4-aligned (N % 4 == 0, B index k·N + n): load 4 columns at once
const TN4: u32 = TN / 4u;
// gemm_regs column layout: false = each invocation owns TN adjacent columns; true = its j-th vec4 of
// columns is at tn·4 + j·WGN·4, so neighbouring invocations read neighbouring vec4s of B.
const COLS_STRIDED: bool = {{COLS_STRIDED}};
const BM: u32 = WGM * TM;  // workgroup tile rows
const BN: u32 = WGN * TN;  // workgroup tile columns

// ---- hooks -------------------------------------------------------------------------------------------
// The K loop never divides (integer division per k made lavapipe's conv GEMMs 5-10x slower):
// k_first() decomposes the first k once, k_next() steps the decomposition with compares, and read_a()
// only adds a per-row base to a per-k offset and checks the window bounds.

struct Row {
  base: i32, // linear offset contributed by the row
  y: i32,    // mode-specific coordinates used for bounds checks
  x: i32,
  ok: bool,  // m < M
  out: u32,  // row of C this GEMM row is stored to (dgrad phases scatter rows)
}

struct KPos {
  off: i32, // linear offset contributed by k
  y: i32,
  x: i32,
  c: i32,   // innermost counter (channel or ow)
  n: i32,   // image (wgrad)
  k: i32,   // k itself, or kh·KW + kw (dgrad)
}

fn row_info(m: u32) -> Row {
  let ok = m < p.M;
  if (MODE == MODE_CONV_FORWARD) { // m = (n, oh, ow) -> the window's top-left input pixel (may be in the padding)
    let ow = m % p.OW;
    let t = m / p.OW;
    let ih0 = i32((t % p.OH) * p.stride) - i32(p.pad);
    let iw0 = i32(ow * p.stride) - i32(p.pad);
    return Row(((i32(t / p.OH) * i32(p.H) + ih0) * i32(p.W) + iw0) * i32(p.Cin), ih0, iw0, ok, m);
  }
  if (MODE == MODE_CONV_DGRAD) { // m = (n, ti, ui) of this phase: input pixel ih = s·(t0h + ti) + ph - pad; y, x = t, u
    let u = p.t0w + m % p.Wt;
    let q = m / p.Wt;
    let t = p.t0h + q % p.Ht;
    let n = q / p.Ht;
    let ih = t * p.stride + p.ph - p.pad;
    let iw = u * p.stride + p.pw - p.pad;
    return Row(i32(n * p.OH * p.OW * p.Cout), i32(t), i32(u), ok, (n * p.H + ih) * p.W + iw);
  }
  if (MODE == MODE_CONV_WGRAD) { // m = (kh, kw, ci)
    let ci = m % p.Cin;
    let t = m / p.Cin;
    let kh = i32(t / p.KW);
    let kw = i32(t % p.KW);
    return Row((kh * i32(p.W) + kw) * i32(p.Cin) + i32(ci), kh, kw, ok, m);
  }
  return Row(i32(select(m * p.K, m, TRANS_A)), 0, 0, ok, m);
}

fn wgrad_offset(q: KPos) -> i32 {
  return ((q.n * i32(p.H) + q.y) * i32(p.W) + q.x) * i32(p.Cin);
}

fn k_first(k: u32) -> KPos {
  let ki = i32(k);
  if (MODE == MODE_CONV_FORWARD) { // k = (kh, kw, ci)
    let ci = i32(k % p.Cin);
    let t = k / p.Cin;
    let kh = i32(t / p.KW);
    let kw = i32(t % p.KW);
    return KPos((kh * i32(p.W) + kw) * i32(p.Cin) + ci, kh, kw, ci, 0, ki);
  }
  if (MODE == MODE_CONV_DGRAD) { // k = (jh, jw, co); y, x = jh, jw; k = kh·KW + kw of the tap
    let co = i32(k % p.Cout);
    let t = k / p.Cout;
    let jh = t / p.KWp;
    let jw = t % p.KWp;
    return KPos(co, i32(jh), i32(jw), co, 0, i32((p.ph + p.stride * jh) * p.KW + p.pw + p.stride * jw));
  }
  if (MODE == MODE_CONV_WGRAD) { // k = (n, oh, ow): y, x = the window's top-left input pixel
    let ow = k % p.OW;
    let t = k / p.OW;
    var q = KPos(0, i32((t % p.OH) * p.stride) - i32(p.pad), i32(ow * p.stride) - i32(p.pad), i32(ow), i32(t / p.OH), ki);
    q.off = wgrad_offset(q);
    return q;
  }
  return KPos(i32(select(k, k * p.M, TRANS_A)), 0, 0, 0, 0, ki);
}

fn k_next(q0: KPos) -> KPos {
  var q = q0;
  if (MODE != MODE_CONV_DGRAD) { q.k += 1; } // dgrad's k is the tap index, stepped below
  if (MODE == MODE_CONV_FORWARD) {
    q.c += 1;
    q.off += 1;
    if (q.c == i32(p.Cin)) {
      q.c = 0;
      q.x += 1;
      if (q.x == i32(p.KW)) { q.x = 0; q.y += 1; }
      q.off = (q.y * i32(p.W) + q.x) * i32(p.Cin);
    }
  } else if (MODE == MODE_CONV_DGRAD) {
    q.c += 1;
    q.off = q.c;
    if (q.c == i32(p.Cout)) {
      q.c = 0;
      q.off = 0;
      q.x += 1;
      if (q.x == i32(p.KWp)) { q.x = 0; q.y += 1; }
      q.k = (i32(p.ph) + i32(p.stride) * q.y) * i32(p.KW) + i32(p.pw) + i32(p.stride) * q.x;
    }
  } else if (MODE == MODE_CONV_WGRAD) {
    q.c += 1;
    q.x += i32(p.stride);
    q.off += i32(p.stride * p.Cin);
    if (q.c == i32(p.OW)) {
      q.c = 0;
      q.x = -i32(p.pad);
      q.y += i32(p.stride);
      if (q.y == i32(p.OH * p.stride) - i32(p.pad)) { q.y = -i32(p.pad); q.n += 1; }
      q.off = wgrad_offset(q);
    }
  } else {
    q.off += i32(select(1u, p.M, TRANS_A));
  }
  return q;
}

// A[m, k], zero outside the operand (padding, tails).
fn read_a(r: Row, q: KPos) -> f32 {
  var idx = r.base + q.off;
  var ok = r.ok;
  if (MODE == MODE_CONV_FORWARD || MODE == MODE_CONV_WGRAD) {
    ok = ok && u32(r.y + q.y) < p.H && u32(r.x + q.x) < p.W;
  } else if (MODE == MODE_CONV_DGRAD) { // dy[n, t - jh, u - jw, co]
    let oh = r.y - q.y;
    let ow = r.x - q.x;
    ok = ok && u32(oh) < p.OH && u32(ow) < p.OW;
    idx = r.base + (oh * i32(p.OW) + ow) * i32(p.Cout) + q.off;
  }
  return select(0.0, f32(A[u32(select(0, idx, ok))]), ok);
}

// The row of a row-major [K, N] B holding GEMM row k (dgrad: tap-major rows of the transposed weight).
fn b_row(q: KPos) -> u32 {
  if (MODE == MODE_CONV_DGRAD) { return u32(q.k) * p.Cout + u32(q.c); }
  return u32(q.k);
}

// The index of B[k, n] when TRANS_B: matmul's bᵀ, or dgrad's weight w[tap, n, co] (q.k = tap, q.c = co).
fn b_index_t(q: KPos, n: u32) -> u32 {
  if (MODE == MODE_CONV_DGRAD) { return (u32(q.k) * p.N + n) * p.Cout + u32(q.c); }
  return n * p.K + u32(q.k);
}

// B[k, n], zero for n >= N.
fn read_b(q: KPos, n: u32) -> f32 {
  let ok = n < p.N;
  let ni = select(0u, n, ok);
  var u = b_row(q) * p.N + ni;
  if (TRANS_B) { u = b_index_t(q, ni); }
  return select(0.0, f32(B[u >> 2u][u & 3u]), ok);
}

// TRANS_B: B[k .. k + 3, n] with one vector load (k 4-aligned; K, or dgrad's Cout, a multiple of 4), zero for n >= N.
fn read_bt4(q: KPos, n: u32) -> vec4<f32> {
  let ok = n < p.N;
  return select(vec4<f32>(0.0), vec4<f32>(B[b_index_t(q, select(0u, n, ok)) >> 2u]), ok);
}

// B[k, n .. n + 3] when VEC_B (n % 4 == 0): one vector load.
fn read_b4(q: KPos, n: u32) -> vec4<f32> {
  if (VEC_B) {
    let ok = n < p.N;
    let u = b_row(q) * p.N + select(0u, n, ok);
    return select(vec4<f32>(0.0), vec4<f32>(B[u >> 2u]), ok);
  }
  return vec4<f32>(read_b(q, n), read_b(q, n + 1u), read_b(q, n + 2u), read_b(q, n + 3u));
}

// The epilogue: + bias (unsplit), then + the value C already holds with ACCUMULATE (C := A·B + C, unsplit: a
// gradient added into the one already collected, the same single rounding as adding the two afterwards).
fn write_c(r: Row, n: u32, split: u32, v: f32) {
  if (r.ok && n < p.N) {
    var o = v;
    if (HAS_BIAS && p.splits == 1u) { o = o + bias[n]; }
    let idx = split * p.M * p.N + r.out * p.N + n;
    if (ACCUMULATE) { o = o + f32(C[idx]); }
    C[idx] = C_T(o);
  }
}

// ---- bodies ------------------------------------------------------------------------------------------

// One k-step of the register block: acc[i][j] += A[row i, k] · b[j].
fn k_step(acc: ptr<function, array<vec4<f32>, TM * TN4>>, rows: ptr<function, array<Row, TM>>, q: KPos, b: array<vec4<f32>, TN4>) {
  for (var i = 0u; i < TM; i++) {
    let a = read_a((*rows)[i], q);
    for (var j = 0u; j < TN4; j++) {
      (*acc)[i * TN4 + j] = fma(vec4<f32>(a), b[j], (*acc)[i * TN4 + j]);
    }
  }
}

@compute @workgroup_size(WGM * WGN)
fn gemm_regs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) t: u32) {
  let split = wid.z / p.tilesN;
  let tile_n = wid.z % p.tilesN;
  let tile_m = wid.x + wid.y * nwg.x;
  // With WGM == 1 every invocation of a workgroup shares its rows (the same A values).
  let tm = select(t / WGN, 0u, WGM == 1u);
  let tn = select(t % WGN, t, WGM == 1u);
  let m0 = (tile_m * WGM + tm) * TM;
  let n0 = tile_n * BN + select(tn * TN, tn * 4u, COLS_STRIDED);
  let nstep = select(4u, WGN * 4u, COLS_STRIDED);
  let kb = split * p.kchunk;
  let ke = min(p.K, kb + p.kchunk);

  var rows: array<Row, TM>;
  for (var i = 0u; i < TM; i++) { rows[i] = row_info(m0 + i); }
  var acc: array<vec4<f32>, TM * TN4>;
  var q = k_first(kb);
  var k = kb;
  if (TRANS_B && p.bt_vec4 != 0u) {
    for (; k < ke && k % 4u != 0u; k++) { // to the first 4-aligned k
      var b: array<vec4<f32>, TN4>;
      for (var j = 0u; j < TN4; j++) {
        b[j] = read_b4(q, n0 + nstep * j);
      }
      k_step(&acc, &rows, q, b);
      q = k_next(q);
    }
    for (; k + 4u <= ke; k += 4u) {
      var cols: array<vec4<f32>, TN>; // cols[4j + e] = B[k .. k + 3, column e of the j-th vec4]
      for (var j = 0u; j < TN4; j++) {
        for (var e = 0u; e < 4u; e++) { cols[4u * j + e] = read_bt4(q, n0 + nstep * j + e); }
      }
      for (var kk = 0u; kk < 4u; kk++) {
        var b: array<vec4<f32>, TN4>;
        for (var j = 0u; j < TN4; j++) {
          b[j] = vec4<f32>(cols[4u * j][kk], cols[4u * j + 1u][kk], cols[4u * j + 2u][kk], cols[4u * j + 3u][kk]);
        }
        k_step(&acc, &rows, q, b);
        q = k_next(q);
      }
    }
  }
  for (; k < ke; k++) {
    var b: array<vec4<f32>, TN4>;
    for (var j = 0u; j < TN4; j++) {
      b[j] = read_b4(q, n0 + nstep * j);
    }
    k_step(&acc, &rows, q, b);
    q = k_next(q);
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN4; j++) {
      let v = acc[i * TN4 + j];
      let n = n0 + nstep * j;
      write_c(rows[i], n, split, v.x);
      write_c(rows[i], n + 1u, split, v.y);
      write_c(rows[i], n + 2u, split, v.z);
      write_c(rows[i], n + 3u, split, v.w);
    }
  }
}

const CONFLICT_FREE: bool = {{CONFLICT_FREE}}; // gemm_tiled: A rows padded by one, columns interleaved by vec4
const NBUF: u32 = {{NBUF}}u;                   // gemm_tiled: 2 = double-buffered K loop (stage k + TK while computing k)
const SUBGROUP: bool = {{SUBGROUP}};           // gemm_tiled: A values shared by subgroup shuffles
const SG_SIZE: u32 = {{SG_SIZE}}u;             // the adapter's (fixed) subgroup size, for SUBGROUP
const SG_GROUP: u32 = min(SG_SIZE, WGN);       // lanes of one subgroup that share their rows
const AST: u32 = select(BM, BM + 1u, CONFLICT_FREE); // row stride of As: BM + 1 spreads a column over banks
const BN4: u32 = BN / 4u;

var<workgroup> As: array<f32, NBUF * TK * AST>;      // [buffer][k][m]
var<workgroup> Bs: array<vec4<f32>, NBUF * TK * BN4>; // [buffer][k][n / 4]

// subgroupShuffle(v, lane) for SUBGROUP variants (the template fills it in only where `subgroups` exists).
fn lane_shuffle(v: f32, lane: u32) -> f32 {
  return {{SG_SHUFFLE}};
}

// Stages k in [k0, k0 + TK) of the A and B tiles into buffer `buf` (zeros from ke on). Threads walk A
// along k (contiguous for a row-major A) and B by vec4 along n.
fn stage(buf: u32, t: u32, mb: u32, nb: u32, k0: u32, ke: u32) {
  for (var e = t; e < TK * BM; e += WGM * WGN) {
    let kk = e % TK;
    let mm = e / TK;
    let k = k0 + kk;
    var v = 0.0;
    if (k < ke) { v = read_a(row_info(mb + mm), k_first(k)); }
    As[(buf * TK + kk) * AST + mm] = v;
  }
  for (var e = t; e < TK * BN4; e += WGM * WGN) {
    let kk = e / BN4;
    let n4 = e % BN4;
    let k = k0 + kk;
    var v = vec4<f32>(0.0);
    if (k < ke) { v = read_b4(k_first(k), nb + 4u * n4); }
    Bs[(buf * TK + kk) * BN4 + n4] = v;
  }
}

// The j-th vec4 of columns of invocation column tn, in vec4 units of the tile: adjacent (TN4 per
// invocation) or interleaved (neighbouring invocations read neighbouring vec4s: no bank conflicts).
fn tile_col4(tn: u32, j: u32) -> u32 {
  return select(tn * TN4 + j, tn + j * WGN, CONFLICT_FREE);
}

@compute @workgroup_size(WGM * WGN)
fn gemm_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
  let split = wid.z / p.tilesN;
  let tile_n = wid.z % p.tilesN;
  let tile_m = wid.x + wid.y * nwg.x;
  let tm = t / WGN;
  let tn = t % WGN;
  let mb = tile_m * BM;
  let nb = tile_n * BN;
  let kb = split * p.kchunk;
  let ke = min(p.K, kb + p.kchunk);
  // SUBGROUP: lanes are consecutive invocations (checked by the tests and by the tuner, which compares
  // every candidate's result with the default's); lane group0 + i holds row i of this invocation's rows.
  let lane = t % SG_SIZE;
  let group0 = lane - lane % SG_GROUP;

  var acc: array<vec4<f32>, TM * TN4>;
  stage(0u, t, mb, nb, kb, ke);
  workgroupBarrier();
  for (var k0 = kb; k0 < ke; k0 += TK) {
    let cur = select(0u, ((k0 - kb) / TK) % 2u, NBUF == 2u);
    let next = k0 + TK;
    // Double-buffered: the other buffer was last read before the previous barrier, so it can be filled now.
    if (NBUF == 2u && next < ke) { stage(1u - cur, t, mb, nb, next, ke); }
    for (var kk = 0u; kk < TK; kk++) {
      var b: array<vec4<f32>, TN4>;
      for (var j = 0u; j < TN4; j++) {
        b[j] = Bs[(cur * TK + kk) * BN4 + tile_col4(tn, j)];
      }
      let arow = (cur * TK + kk) * AST + tm * TM;
      var mine = 0.0;
      if (SUBGROUP) { mine = As[arow + (lane % SG_GROUP) % TM]; }
      for (var i = 0u; i < TM; i++) {
        var a: f32;
        if (SUBGROUP) { a = lane_shuffle(mine, group0 + i); } else { a = As[arow + i]; }
        for (var j = 0u; j < TN4; j++) {
          acc[i * TN4 + j] = fma(vec4<f32>(a), b[j], acc[i * TN4 + j]);
        }
      }
    }
    workgroupBarrier();
    if (NBUF == 1u && next < ke) {
      stage(0u, t, mb, nb, next, ke);
      workgroupBarrier();
    }
  }
  for (var i = 0u; i < TM; i++) {
    let r = row_info(mb + tm * TM + i);
    for (var j = 0u; j < TN4; j++) {
      let v = acc[i * TN4 + j];
      let n = nb + 4u * tile_col4(tn, j);
      write_c(r, n, split, v.x);
      write_c(r, n + 1u, split, v.y);
      write_c(r, n + 2u, split, v.z);
      write_c(r, n + 3u, split, v.w);
    }
  }
}

// ---- small deterministic reductions ------------------------------------------------------------------

// out[i] = Σ_s parts[s·M·N + i] (+ bias[i % N]) (+ out[i] with ACCUMULATE), s in order. One invocation per element.
@compute @workgroup_size(256)
fn sum_splits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  let mn = p.M * p.N;
  if (i >= mn) { return; }
  var s = 0.0;
  for (var q = 0u; q < p.splits; q++) { s += parts[q * mn + i]; }
  if (HAS_BIAS) { s += bias[i % p.N]; }
  if (ACCUMULATE) { s += f32(out[i]); }
  out[i] = float(s);
}

// dst = each of the `batches` matrices of src [batches, rows, cols] transposed ([batches, cols, rows]). One invocation per element.
@compute @workgroup_size(256)
fn transpose2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  let mn = p.rows * p.cols;
  if (i >= p.batches * mn) { return; }
  let j = i % mn;
  dst[i - j + (j % p.cols) * p.rows + j / p.cols] = src[i];
}

// dst[n] = Σ_m src[m·cols + n] over rows [0, rows), in order (bias gradient). One invocation per column.
@compute @workgroup_size(64)
fn column_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) t: u32) {
  let n = (wid.x + wid.y * nwg.x) * 64u + t;
  if (n >= p.cols) { return; }
  var s = 0.0;
  for (var m = 0u; m < p.rows; m++) { s += src[m * p.cols + n]; }
  dst[n] = s;
}
