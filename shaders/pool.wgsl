// 2-D pooling over NHWC tensors. One thread per output element in the forward passes; one thread per
// input element in the backward passes, which gather from the windows that cover that element (no
// atomics, fixed summation order: deterministic), except max pooling with windows that do not overlap
// (kernel <= stride), whose backward scatters from each window to its own inputs. Launched on a 2-D
// grid of 256-wide workgroups.
//
// Window (oh, ow) covers padded rows [oh·stride, oh·stride + kernel) i.e. input rows
// [oh·stride - pad, oh·stride - pad + kernel); padding never wins a max and counts as 0 in an average.

// Parameters and bindings: src/kernels/pool.ts.

//!include grid

// First and one-past-last window index along one axis covering padded coordinate q (= input + pad).
fn window_range(q: u32, count: u32) -> vec2u {
  var lo = 0u;
  if (q >= p.kernel) { lo = (q - p.kernel) / p.stride + 1u; }
  let hi = min(q / p.stride + 1u, count);
  return vec2u(lo, hi);
}

// Output element i of the per-output kernels as (channel, ox, oy, image).
fn out_coords(i: u32) -> vec4u {
  return vec4u(i % p.c, (i / p.c) % p.ow, (i / (p.c * p.ow)) % p.oh, i / (p.c * p.ow * p.oh));
}

// The input pixel iy·W + ix under tap (ky, kx) of window (oy, ox), or -1 where the tap is in the padding.
fn window_pixel(oy: u32, ox: u32, ky: u32, kx: u32) -> i32 {
  let py = oy * p.stride + ky;
  let px = ox * p.stride + kx;
  if (py < p.pad || py >= p.h + p.pad || px < p.pad || px >= p.w + p.pad) { return -1; }
  return i32((py - p.pad) * p.w + px - p.pad);
}

// Max pooling forward. src = x, dst = y, argmax = ih·W + iw of the maximum (first in window order:
// row-major over the window, strict > so ties keep the earliest).
@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let o = out_coords(i);
  let base = o.w * p.h * p.w;
  var best = 0.0;
  var best_at = 0u;
  var found = false;
  for (var ky = 0u; ky < p.kernel; ky++) {
    for (var kx = 0u; kx < p.kernel; kx++) {
      let at = window_pixel(o.z, o.y, ky, kx);
      if (at < 0) { continue; }
      let v = f32(src[(base + u32(at)) * p.c + o.x]);
      if (!found || v > best) {
        best = v;
        best_at = u32(at);
        found = true;
      }
    }
  }
  dst[i] = float(best);
  argmax[i] = best_at;
}

// Max pooling backward. src = dy, argmax = saved argmax, dst = dx.
@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let ch = i % p.c;
  let ix = (i / p.c) % p.w;
  let iy = (i / (p.c * p.w)) % p.h;
  let b = i / (p.c * p.w * p.h);
  let here = iy * p.w + ix;
  let ys = window_range(iy + p.pad, p.oh);
  let xs = window_range(ix + p.pad, p.ow);
  var acc = 0.0;
  for (var oy = ys.x; oy < ys.y; oy++) {
    for (var ox = xs.x; ox < xs.y; ox++) {
      let o = ((b * p.oh + oy) * p.ow + ox) * p.c + ch;
      if (argmax[o] == here) { acc += src[o]; }
    }
  }
  dst[i] = acc;
}

// Max pooling backward for windows that do not overlap (kernel <= stride), one thread per OUTPUT
// element: writes its whole window, dy at the argmax and 0 elsewhere. Every input lies in at most one
// window, so no two threads write the same element; inputs in no window are zeroed beforehand. On
// lavapipe this ran ~4x faster than the gather (a quarter of the threads, fewer integer divisions).
// src = dy, argmax = saved argmax, dst = dx.
@compute @workgroup_size(256)
fn max_backward_disjoint(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let o = out_coords(i);
  let base = o.w * p.h * p.w;
  let g = src[i];
  let best_at = argmax[i];
  for (var ky = 0u; ky < p.kernel; ky++) {
    for (var kx = 0u; kx < p.kernel; kx++) {
      let at = window_pixel(o.z, o.y, ky, kx);
      if (at < 0) { continue; }
      dst[(base + u32(at)) * p.c + o.x] = select(0.0, g, u32(at) == best_at);
    }
  }
}

// Average pooling forward (count_include_pad: divide by kernel²). src = x, dst = y.
@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let o = out_coords(i);
  let base = o.w * p.h * p.w;
  var acc = 0.0;
  for (var ky = 0u; ky < p.kernel; ky++) {
    for (var kx = 0u; kx < p.kernel; kx++) {
      let at = window_pixel(o.z, o.y, ky, kx);
      if (at >= 0) { acc += f32(src[(base + u32(at)) * p.c + o.x]); }
    }
  }
  dst[i] = float(acc * p.inv_area);
}

// Average pooling backward. src = dy, dst = dx.
@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let ch = i % p.c;
  let ix = (i / p.c) % p.w;
  let iy = (i / (p.c * p.w)) % p.h;
  let b = i / (p.c * p.w * p.h);
  let ys = window_range(iy + p.pad, p.oh);
  let xs = window_range(ix + p.pad, p.ow);
  var acc = 0.0;
  for (var oy = ys.x; oy < ys.y; oy++) {
    for (var ox = xs.x; ox < xs.y; ox++) {
      acc += src[((b * p.oh + oy) * p.ow + ox) * p.c + ch];
    }
  }
  dst[i] = acc * p.inv_area;
}

// Global average pooling forward: [N, H, W, C] -> [N, C], one thread per (n, c). src = x, dst = y.
@compute @workgroup_size(256)
fn gap_forward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let ch = i % p.c;
  let b = i / p.c;
  let hw = p.h * p.w;
  var acc = 0.0;
  for (var s = 0u; s < hw; s++) {
    acc += f32(src[(b * hw + s) * p.c + ch]);
  }
  dst[i] = acc * p.inv_area;
}

// Global average pooling backward: dx[n, h, w, c] = dy[n, c] / (H·W). src = dy, dst = dx.
@compute @workgroup_size(256)
fn gap_backward(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = linear_index(wid, nwg, lid);
  if (i >= p.total) { return; }
  let ch = i % p.c;
  let b = i / (p.c * p.h * p.w);
  dst[i] = src[b * p.c + ch] * p.inv_area;
}
