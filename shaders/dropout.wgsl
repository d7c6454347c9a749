// Inverted dropout with a counter-based mask: element i of a tensor is kept when
// hash(seed, i) >= threshold (threshold = floor(p·2^32)), and kept values are scaled by 1 / (1 - p).
// No RNG state is stored: the backward pass reruns this kernel on the gradient with the same seed.
// src/ref/dropout.ts computes the same hash on the CPU; keep the two in step.

// Parameters and bindings: src/kernels/dropout.ts.

// A 32-bit integer finaliser (xorshift-multiply, constants from Chris Wellons' hash-prospector "lowbias32").
fn mix32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= 0x7feb352du;
  x ^= x >> 15u;
  x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}

fn dropout_hash(seed: u32, i: u32) -> u32 {
  let key = mix32(seed ^ 0x9e3779b9u);
  return mix32(mix32(i ^ key) + key);
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid;
  if (i >= p.n) { return; }
  let keep = dropout_hash(p.seed, i) >= p.threshold;
  dst[i] = select(0.0, src[i] * p.scale, keep);
}
