/**
 * Every declared kernel entry point, family by family: the list test/kernels.test.ts compiles so that a
 * declaration that does not match its WGSL body fails at test time rather than at dispatch.
 */
import type { KernelDecl } from '../gpu/kernel.ts';
import { elementwise } from './elementwise.ts';

/** The declaration objects of each WGSL family, by family name. */
export const KERNEL_FAMILIES: Readonly<Record<string, Readonly<Record<string, KernelDecl>>>> = {
  elementwise,
};

/** Every declared entry point. */
export function allKernels(): KernelDecl[] {
  return Object.values(KERNEL_FAMILIES).flatMap((family) => Object.values(family));
}
