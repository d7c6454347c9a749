/**
 * Pooling over NHWC tensors: max and average 2-D pooling (square kernel, stride, symmetric zero-size
 * padding; no ceil mode, no dilation) and global average pooling to [N, C]. One WGSL family
 * (shaders/pool.wgsl). Backward passes gather from the windows covering each input element, or, for max
 * pooling with disjoint windows, scatter from each window: no atomics, deterministic. Max pooling saves
 * the argmax (u32) during the forward pass. x may be an f16 activation (`--precision f16`): max and average
 * pooling then give f16, the global average pool f32 features (summed in f32); gradients are f32.
 */
import { grid } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { pool } from '../kernels/pool.ts';
import { Tensor, expectFloat, fmtShape, type FloatDType, type Shape } from '../tensor/tensor.ts';
import { record } from '../tensor/autograd.ts';
import { fillInPlace } from './elementwise.ts';

export interface PoolOptions {
  kernel: number;
  /** Defaults to `kernel`. */
  stride?: number;
  /** Implicit padding on each side; padding never wins a max and counts as 0 in an average. Default 0. */
  padding?: number;
}

interface PoolGeometry {
  n: number;
  h: number;
  w: number;
  c: number;
  oh: number;
  ow: number;
  kernel: number;
  stride: number;
  pad: number;
}

function expectNhwc(x: Tensor<FloatDType>, op: string): void {
  expectFloat(x, op);
  if (x.rank !== 4) throw new RangeError(`${op}: expected x of shape [N, H, W, C], got ${fmtShape(x.shape)}`);
  if (x.size === 0) throw new RangeError(`${op}: x ${fmtShape(x.shape)} is empty`);
}

function poolGeometry(x: Tensor<FloatDType>, opts: PoolOptions, op: string): PoolGeometry {
  expectNhwc(x, op);
  if (!opts || typeof opts !== 'object')
    throw new TypeError(`${op}: options { kernel, stride?, padding? } are required`);
  const kernel = opts.kernel;
  const stride = opts.stride ?? kernel;
  const pad = opts.padding ?? 0;
  const isInt = (v: number, min: number) => typeof v === 'number' && Number.isInteger(v) && v >= min;
  if (!isInt(kernel, 1)) throw new RangeError(`${op}: kernel must be a positive integer, got ${String(kernel)}`);
  if (!isInt(stride, 1)) throw new RangeError(`${op}: stride must be a positive integer, got ${String(stride)}`);
  if (!isInt(pad, 0)) throw new RangeError(`${op}: padding must be a non-negative integer, got ${String(pad)}`);
  if (2 * pad > kernel) throw new RangeError(`${op}: padding ${pad} must be at most half the kernel size ${kernel}`);
  const [n, h, w, c] = x.shape;
  const oh = Math.floor((h + 2 * pad - kernel) / stride) + 1;
  const ow = Math.floor((w + 2 * pad - kernel) / stride) + 1;
  if (h + 2 * pad < kernel || w + 2 * pad < kernel) {
    throw new RangeError(
      `${op}: kernel ${kernel} is larger than the padded input ${h + 2 * pad}x${w + 2 * pad} (x ${fmtShape(x.shape)}, padding ${pad})`,
    );
  }
  return { n, h, w, c, oh, ow, kernel, stride, pad };
}

/** One thread per element of `total` (outputs forward, inputs backward). */
function threads(total: number): [number, number] {
  return grid(Math.ceil(total / 256));
}

function outShape(geo: PoolGeometry): Shape {
  return [geo.n, geo.oh, geo.ow, geo.c];
}

/**
 * Max pooling, [N, H, W, C] -> [N, OH, OW, C] with OH = floor((H + 2·padding - kernel) / stride) + 1.
 * The gradient goes to the maximum of each window (the first in row-major window order on ties).
 */
export function maxPool2d<D extends FloatDType>(x: Tensor<D>, opts: PoolOptions): Tensor<D> {
  const geo = poolGeometry(x, opts, 'maxPool2d');
  const out = Tensor.empty(outShape(geo), x.dtype);
  const argmax = Tensor.empty(outShape(geo), 'u32');
  dispatchKernel(pool.max_forward, {
    params: { total: out.size, ...geo },
    bindings: { src: x.buffer, dst: out.buffer, argmax: argmax.buffer },
    precision: x.dtype,
    workgroups: threads(out.size),
  });
  record(out, 'maxPool2d', [x], (g) => {
    const dx = Tensor.empty(x.shape, 'f32');
    if (geo.kernel <= geo.stride) {
      // windows tile the input without overlap; inputs no window reaches (gaps, tails) start at zero
      const covered =
        geo.kernel === geo.stride && geo.pad === 0 && geo.oh * geo.stride === geo.h && geo.ow * geo.stride === geo.w;
      if (!covered) fillInPlace(dx, 0);
      dispatchKernel(pool.max_backward_disjoint, {
        params: { total: g.size, ...geo },
        bindings: { src: g.buffer, argmax: argmax.buffer, dst: dx.buffer },
        workgroups: threads(g.size),
      });
    } else {
      dispatchKernel(pool.max_backward, {
        params: { total: dx.size, ...geo },
        bindings: { src: g.buffer, argmax: argmax.buffer, dst: dx.buffer },
        workgroups: threads(dx.size),
      });
    }
    argmax.dispose(); // a node runs backward once
    return [dx];
  });
  if (!out.node) argmax.dispose();
  return out;
}

/** Average pooling (count_include_pad: every window divides by kernel²), same geometry as maxPool2d. */
export function avgPool2d<D extends FloatDType>(x: Tensor<D>, opts: PoolOptions): Tensor<D> {
  const geo = poolGeometry(x, opts, 'avgPool2d');
  const invArea = 1 / (geo.kernel * geo.kernel);
  const out = Tensor.empty(outShape(geo), x.dtype);
  dispatchKernel(pool.avg_forward, {
    params: { total: out.size, ...geo, inv_area: invArea },
    bindings: { src: x.buffer, dst: out.buffer },
    precision: x.dtype,
    workgroups: threads(out.size),
  });
  return record(out, 'avgPool2d', [x], (g) => {
    const dx = Tensor.empty(x.shape, 'f32');
    dispatchKernel(pool.avg_backward, {
      params: { total: dx.size, ...geo, inv_area: invArea },
      bindings: { src: g.buffer, dst: dx.buffer },
      workgroups: threads(dx.size),
    });
    return [dx];
  });
}

/** Mean over H and W: [N, H, W, C] -> [N, C], f32 (also for an f16 x). */
export function globalAvgPool(x: Tensor<FloatDType>): Tensor<'f32'> {
  expectNhwc(x, 'globalAvgPool');
  const [n, h, w, c] = x.shape;
  const invArea = 1 / (h * w);
  const out = Tensor.empty([n, c], 'f32');
  dispatchKernel(pool.gap_forward, {
    params: { total: out.size, h, w, c, inv_area: invArea },
    bindings: { src: x.buffer, dst: out.buffer },
    precision: x.dtype,
    workgroups: threads(out.size),
  });
  return record(out, 'globalAvgPool', [x], (g) => {
    const dx = Tensor.empty(x.shape, 'f32');
    dispatchKernel(pool.gap_backward, {
      params: { total: dx.size, h, w, c, inv_area: invArea },
      bindings: { src: g.buffer, dst: dx.buffer },
      workgroups: threads(dx.size),
    });
    return [dx];
  });
}
