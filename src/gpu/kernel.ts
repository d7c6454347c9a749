/**
 * Typed kernel declarations: the one contract between TypeScript and WGSL.
 *
 * Each WGSL entry point is declared once in TypeScript (src/kernels/<family>.ts): its uniform parameters
 * (named, typed u32 / i32 / f32, booleans, enums), its storage bindings (named, with access and element
 * type) and its template constants. When the kernel is compiled, the WGSL `struct Params`, the
 * `var<uniform> p` and the `@binding` lines are generated from the declaration and appended to the
 * shader body (shaders/<family>.wgsl holds only bodies), and the module is cut down to the functions
 * the entry point reaches. Every entry is therefore a module of its own: two entries of one family may
 * use the same binding name at different slots, and each has a Params struct with exactly its fields.
 *
 * `dispatchKernel(decl, { params, bindings, defines, workgroups })` is checked by the compiler: a
 * missing or misspelt parameter or binding name, a number for a boolean or an unknown enum value does
 * not type-check. The uniform bytes are packed by the Params builder in the declaration's order.
 */
import { gpu, type Gpu, type ResolvedKernel } from './device.ts';
import { Params } from './params.ts';
import type { Access, KernelSource } from './pipelines.ts';

/** A uniform parameter: a WGSL scalar, a boolean (a u32 0/1 in WGSL) or an enum (a u32 index, with consts). */
export type ParamType = 'u32' | 'i32' | 'f32' | 'bool' | readonly [string, ...string[]];
/**
 * Element types a storage binding may hold. `float` and `vec4<float>` follow the working precision chosen
 * at dispatch (`precision: 'f32' | 'f16'`): the header declares `alias float = f32;` or `= f16;` (with
 * `enable f16;` before the module), so one body serves both; the body converts with `f32(...)` where it
 * accumulates, which is a no-op in f32.
 */
export type ElementType = 'f32' | 'u32' | 'i32' | 'vec4<f32>' | 'atomic<u32>' | 'float' | 'vec4<float>' | 'f16';
/** The working precision of a precision-following entry's `float` bindings. */
export type Precision = 'f32' | 'f16';
/**
 * A storage binding: how the entry accesses it, and what the array holds. `type` may also name a template
 * constant of type 'storage' (written in capitals): the array then holds that constant's element type, chosen
 * per dispatch independently of the working precision (the GEMM's C: f16 activations or f32 gradients).
 */
export interface BindingDecl {
  readonly access: 'read' | 'read_write';
  readonly type: ElementType | Uppercase<string>;
}
/**
 * A template constant written `{{NAME}}` in the body: a u32 (number), a bool, an enum (its index; the
 * header declares a constant NAME_VALUE per value so the body compares against names, not numbers),
 * 'wgsl': a piece of WGSL text, for what a constant cannot express (the subgroup builtin call of the GEMM's
 * subgroup variants, which must not appear where the feature is off), or 'storage': an element type, 'f32'
 * or 'f16', declared as `alias NAME = f16;` for the bindings whose type names it (the body converts with
 * `NAME(v)` on store, a no-op in f32).
 */
export type DefineType = 'u32' | 'bool' | 'wgsl' | 'storage' | readonly [string, ...string[]];

export type ParamsDecl = Readonly<Record<string, ParamType>>;
export type BindingsDecl = Readonly<Record<string, BindingDecl>>;
export type DefinesDecl = Readonly<Record<string, DefineType>>;

/** What one entry point needs; bindings take slots 1, 2, ... in the order written (slot 0 is the uniform block). */
export interface EntrySpec {
  readonly params?: ParamsDecl;
  readonly bindings: BindingsDecl;
  readonly defines?: DefinesDecl;
  /** WGSL extensions the entry needs (`enable NAME;` opens its module): e.g. subgroups for the tensor-core GEMM. */
  readonly enables?: readonly string[];
  /** Template values the compile-every-entry test uses (required when `defines` is given). */
  readonly sample?: Readonly<Record<string, number | boolean | string>>;
}

/** A declared entry point of shaders/<family>.wgsl. */
export interface KernelDecl<
  P extends ParamsDecl = ParamsDecl,
  B extends BindingsDecl = BindingsDecl,
  D extends DefinesDecl = DefinesDecl,
> {
  readonly family: string;
  readonly entry: string;
  readonly params: P;
  readonly bindings: B;
  readonly defines: D;
  readonly sample: Readonly<Record<string, number | boolean | string>>;
  /** The generated WGSL declarations (Params struct, uniform, bindings, enum consts), in f32. */
  readonly header: string;
  /** The f16 header of an entry with `float` bindings (null when the entry does not follow the precision). */
  readonly headerF16: string | null;
  /** WGSL extensions enabled at the top of the entry's module (f16 included when a binding is f16). */
  readonly enables: readonly string[];
  /** Unique per declaration object (the pipeline cache keys on it). */
  readonly id: number;
}

let declarations = 0;

type ParamsOf<S extends EntrySpec> = S['params'] extends ParamsDecl ? S['params'] : {};
type DefinesOf<S extends EntrySpec> = S['defines'] extends DefinesDecl ? S['defines'] : {};

/** The TypeScript value of a parameter of type T. */
export type ParamValue<T extends ParamType> = T extends 'bool'
  ? boolean
  : T extends readonly string[]
    ? T[number]
    : number;
export type ParamValues<P extends ParamsDecl> = { -readonly [K in keyof P]: ParamValue<P[K]> };
export type BindingValues<B extends BindingsDecl> = { -readonly [K in keyof B]: GPUBuffer };
export type DefineValues<D extends DefinesDecl> = {
  -readonly [K in keyof D]: D[K] extends 'bool'
    ? boolean
    : D[K] extends 'wgsl'
      ? string
      : D[K] extends 'storage'
        ? Precision
        : D[K] extends readonly string[]
          ? D[K][number]
          : number;
};

/** True when some binding of B holds the working precision (`float`, `vec4<float>`). */
type FollowsPrecision<B extends BindingsDecl> = true extends {
  [K in keyof B]: B[K]['type'] extends 'float' | 'vec4<float>' ? true : false;
}[keyof B]
  ? true
  : false;

/** The arguments of `dispatchKernel` for a declaration; `params`, `defines` and `precision` only where declared. */
export type DispatchOf<K extends KernelDecl> = {
  bindings: BindingValues<K['bindings']>;
  workgroups: readonly [number, number?, number?];
} & (keyof K['params'] extends never ? { params?: undefined } : { params: ParamValues<K['params']> }) &
  (keyof K['defines'] extends never ? { defines?: undefined } : { defines: DefineValues<K['defines']> }) &
  (FollowsPrecision<K['bindings']> extends true ? { precision: Precision } : { precision?: undefined });

const IDENT = /^[A-Za-z_]\w*$/;

function enumConst(param: string, value: string): string {
  return `${param}_${value}`.toUpperCase();
}

/** The WGSL declarations generated for one entry. */
function generateHeader(family: string, entry: string, spec: EntrySpec, precision: Precision | null): string {
  const lines = [`// ---- generated from the declaration of ${family}.${entry} (src/kernels/${family}.ts)`];
  if (precision !== null) lines.push(`alias float = ${precision};`);
  const params = Object.entries(spec.params ?? {});
  if (params.length > 0) {
    lines.push('struct Params {');
    for (const [name, type] of params)
      lines.push(`  ${name}: ${typeof type === 'string' && type !== 'bool' ? type : 'u32'},`);
    lines.push('}', '@group(0) @binding(0) var<uniform> p: Params;');
    for (const [name, type] of params) {
      if (typeof type !== 'string')
        type.forEach((value, i) => lines.push(`const ${enumConst(name, value)}: u32 = ${i}u;`));
    }
  }
  for (const [name, type] of Object.entries(spec.defines ?? {})) {
    if (typeof type !== 'string')
      type.forEach((value, i) => lines.push(`const ${enumConst(name, value)}: u32 = ${i}u;`));
  }
  Object.entries(spec.bindings).forEach(([name, b], i) => {
    lines.push(`@group(0) @binding(${i + 1}) var<storage, ${b.access}> ${name}: array<${b.type}>;`);
  });
  return lines.join('\n') + '\n';
}

function followsPrecision(spec: EntrySpec): boolean {
  return Object.values(spec.bindings).some((b) => b.type === 'float' || b.type === 'vec4<float>');
}

function checkSpec(family: string, entry: string, spec: EntrySpec): void {
  const where = `kernel declaration ${family}.${entry}`;
  // Bindings and template constants are module-scope names beside the entry function; parameters are
  // fields of `p`, so only they may repeat the entry's name.
  const moduleNames = [...Object.keys(spec.bindings), ...Object.keys(spec.defines ?? {}), entry];
  const names = [...Object.keys(spec.params ?? {}), ...moduleNames];
  for (const name of names)
    if (!IDENT.test(name) || name === 'p') throw new Error(`${where}: "${name}" is not a usable WGSL name`);
  if (new Set(names).size !== names.length - (Object.hasOwn(spec.params ?? {}, entry) ? 1 : 0)) {
    throw new Error(`${where}: a name is declared twice`);
  }
  for (const name of Object.keys(spec.defines ?? {})) {
    if (spec.sample?.[name] === undefined) throw new Error(`${where}: template constant ${name} needs a sample value`);
  }
  for (const [name, b] of Object.entries(spec.bindings)) {
    if (!ELEMENT_TYPES.has(b.type) && spec.defines?.[b.type] !== 'storage') {
      throw new Error(
        `${where}: binding ${name} has type ${b.type}, which is no element type and no 'storage' constant`,
      );
    }
  }
}

const ELEMENT_TYPES = new Set<string>([
  'f32',
  'u32',
  'i32',
  'vec4<f32>',
  'atomic<u32>',
  'float',
  'vec4<float>',
  'f16',
] satisfies ElementType[]);

/**
 * Declares the entry points of shaders/<family>.wgsl. Write the entries `as const`-free: the `const`
 * type parameter keeps the literal names and types, which is what makes dispatches type-checked.
 */
export function declareKernels<const F extends Readonly<Record<string, EntrySpec>>>(
  family: string,
  entries: F,
): { readonly [E in keyof F & string]: KernelDecl<ParamsOf<F[E]>, F[E]['bindings'], DefinesOf<F[E]>> } {
  const out: Record<string, KernelDecl> = {};
  for (const [entry, spec] of Object.entries(entries)) {
    checkSpec(family, entry, spec);
    out[entry] = {
      family,
      entry,
      params: spec.params ?? {},
      bindings: spec.bindings,
      defines: spec.defines ?? {},
      sample: spec.sample ?? {},
      header: generateHeader(family, entry, spec, followsPrecision(spec) ? 'f32' : null),
      headerF16: followsPrecision(spec) ? generateHeader(family, entry, spec, 'f16') : null,
      enables: [
        ...new Set([
          ...(Object.values(spec.bindings).some((b) => b.type === 'f16') ? ['f16'] : []),
          ...(spec.enables ?? []),
        ]),
      ],
      id: ++declarations,
    };
  }
  return out as { readonly [E in keyof F & string]: KernelDecl<ParamsOf<F[E]>, F[E]['bindings'], DefinesOf<F[E]>> };
}

/** How a parameter's value becomes its uniform word (constants, not a TypeScript enum, which some runtimes do not strip). */
const FIELD_U32 = 0;
const FIELD_I32 = 1;
const FIELD_F32 = 2;
const FIELD_BOOL = 3;
const FIELD_ENUM = 4;
type Field = typeof FIELD_U32 | typeof FIELD_I32 | typeof FIELD_F32 | typeof FIELD_BOOL | typeof FIELD_ENUM;

/**
 * What a dispatch of one declaration needs, worked out once per declaration instead of walking it per launch:
 * the uniform fields in order with their kinds, the binding names and accesses in slot order, the template
 * constants, and the resolved kernels by template values (a trie of maps keyed by the values themselves).
 */
interface DispatchPlan {
  readonly fieldNames: readonly string[];
  readonly fieldKinds: readonly Field[];
  readonly enumValues: ReadonlyArray<readonly string[] | null>;
  readonly bindingNames: readonly string[];
  readonly access: readonly Access[];
  readonly defineNames: readonly string[];
  /** The storage buffers of the launch being recorded, in slot order (reused by every launch). */
  readonly buffers: GPUBuffer[];
  /** The device the resolved kernels belong to (a new device starts new tries). */
  gpu: Gpu | null;
  /** Resolved kernels by precision: an entry's f16 module is another pipeline. */
  f32: ResolvedTrie;
  f16: ResolvedTrie;
}

/** A declaration's resolved kernels in one precision: the one without template constants, or a trie by their values. */
interface ResolvedTrie {
  resolved: ResolvedKernel | null;
  byDefine: Map<unknown, unknown> | null;
}

const plans: DispatchPlan[] = [];

function planOf(decl: KernelDecl): DispatchPlan {
  let plan = plans[decl.id];
  if (plan) return plan;
  const fields = Object.entries(decl.params);
  const bindingNames = Object.keys(decl.bindings);
  plan = {
    fieldNames: fields.map(([name]) => name),
    fieldKinds: fields.map(([, type]) =>
      type === 'u32'
        ? FIELD_U32
        : type === 'i32'
          ? FIELD_I32
          : type === 'f32'
            ? FIELD_F32
            : type === 'bool'
              ? FIELD_BOOL
              : FIELD_ENUM,
    ),
    enumValues: fields.map(([, type]) => (typeof type === 'string' ? null : type)),
    bindingNames,
    access: bindingNames.map((name) => (decl.bindings[name].access === 'read' ? 'read' : 'rw')),
    defineNames: Object.keys(decl.defines),
    buffers: new Array<GPUBuffer>(bindingNames.length),
    gpu: null,
    f32: { resolved: null, byDefine: null },
    f16: { resolved: null, byDefine: null },
  };
  plans[decl.id] = plan;
  return plan;
}

/**
 * Writes an entry's uniform fields in declaration order from word `at` of the three views of one buffer
 * (booleans as 0/1, enums as their index); returns the number of words written.
 */
function packFields(
  decl: KernelDecl,
  plan: DispatchPlan,
  values: Readonly<Record<string, unknown>>,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  at: number,
): number {
  const names = plan.fieldNames;
  const kinds = plan.fieldKinds;
  for (let i = 0; i < names.length; i++) {
    const v = values[names[i]];
    if (v === undefined) throw new TypeError(`${decl.family}.${decl.entry}: parameter ${names[i]} is missing`);
    switch (kinds[i]) {
      case FIELD_U32:
        if ((v as number) >>> 0 !== v)
          throw new RangeError(
            `uniform u32 out of range: ${String(v)} (${decl.family}.${decl.entry} parameter ${names[i]})`,
          );
        u32[at + i] = v as number;
        break;
      case FIELD_I32:
        if (((v as number) | 0) !== v)
          throw new RangeError(
            `uniform i32 out of range: ${String(v)} (${decl.family}.${decl.entry} parameter ${names[i]})`,
          );
        i32[at + i] = v as number;
        break;
      case FIELD_F32:
        f32[at + i] = v as number;
        break;
      case FIELD_BOOL:
        u32[at + i] = v ? 1 : 0;
        break;
      default: {
        const index = plan.enumValues[i]!.indexOf(v as string);
        if (index < 0)
          throw new RangeError(
            `${decl.family}.${decl.entry}: ${names[i]} is ${String(v)}, not one of ${plan.enumValues[i]!.join(', ')}`,
          );
        u32[at + i] = index;
      }
    }
  }
  return names.length;
}

/** Packs an entry's uniform block in declaration order (booleans as 0/1, enums as their index). */
export function packParams(decl: KernelDecl, values: Readonly<Record<string, unknown>>): Params {
  const plan = planOf(decl);
  return new Params().pack(plan.fieldNames.length, (u32, i32, f32, at) =>
    packFields(decl, plan, values, u32, i32, f32, at),
  );
}

/** The pipeline identity of a declared entry with template values (shared by dispatch and compile-all). */
export function kernelSource(
  decl: KernelDecl,
  defines: Readonly<Record<string, unknown>> = {},
  precision: Precision = 'f32',
): KernelSource {
  const entries = Object.entries(decl.defines).map(([name, type]) => {
    const v = defines[name];
    if (v === undefined) throw new TypeError(`${decl.family}.${decl.entry}: template constant ${name} is missing`);
    if (type === 'storage' && v !== 'f32' && v !== 'f16')
      throw new RangeError(`${decl.family}.${decl.entry}: ${name} is ${String(v)}, not f32 or f16`);
    if (typeof type !== 'string') {
      const index = type.indexOf(v as string);
      if (index < 0)
        throw new RangeError(`${decl.family}.${decl.entry}: ${name} is ${String(v)}, not one of ${type.join(', ')}`);
      return [name, index] as const;
    }
    return [name, type === 'bool' ? String(Boolean(v)) : type === 'wgsl' ? String(v) : (v as number)] as const;
  });
  const base = {
    family: decl.family,
    entry: decl.entry,
    declarationId: decl.id,
    defines: entries.length > 0 ? Object.fromEntries(entries) : undefined,
  };
  // `enable` must open the module; the directives share the first line so compile errors keep the file's line numbers.
  const directives = (enables: readonly string[]) =>
    enables.length > 0 ? { directives: enables.map((e) => `enable ${e}; `).join('') } : {};
  // Storage constants become aliases after the declaration's header (an f16 one enables f16).
  const storage = entries.filter(([name]) => decl.defines[name] === 'storage');
  const aliases = storage.map(([name, v]) => `alias ${name} = ${String(v)};\n`).join('');
  const storageF16 = storage.some(([, v]) => v === 'f16') ? ['f16'] : [];
  if (precision === 'f32')
    return { ...base, header: decl.header + aliases, ...directives([...new Set([...storageF16, ...decl.enables])]) };
  if (decl.headerF16 === null)
    throw new TypeError(`${decl.family}.${decl.entry} has no float bindings, so it cannot run in ${precision}`);
  return {
    ...base,
    header: decl.headerF16 + aliases,
    ...directives([...new Set(['f16', ...decl.enables])]),
    precision,
  };
}

/**
 * The resolved kernel of a declaration with these template values in this precision, found in the plan's trie
 * or resolved once. Everything `kernelKey` tells apart is here: the declaration (family, entry, id, layout) by
 * the plan, the precision by the trie, the template values along it.
 */
function resolvedKernel(
  g: Gpu,
  decl: KernelDecl,
  plan: DispatchPlan,
  defines: Readonly<Record<string, unknown>> | undefined,
  precision: Precision,
): ResolvedKernel {
  if (plan.gpu !== g) {
    plan.gpu = g;
    plan.f32 = { resolved: null, byDefine: null };
    plan.f16 = { resolved: null, byDefine: null };
  }
  const trie = precision === 'f16' ? plan.f16 : plan.f32;
  const names = plan.defineNames;
  if (names.length === 0) return (trie.resolved ??= resolveNow(g, decl, plan, defines, precision));
  if (defines === undefined) return resolveNow(g, decl, plan, defines, precision); // throws: the template constants are missing
  let node = (trie.byDefine ??= new Map());
  for (let i = 0; i < names.length - 1; i++) {
    const value = defines[names[i]];
    let next = node.get(value) as Map<unknown, unknown> | undefined;
    if (!next) node.set(value, (next = new Map()));
    node = next;
  }
  const last = defines[names[names.length - 1]];
  let kernel = node.get(last) as ResolvedKernel | undefined;
  if (!kernel) node.set(last, (kernel = resolveNow(g, decl, plan, defines, precision)));
  return kernel;
}

function resolveNow(
  g: Gpu,
  decl: KernelDecl,
  plan: DispatchPlan,
  defines: Readonly<Record<string, unknown>> | undefined,
  precision: Precision,
): ResolvedKernel {
  return g.resolve(kernelSource(decl, defines, precision), plan.fieldNames.length > 0, plan.access);
}

/**
 * Records one launch of a declared entry point. Its uniform fields go straight into the recorder's staging and
 * its buffers into the declaration's reused list (no Params block, binding list or key string per launch);
 * inside `compileAll` it goes through `gpu().dispatch`, the general low-level call.
 */
export function dispatchKernel<K extends KernelDecl>(decl: K, args: DispatchOf<K>): void {
  const g = gpu();
  const plan = planOf(decl);
  const names = plan.bindingNames;
  const values = args.bindings as Readonly<Record<string, GPUBuffer | undefined>>;
  const buffers = plan.buffers;
  for (let i = 0; i < names.length; i++) {
    const buffer = values[names[i]];
    if (buffer === undefined) throw new TypeError(`${decl.family}.${decl.entry}: binding ${names[i]} is missing`);
    buffers[i] = buffer;
  }
  const hasParams = plan.fieldNames.length > 0;
  if (g.collectingKernels) {
    g.dispatch({
      kernel: kernelSource(decl, args.defines, args.precision ?? 'f32'),
      params: hasParams ? packParams(decl, args.params ?? {}) : undefined,
      bindings: buffers.map((buffer, i) => ({ buffer, access: plan.access[i] })),
      workgroups: args.workgroups,
    });
    return;
  }
  const kernel = resolvedKernel(g, decl, plan, args.defines, args.precision ?? 'f32');
  const words = hasParams
    ? packFields(decl, plan, args.params ?? {}, g.uniformU32, g.uniformI32, g.uniformF32, g.reserveUniforms())
    : -1;
  const wg = args.workgroups;
  g.dispatchResolved(kernel, words, buffers, names.length, wg[0], wg[1], wg[2]);
}

/**
 * Compiles every given entry (with its sample template values) in parallel and throws if any fails:
 * the check that each declaration matches its WGSL body, run by test/kernels.test.ts. Entries that
 * follow the precision compile in f16 too when the adapter has shader-f16.
 */
export async function compileDeclared(decls: readonly KernelDecl[]): Promise<number> {
  const g = gpu();
  const stand = g.pool.acquire(16);
  try {
    const compiled = await g.compileAll(() => {
      for (const decl of decls) {
        // An entry with more storage bindings than the adapter offers is never launched there (sgd_wide).
        if (Object.keys(decl.bindings).length > g.limits.maxStorageBuffersPerShaderStage) continue;
        const params = Object.keys(decl.params).length > 0 ? new Params() : undefined;
        const precisions: Precision[] = decl.headerF16 !== null && g.features.f16 ? ['f32', 'f16'] : ['f32'];
        for (const precision of precisions) {
          g.dispatch({
            kernel: kernelSource(decl, decl.sample, precision),
            params,
            bindings: Object.values(decl.bindings).map((b) => ({
              buffer: stand,
              access: b.access === 'read' ? 'read' : 'rw',
            })),
            workgroups: [1],
          });
        }
      }
    });
    await g.sync(); // compile errors arrive asynchronously; sync reports them
    return compiled;
  } finally {
    g.pool.release(stand);
  }
}
