// Conversions between the f32 master copies and the working precision (`--precision f16`): the f16
// copies of weights and GEMM operands are made here, rounded to nearest even by the f16() conversion
// (values beyond f16's range become ±inf, as PyTorch's .half() gives). One invocation per element.

@compute @workgroup_size(256)
fn to_float(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  if (i >= p.n) { return; }
  dst[i] = float(src[i]);
}

@compute @workgroup_size(256)
fn from_float(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  if (i >= p.n) { return; }
  dst[i] = f32(src[i]);
}

// dst[r, c] (a [rows_out, cols_out] matrix) = src[r, c] inside the [rows, cols] source, else 0: the zero
// padding that brings GEMM operands to whole tensor-core blocks. One invocation per output element.
@compute @workgroup_size(256)
fn pad_float(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  if (i >= p.rows_out * p.cols_out) { return; }
  let r = i / p.cols_out;
  let c = i % p.cols_out;
  dst[i] = select(float(0.0), src[min(r * p.cols + c, p.rows * p.cols - 1u)], r < p.rows && c < p.cols);
}

// dst[r, c] = src[r, c] of a wider [.., cols_in] f32 matrix: the inverse of pad_float for a GEMM's result.
@compute @workgroup_size(256)
fn crop_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  if (i >= p.rows * p.cols) { return; }
  dst[i] = src[(i / p.cols) * p.cols_in + i % p.cols];
}

// The im2col matrix of an NHWC conv input in the working precision: dst[m, k] with m = (n, oh, ow) and
// k = (kh, kw, ci) is x[n, oh·stride + kh - pad, ow·stride + kw - pad, ci], 0 in the padding. The
// tensor-core conv forward multiplies it by the [KH·KW·Cin, Cout] weight. One invocation per element.
@compute @workgroup_size(256)
fn im2col_float(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) t: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + t;
  if (i >= p.M * p.K) { return; }
  let m = i / p.K;
  let k = i % p.K;
  let ow = m % p.OW;
  let q = m / p.OW;
  let oh = q % p.OH;
  let n = q / p.OH;
  let ci = k % p.Cin;
  let tap = k / p.Cin;
  let ih = i32(oh * p.stride + tap / p.KW) - i32(p.pad);
  let iw = i32(ow * p.stride + tap % p.KW) - i32(p.pad);
  let inside = u32(ih) < p.H && u32(iw) < p.W;
  let at = ((n * p.H + u32(select(0, ih, inside))) * p.W + u32(select(0, iw, inside))) * p.Cin + ci;
  dst[i] = select(float(0.0), src[at], inside);
}
