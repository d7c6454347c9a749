/**
 * One per-adapter variant choice for every GEMM-like kernel (the GEMM of matmul and every conv pass, the
 * nearest-centroid GEMM + argmax). A kernel family declares its named variants, whether a variant can run
 * on this adapter (and why not), and computes its default for a shape; `VariantChoice.choose` then picks,
 * in this order:
 *   1. a forced variant (tests, benchmarks and the tuner force one with `force`);
 *   2. the run's pinned table (a resumed run's variants.json, so it reproduces bit for bit);
 *   3. the autotuner's table (src/gpu/tuner.ts: measured on this adapter, cached per adapter and driver);
 *   4. the family's default, today's fixed table (on CPU adapters the tuned table is off by default, so
 *      seeded results stay those of the fixed table).
 * A table maps `kernel/shapeClass` to a variant name; names a family does not know, or variants this
 * adapter cannot run, are passed over. Every choice made from 2-4 is remembered (`usedVariants`) so a run
 * can record what it used.
 */
import type { Gpu } from './device.ts';

/** `kernel/shapeClass` -> variant name. */
export type VariantTable = Record<string, string>;

/** A kernel's family of interchangeable variants (same results up to the order of sums). */
export interface VariantFamily<V> {
  /** Kernel name, the first part of a table key ('gemm', 'nearest'). */
  kernel: string;
  /** Every named variant, in the order the tuner tries them. */
  variants: ReadonlyMap<string, V>;
  /** Why `v` cannot run on this adapter (workgroup size or storage, a missing feature), or null if it can. */
  unsupported(v: V, g: Gpu): string | null;
}

const families = new Map<string, VariantChoice<unknown>>();
let pinned: VariantTable = {};
let tuned: VariantTable = {};
let used: VariantTable = {};

export function tableKey(kernel: string, shapeClass: string): string {
  return `${kernel}/${shapeClass}`;
}

/** The variant choice of one kernel family; create one per family, at module level beside the kernel. */
export class VariantChoice<V> {
  private forced: V | null = null;

  constructor(readonly family: VariantFamily<V>) {
    families.set(family.kernel, this as VariantChoice<unknown>);
  }

  /** Forces a variant (by name, or a descriptor of one: tests force odd split counts); null ends it. */
  force(v: V | string | null): void {
    this.forced = typeof v === 'string' ? this.named(v) : v;
  }

  get isForced(): boolean {
    return this.forced !== null;
  }

  /** The variant called `name`; throws naming the known ones if there is none. */
  named(name: string): V {
    const v = this.family.variants.get(name);
    if (v === undefined)
      throw new RangeError(
        `${this.family.kernel}: no variant "${name}" (known: ${[...this.family.variants.keys()].join(', ')})`,
      );
    return v;
  }

  /** The variant for `shapeClass` on `g`: forced, else pinned, else tuned, else `fallback` (a name). */
  choose(g: Gpu, shapeClass: string, fallback: string): V {
    if (this.forced !== null) return this.forced;
    const key = tableKey(this.family.kernel, shapeClass);
    const v = this.fromTable(pinned, key, g) ?? this.fromTable(tuned, key, g);
    if (v !== undefined) return v;
    used[key] = fallback;
    return this.named(fallback);
  }

  /** The variant `table` names for `key`, if this family knows it and `g` can run it (remembered as used). */
  private fromTable(table: VariantTable, key: string, g: Gpu): V | undefined {
    const name = table[key];
    const v = name === undefined ? undefined : this.family.variants.get(name);
    if (v === undefined || this.family.unsupported(v, g) !== null) return undefined;
    used[key] = name!;
    return v;
  }
}

/** The registered families by kernel name (the tuner and `odc info` list them). */
export function variantFamilies(): ReadonlyMap<string, VariantChoice<unknown>> {
  return families;
}

/** Ends every forced variant (tests call it when they are done). */
export function unforceAll(): void {
  for (const f of families.values()) f.force(null);
}

/** Sets the autotuner's table (empty: every kernel uses its family's default). */
export function setTunedTable(table: VariantTable): void {
  tuned = { ...table };
}

export function tunedTable(): VariantTable {
  return { ...tuned };
}

/** Pins a run's recorded table (resume); it wins over the tuned table. Empty unpins. */
export function setPinnedTable(table: VariantTable): void {
  pinned = { ...table };
}

/** Every (kernel, shape class) chosen since the last `resetUsedVariants`, with the variant it got. */
export function usedVariants(): VariantTable {
  return { ...used };
}

export function resetUsedVariants(): void {
  used = {};
}
