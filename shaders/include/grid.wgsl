// Linear invocation id of a 1-D launch with 256-wide workgroups on the 2-D grid of grid() in
// src/gpu/device.ts: (wid.x + wid.y * nwg.x) * 256 + lid. Callers guard the tail.
fn linear_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * 256u + lid;
}
