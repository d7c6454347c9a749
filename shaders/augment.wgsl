// Data augmentation. `augment` computes one output pixel (all C channels) of sample b per thread and
// writes the NHWC f32 output [B, out_h, out_w, C]. For output pixel (y, x), in torchvision's order
// (float semantics, every colour op clamps to [0, 1]):
//   1. rotation (nearest, black fill): the inverse rotation about the image centre picks an integer pixel
//      (yi, xi) of the flipped, resized crop, or black when it falls outside;
//   2. horizontal flip: xi -> out_w - 1 - xi;
//   3. resized crop (bilinear, align_corners=False): source row = yi * sy + oy, clamped to [ylo, yhi]
//      (the crop rows), likewise for columns; covers RandomResizedCrop and eval's resize + center crop;
//   4. colour jitter ops in the sample's order (0 brightness, 1 contrast, 2 saturation, 3 hue, 4 none);
//      contrast blends with the mean grayscale of the whole image as it is right before the contrast op,
//      which `contrast_mean` computes first (one workgroup per sample: strided sums, then one thread adds them);
//   5. grayscale (3 channels), 6. normalisation (x - mean) / std.
// The images live in storage buffers ("shards", each under the binding-size limit) holding per_shard
// whole images each, as bytes packed 4 per u32 (little-endian); the host launches once per shard and a
// launch skips the samples whose image lies in another shard. Parameters and bindings: src/kernels/augment.ts.

const STRIDE: u32 = 24u;
const WG: u32 = 256u;

var<workgroup> partial: array<f32, 256>;

fn load_byte(offset: u32) -> f32 {
  return f32((shard[offset >> 2u] >> ((offset & 3u) * 8u)) & 255u) / 255.0;
}

fn load_pixel(base: u32, y: u32, x: u32) -> vec3f {
  let off = base + (y * p.src_w + x) * p.channels;
  if (p.channels == 1u) {
    let v = load_byte(off);
    return vec3f(v, v, v);
  }
  return vec3f(load_byte(off), load_byte(off + 1u), load_byte(off + 2u));
}

fn grayscale(c: vec3f) -> f32 {
  if (p.channels == 1u) { return c.x; }
  return 0.2989 * c.x + 0.587 * c.y + 0.114 * c.z;
}

// The pixel after the geometric transforms, in [0, 1]; (0, 0, 0) where the rotation leaves the image.
fn geometric(s: u32, base: u32, y: u32, x: u32) -> vec3f {
  let ow = f32(p.out_w);
  let oh = f32(p.out_h);
  var yi = i32(y);
  var xi = i32(x);
  if (sp[s + 9u] != 0.0) {
    let cs = sp[s + 10u];
    let sn = sp[s + 11u];
    let xc = f32(x) + 0.5 - 0.5 * ow;
    let yc = f32(y) + 0.5 - 0.5 * oh;
    let fx = cs * xc - sn * yc + 0.5 * ow - 0.5;
    let fy = sn * xc + cs * yc + 0.5 * oh - 0.5;
    let rx = round(fx);
    let ry = round(fy);
    if (rx < 0.0 || ry < 0.0 || rx > ow - 1.0 || ry > oh - 1.0) { return vec3f(0.0); }
    xi = i32(rx);
    yi = i32(ry);
  }
  if (sp[s + 8u] != 0.0) { xi = i32(p.out_w) - 1 - xi; }
  let ylo = sp[s + 2u];
  let yhi = u32(sp[s + 3u]);
  let xlo = sp[s + 6u];
  let xhi = u32(sp[s + 7u]);
  let fy = max(f32(yi) * sp[s] + sp[s + 1u], ylo);
  let fx = max(f32(xi) * sp[s + 4u] + sp[s + 5u], xlo);
  let y0 = min(u32(floor(fy)), yhi);
  let x0 = min(u32(floor(fx)), xhi);
  let y1 = min(y0 + 1u, yhi);
  let x1 = min(x0 + 1u, xhi);
  let ly = fy - f32(y0);
  let lx = fx - f32(x0);
  let top = mix(load_pixel(base, y0, x0), load_pixel(base, y0, x1), lx);
  let bottom = mix(load_pixel(base, y1, x0), load_pixel(base, y1, x1), lx);
  return mix(top, bottom, ly);
}

fn rgb_to_hsv(c: vec3f) -> vec3f {
  let maxc = max(max(c.x, c.y), c.z);
  let minc = min(min(c.x, c.y), c.z);
  let eqc = maxc == minc;
  let cr = maxc - minc;
  let s = cr / select(maxc, 1.0, eqc);
  let crd = select(cr, 1.0, eqc);
  let rc = (maxc - c.x) / crd;
  let gc = (maxc - c.y) / crd;
  let bc = (maxc - c.z) / crd;
  var h: f32;
  if (maxc == c.x) {
    h = bc - gc;
  } else if (maxc == c.y) {
    h = 2.0 + rc - bc;
  } else {
    h = 4.0 + gc - rc;
  }
  h = fract(h / 6.0 + 1.0);
  return vec3f(h, s, maxc);
}

fn hsv_to_rgb(hsv: vec3f) -> vec3f {
  let h = hsv.x;
  let s = hsv.y;
  let v = hsv.z;
  let i6 = floor(h * 6.0);
  let f = h * 6.0 - i6;
  let i = u32(i6) % 6u;
  let pp = clamp(v * (1.0 - s), 0.0, 1.0);
  let q = clamp(v * (1.0 - s * f), 0.0, 1.0);
  let t = clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0);
  switch i {
    case 0u: { return vec3f(v, t, pp); }
    case 1u: { return vec3f(q, v, pp); }
    case 2u: { return vec3f(pp, v, t); }
    case 3u: { return vec3f(pp, q, v); }
    case 4u: { return vec3f(t, pp, v); }
    default: { return vec3f(v, pp, q); }
  }
}

fn apply_op(op: u32, s: u32, c: vec3f, mean: f32) -> vec3f {
  switch op {
    case 0u: {
      return clamp(c * sp[s + 12u], vec3f(0.0), vec3f(1.0));
    }
    case 1u: {
      let f = sp[s + 13u];
      return clamp(f * c + (1.0 - f) * mean, vec3f(0.0), vec3f(1.0));
    }
    case 2u: {
      if (p.channels == 1u) { return c; }
      let f = sp[s + 14u];
      return clamp(f * c + (1.0 - f) * grayscale(c), vec3f(0.0), vec3f(1.0));
    }
    case 3u: {
      if (p.channels == 1u) { return c; }
      var hsv = rgb_to_hsv(c);
      hsv.x = fract(hsv.x + sp[s + 15u]);
      return hsv_to_rgb(hsv);
    }
    default: {
      return c;
    }
  }
}

// The sample's image in this launch's shard, or -1 when another launch handles it. An out-of-range
// index is handled by the shard-0 launch (which writes NaN), reading image 0's bytes meanwhile.
fn image_base(b: u32) -> i32 {
  let img = indices[b];
  let valid = img < p.n_images;
  if (!select(p.shard_id == 0u, img / p.per_shard == p.shard_id, valid)) { return -1; }
  return i32(select(0u, img % p.per_shard, valid) * p.image_bytes);
}

// The colour of output pixel q of sample b after the geometric and colour-jitter transforms; with
// before_contrast, only the jitter ops that come before contrast are applied.
fn jittered(b: u32, base: u32, q: u32, mean: f32, before_contrast: bool) -> vec3f {
  let s = b * STRIDE;
  var c = geometric(s, base, q / p.out_w, q % p.out_w);
  let nops = u32(sp[s + 21u]);
  for (var k = 0u; k < nops; k++) {
    let op = u32(sp[s + 16u + k]);
    if (before_contrast && op == 1u) { break; }
    c = apply_op(op, s, c, mean);
  }
  return c;
}

@compute @workgroup_size(256)
fn contrast_mean(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = wid.x + wid.y * nwg.x;
  if (b >= p.batch) { return; }
  let base = image_base(b);
  if (base < 0) { return; }
  let npix = p.out_h * p.out_w;
  var acc = 0.0;
  for (var q = lid; q < npix; q += WG) {
    acc += grayscale(jittered(b, u32(base), q, 0.0, true));
  }
  partial[lid] = acc;
  workgroupBarrier();
  // one barrier, then a serial sum: barriers are what costs on CPU adapters (lavapipe)
  if (lid == 0u) {
    var total = 0.0;
    for (var t = 0u; t < WG; t++) { total += partial[t]; }
    means[b] = total / f32(npix);
  }
}

@compute @workgroup_size(256)
fn augment(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let npix = p.out_h * p.out_w;
  let i = (wid.x + wid.y * nwg.x) * WG + lid;
  if (i >= p.batch * npix) { return; }
  let b = i / npix;
  let q = i % npix;
  let base = image_base(b);
  if (base < 0) { return; }
  let s = b * STRIDE;
  var c = jittered(b, u32(base), q, select(0.0, means[b], p.need_mean != 0u), false);
  if (sp[s + 20u] != 0.0 && p.channels == 3u) { c = vec3f(grayscale(c)); }
  let o = i * p.channels;
  if (indices[b] >= p.n_images) {
    let nan = bitcast<f32>(p.nan_bits); // NaN marks an out-of-range image index
    for (var ch = 0u; ch < p.channels; ch++) { out[o + ch] = nan; }
    return;
  }
  out[o] = (c.x - p.mean0) * p.istd0;
  if (p.channels == 3u) {
    out[o + 1u] = (c.y - p.mean1) * p.istd1;
    out[o + 2u] = (c.z - p.mean2) * p.istd2;
  }
}
