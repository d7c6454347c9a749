/** The precision paths of this adapter, as `odc info` prints them (runs the tensor-core self-check where it applies). */
import { gpu } from '../gpu/device.ts';
import { checkTensorCores } from './tensor-cores.ts';

/** One line per path: f32, f16 (shader-f16) and the tensor-core GEMM with its self-check's verdict. */
export async function precisionPaths(): Promise<string[]> {
  const f = gpu().features;
  const lines = [
    'precision f32: yes',
    `precision f16: ${f.f16 ? 'yes (shader-f16: f16 GEMM operands, f32 accumulation)' : 'no (the adapter lacks shader-f16)'}`,
  ];
  const status = f.f16 ? await checkTensorCores() : { state: 'unavailable' as const, reason: 'needs shader-f16' };
  const subgroup = `subgroup size ${gpu().subgroupSizes.min}-${gpu().subgroupSizes.max}`;
  if (status.state === 'unavailable')
    lines.push(`tensor cores (subgroup matrices): no (${status.reason}); ${subgroup}`);
  else if (status.state === 'failed')
    lines.push(`tensor cores (subgroup matrices): disabled, the self-check failed (${status.reason})`);
  else {
    const c = status.config;
    const verdict =
      status.state === 'passed'
        ? `self-check passed (max error ${status.maxError.toExponential(1)})`
        : 'self-check not run';
    lines.push(
      `tensor cores (subgroup matrices): ${c.componentType}->${c.resultComponentType} ${c.M}x${c.N}x${c.K}, subgroup size pinned to ${status.subgroupSize}; ${verdict}`,
    );
  }
  return lines;
}
