/**
 * Entry points of shaders/pool.wgsl: 2-D max / average / global-average pooling over NHWC tensors.
 * total: threads (output elements forward, input elements backward); inv_area: 1/(kernel²) for average
 * pooling, 1/(h·w) for global average pooling. src/dst are x/y forward and dy/dx backward. The forward
 * passes read activations in the working precision (f16 under `--precision f16`); max and average pooling
 * write it too, the global average pool writes f32 features; the backward passes are f32 gradients.
 */
import { declareKernels } from '../gpu/kernel.ts';
import { readF32, readFloat, readU32, writeF32, writeFloat, writeU32 } from './common.ts';

const window = {
  total: 'u32',
  n: 'u32',
  h: 'u32',
  w: 'u32',
  c: 'u32',
  oh: 'u32',
  ow: 'u32',
  kernel: 'u32',
  stride: 'u32',
  pad: 'u32',
} as const;
const io = { src: readF32, dst: writeF32 } as const;
const activations = { src: readFloat, dst: writeFloat } as const;
const backwardFromArgmax = { src: readF32, argmax: readU32, dst: writeF32 } as const;
const global = { total: 'u32', h: 'u32', w: 'u32', c: 'u32', inv_area: 'f32' } as const;

export const pool = declareKernels('pool', {
  /** argmax: ih·W + iw of each window's maximum */
  max_forward: { params: window, bindings: { src: readFloat, dst: writeFloat, argmax: writeU32 } },
  max_backward: { params: window, bindings: backwardFromArgmax },
  /** kernel <= stride: windows do not overlap, so each scatters to its own inputs */
  max_backward_disjoint: { params: window, bindings: backwardFromArgmax },
  avg_forward: { params: { ...window, inv_area: 'f32' }, bindings: activations },
  avg_backward: { params: { ...window, inv_area: 'f32' }, bindings: io },
  gap_forward: { params: global, bindings: { src: readFloat, dst: writeF32 } },
  gap_backward: { params: global, bindings: io },
});
