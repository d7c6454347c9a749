// Sum of v over the 256 invocations of a workgroup in a fixed tree order (deterministic: it does not
// depend on scheduling). Call from uniform control flow; every invocation gets the total.
var<workgroup> wg_sum_scratch: array<f32, 256>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
  wg_sum_scratch[lid] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { wg_sum_scratch[lid] = wg_sum_scratch[lid] + wg_sum_scratch[lid + s]; }
    workgroupBarrier();
  }
  let r = wg_sum_scratch[0];
  workgroupBarrier();
  return r;
}
