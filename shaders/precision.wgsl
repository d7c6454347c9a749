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
