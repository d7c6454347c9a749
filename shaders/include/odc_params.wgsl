// The uniform parameter block shared by the clustering families (shaders/kmeans.wgsl,
// shaders/odc_memory.wgsl): twelve scalars whose meaning each entry point documents.
struct P {
  n: u32,      // rows / elements
  d: u32,      // feature dimension
  k: u32,      // clusters / bound for indices
  flags: u32,  // entry-specific switches
  a: u32,
  b: u32,
  c: u32,
  e: u32,
  f0: f32,
  f1: f32,
  f2: f32,
  f3: f32,
}

@group(0) @binding(0) var<uniform> p: P;
