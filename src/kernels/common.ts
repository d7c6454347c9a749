/** Binding shorthands for the declarations in src/kernels/: an array of this element type, read or written. */
import type { BindingDecl } from '../gpu/kernel.ts';

export const readF32 = { access: 'read', type: 'f32' } as const satisfies BindingDecl;
export const writeF32 = { access: 'read_write', type: 'f32' } as const satisfies BindingDecl;
export const readU32 = { access: 'read', type: 'u32' } as const satisfies BindingDecl;
export const writeU32 = { access: 'read_write', type: 'u32' } as const satisfies BindingDecl;
/** An array in the working precision (f32, or f16 under `--precision f16`), read or written. */
export const readFloat = { access: 'read', type: 'float' } as const satisfies BindingDecl;
export const writeFloat = { access: 'read_write', type: 'float' } as const satisfies BindingDecl;
