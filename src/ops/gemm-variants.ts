/**
 * The GEMM kernel family (shaders/gemm.wgsl) that matmul, linear and every conv pass run on, and its
 * default choice. Two bodies: `regs` (register blocks, no workgroup memory: lavapipe's) and `tiled`
 * (A and B staged in workgroup memory: GPUs'), the tiled one in workgroup tiles from 64x64 to 128x128,
 * 4x4 to 8x8 outputs per invocation, with or without conflict-free staging (A rows padded by one, columns
 * interleaved by vec4), a double-buffered K loop, and subgroup shuffles of A. B is always loaded and
 * staged as vec4. Which variant runs for a shape is the one per-adapter choice of src/gpu/variants.ts.
 * All variants give the same sums in the same order per split, so they differ in results only through
 * their split-K count.
 */
import type { Gpu } from '../gpu/device.ts';
import { VariantChoice } from '../gpu/variants.ts';
import type { GEMM_MODES } from '../kernels/gemm.ts';
import type { Precision } from '../gpu/kernel.ts';

/** A GEMM kernel variant: tile shape and body. */
export interface GemmVariant {
  body: 'regs' | 'tiled';
  /** Output rows / columns per invocation (TN a multiple of 4). */
  tm: number;
  tn: number;
  /** Invocations along M / N per workgroup. */
  wgm: number;
  wgn: number;
  /** K step of the tiled body (ignored by regs). */
  tk: number;
  /** regs body: invocation columns interleaved by vec4 instead of adjacent. */
  strided?: boolean;
  /** tiled body: A rows padded by one float and columns interleaved by vec4 (no workgroup-memory bank conflicts). */
  conflictFree?: boolean;
  /** tiled body: 2 = double-buffered K loop (twice the workgroup memory, one barrier per K step). */
  buffers?: 1 | 2;
  /** tiled body: rows of A shared through subgroup shuffles (needs `subgroups` and a fixed subgroup size). */
  subgroup?: boolean;
  /** Aim for at least this many workgroups before splitting K. */
  minWorkgroups: number;
  /** Smallest K range per split. */
  minKChunk: number;
}

/**
 * lavapipe: 16 rows × 8 columns per invocation, 8 invocations (one 256-bit SIMD batch) sharing their
 * rows, columns interleaved by vec4 across invocations: a 16×64 tile. Fastest of the variants tried
 * (see the list in bench/gemm.ts).
 */
export const CPU_VARIANT: GemmVariant = {
  body: 'regs',
  tm: 16,
  tn: 8,
  wgm: 1,
  wgn: 8,
  tk: 1,
  strided: true,
  minWorkgroups: 8,
  minKChunk: 256,
};
/** lavapipe, narrow outputs (e.g. dgrad into 3 input channels; see gemmDefault): invocations along M instead, 64×8 tiles. */
export const CPU_NARROW_VARIANT: GemmVariant = {
  body: 'regs',
  tm: 8,
  tn: 8,
  wgm: 8,
  wgn: 1,
  tk: 1,
  minWorkgroups: 8,
  minKChunk: 256,
};
/** GPUs' default: 64×64 tiles staged in workgroup memory, 16×16 invocations with 4×4 outputs each, K step 16. */
export const GPU_VARIANT: GemmVariant = {
  body: 'tiled',
  tm: 4,
  tn: 4,
  wgm: 16,
  wgn: 16,
  tk: 16,
  minWorkgroups: 264,
  minKChunk: 128,
};

interface TiledOptions {
  tk?: number;
  conflictFree?: boolean;
  buffers?: 1 | 2;
  subgroup?: boolean;
}

function tiled(bm: number, bn: number, tm: number, tn: number, o: TiledOptions = {}): [string, GemmVariant] {
  const tk = o.tk ?? 16;
  const name = `tiled-${bm}x${bn}-${tm}x${tn}${tk !== 16 ? `-k${tk}` : ''}${o.conflictFree ? '-cf' : ''}${o.buffers === 2 ? '-db' : ''}${o.subgroup ? '-sg' : ''}`;
  return [
    name,
    {
      ...GPU_VARIANT,
      tm,
      tn,
      wgm: bm / tm,
      wgn: bn / tn,
      tk,
      conflictFree: o.conflictFree,
      buffers: o.buffers,
      subgroup: o.subgroup,
    },
  ];
}

const cf = { conflictFree: true };
const db = { conflictFree: true, buffers: 2 } as const;

/** Every GEMM variant by name, the defaults first. */
export const GEMM_VARIANTS: ReadonlyMap<string, GemmVariant> = new Map([
  ['cpu-16x64', CPU_VARIANT],
  ['cpu-narrow-64x8', CPU_NARROW_VARIANT],
  ['cpu-narrow-64x4', { ...CPU_NARROW_VARIANT, tn: 4 }],
  ['tiled-64x64-4x4', GPU_VARIANT],
  tiled(64, 64, 4, 4, cf),
  tiled(64, 64, 8, 8, cf),
  tiled(128, 64, 8, 4, cf),
  tiled(64, 128, 4, 8, cf),
  tiled(128, 128, 8, 8, cf),
  tiled(128, 128, 4, 4, cf),
  tiled(64, 64, 4, 4, db),
  tiled(128, 64, 8, 4, db),
  tiled(128, 128, 8, 8, db),
  tiled(128, 128, 8, 8, { ...db, tk: 8 }),
  tiled(64, 64, 4, 4, { ...cf, subgroup: true }),
  tiled(128, 64, 8, 4, { ...cf, subgroup: true }),
  tiled(128, 128, 8, 8, { ...db, tk: 8, subgroup: true }),
]);

/** Bytes of workgroup memory a variant's kernel declares (0 for regs). */
export function gemmWorkgroupBytes(v: GemmVariant): number {
  if (v.body === 'regs') return 0;
  const bm = v.wgm * v.tm;
  const bn = v.wgn * v.tn;
  return 4 * (v.buffers ?? 1) * v.tk * (bm + (v.conflictFree ? 1 : 0) + bn);
}

/** The subgroup size a subgroup variant compiles for: the adapter's, when it is fixed. */
export function fixedSubgroupSize(g: Gpu): number | null {
  return g.features.subgroups && g.subgroupSizes.min === g.subgroupSizes.max && g.subgroupSizes.min > 0
    ? g.subgroupSizes.min
    : null;
}

/** Why a GEMM variant cannot run on this adapter, or null. */
export function gemmUnsupported(v: GemmVariant, g: Gpu): string | null {
  const invocations = v.wgm * v.wgn;
  const l = g.limits;
  if (invocations > l.maxComputeInvocationsPerWorkgroup)
    return `${invocations} invocations per workgroup, over this adapter's ${l.maxComputeInvocationsPerWorkgroup}`;
  if (invocations > l.maxComputeWorkgroupSizeX)
    return `workgroup size ${invocations}, over this adapter's maxComputeWorkgroupSizeX ${l.maxComputeWorkgroupSizeX}`;
  const bytes = gemmWorkgroupBytes(v);
  if (bytes > l.maxComputeWorkgroupStorageSize)
    return `${bytes} bytes of workgroup memory, over this adapter's ${l.maxComputeWorkgroupStorageSize}`;
  if (v.subgroup) {
    if (!g.features.subgroups) return 'the adapter (or this WebGPU implementation) has no "subgroups" feature';
    const size = fixedSubgroupSize(g);
    if (size === null)
      return `the subgroup size is not fixed on this adapter (${g.subgroupSizes.min}..${g.subgroupSizes.max})`;
    const group = Math.min(size, v.wgn);
    if (size % v.wgn !== 0 && v.wgn % size !== 0)
      return `subgroup size ${size} and ${v.wgn} invocations per row do not nest`;
    if (v.tm > group)
      return `${v.tm} rows per invocation exceed the ${group} lanes that share them (subgroup size ${size})`;
  }
  return null;
}

/** The one choice of GEMM variant (src/gpu/variants.ts); tests force variants through it. */
export const gemmChoice = new VariantChoice<GemmVariant>({
  kernel: 'gemm',
  variants: GEMM_VARIANTS,
  unsupported: gemmUnsupported,
});

const MODE_NAMES = {
  matmul: 'matmul',
  conv_forward: 'conv-fwd',
  conv_dgrad: 'conv-dgrad',
  conv_wgrad: 'conv-wgrad',
} as const;

/**
 * The shape class an M×N×K GEMM of `mode` is tuned for: the mode and the work, in three sizes (under
 * 2^24 multiply-adds, under 2^30, larger), e.g. `conv-wgrad/medium`; f16 operands are classes of their own
 * (`conv-wgrad/medium/f16`: half the bytes per operand move the best tile).
 */
export function gemmShapeClass(
  mode: (typeof GEMM_MODES)[number],
  M: number,
  N: number,
  K: number,
  precision: Precision = 'f32',
): string {
  const work = Math.log2(Math.max(1, M) * Math.max(1, N) * Math.max(1, K));
  return `${MODE_NAMES[mode]}/${work < 24 ? 'small' : work < 30 ? 'medium' : 'large'}${precision === 'f16' ? '/f16' : ''}`;
}

/** Output elements computed for an M×N GEMM once both sides are rounded up to the variant's tile. */
function paddedArea(v: GemmVariant, M: number, N: number): number {
  const bm = v.wgm * v.tm;
  const bn = v.wgn * v.tn;
  return Math.ceil(M / bm) * bm * Math.ceil(N / bn) * bn;
}

/**
 * Today's fixed choice for an M×N GEMM (the name). GPUs: the 64×64 tiled variant. CPU adapters: the 16×64
 * tile unless the narrow 64×8 (or 64×4) tile computes under 85% as many padded outputs (its 8×8 blocks
 * are ~15% slower per output), i.e. narrow outputs with many rows (dgrad into few channels), but not few
 * rows (a first conv's wgrad, M = 9), where 64-row tiles would idle most lanes.
 */
export function gemmDefault(g: Gpu, N: number, M: number): string {
  if (!g.isCpuAdapter) return 'tiled-64x64-4x4';
  const narrow = N <= 4 ? 'cpu-narrow-64x4' : 'cpu-narrow-64x8';
  return paddedArea(GEMM_VARIANTS.get(narrow)!, M, N) < 0.85 * paddedArea(CPU_VARIANT, M, N) ? narrow : 'cpu-16x64';
}
