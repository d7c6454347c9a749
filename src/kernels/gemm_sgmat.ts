/**
 * Entry point of shaders/gemm_sgmat.wgsl: the tensor-core GEMM (f16 in, f32 accumulate) for adapters that
 * list a subgroup-matrix config. Not in KERNEL_FAMILIES: it compiles only where Dawn exposes
 * `chromium-experimental-subgroup-matrix`, and test/tensor-cores.test.ts compiles it there (and says why
 * it skipped elsewhere).
 */
import { declareKernels } from '../gpu/kernel.ts';
import { writeF32 } from './common.ts';

export const gemmSgmat = declareKernels('gemm_sgmat', {
  /** C = A·B over padded row-major operands; one subgroup per workgroup, TR×TC result matrices each */
  gemm_sgmat: {
    params: { M: 'u32', N: 'u32', K: 'u32' },
    bindings: { A: { access: 'read', type: 'f16' }, B: { access: 'read', type: 'f16' }, C: writeF32 },
    enables: ['subgroups', 'subgroup_size_control', 'chromium_experimental_subgroup_matrix'],
    defines: { CM: 'u32', CN: 'u32', CK: 'u32', TR: 'u32', TC: 'u32', SG: 'u32' },
    sample: { CM: 16, CN: 16, CK: 16, TR: 2, TC: 2, SG: 32 },
  },
});
