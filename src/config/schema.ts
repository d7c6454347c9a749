/**
 * A small runtime schema for nested settings. One declaration gives the TypeScript type (`Infer`), the
 * defaults, the checks (type, range and allowed values of every key, unknown keys answered with the
 * nearest known name), the command-line shortcuts declared beside the key they set, and the rows of a
 * documentation table. In-house rather than a schema library: the needs are narrow (numbers, enums,
 * strings, booleans, integer lists, nested groups), and the error wording, the flag declarations and the
 * table rows would have to be bolted onto a library's own model anyway.
 */

/** A command-line shortcut for a setting (`--epochs N` for optim.epochs). */
export interface Shortcut {
  /** The flag without its dashes. */
  name: string;
  /** The placeholder shown in --help, e.g. N or X. */
  arg: string;
  /**
   * The `key=value` assignments the flag's text stands for (default: the setting itself). A flag that
   * sets more than one key (--data SOURCE[:PATH]) splits its text here.
   */
  assignments?: (text: string) => Array<[key: string, text: string]>;
}

/** One setting: its default, what it means, what it allows, and how an untyped value is checked. */
export interface Leaf<T> {
  readonly kind: 'leaf';
  readonly default: T;
  /** What the setting means (one sentence, for --help and the README). */
  readonly doc: string;
  /** What is allowed, as a phrase: "a positive integer", "one of "odc", "deepcluster"". */
  readonly allowed: string;
  /** The JSON type expected, as a phrase: "a number", "a string". */
  readonly noun: string;
  /** Whether a command-line value is taken as the raw text (strings and names) rather than as JSON. */
  readonly textual: boolean;
  /** Whether a resumed run may change it (a setting that does not alter what is trained; default: fixed for the life of a run). */
  readonly resumable: boolean;
  /** The allowed names of a setting that is one of a list (for "did you mean"). */
  readonly names?: readonly string[];
  readonly shortcut?: Shortcut;
  /** Returns the value when allowed; throws one error naming `key`, the value and what is allowed. */
  check(value: unknown, key: string): T;
}

export interface Group<F extends Fields> {
  readonly kind: 'group';
  readonly fields: F;
}

export type Node = Leaf<unknown> | Group<Fields>;
export type Fields = { readonly [key: string]: Node };

/** The TypeScript type of the values a schema node describes. */
export type Infer<N> =
  N extends Leaf<infer T> ? T : N extends Group<infer F> ? { -readonly [K in keyof F]: Infer<F[K]> } : never;

interface LeafOptions {
  doc: string;
  shortcut?: Shortcut;
  resumable?: boolean;
}

/** JSON text of a value for messages (strings quoted, arrays bracketed). */
export function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return JSON.stringify(value) ?? String(value);
}

function typeName(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/** What a kind of setting allows, beside its options. */
interface Kind {
  allowed: string;
  noun: string;
  textual: boolean;
  names?: readonly string[];
}

function leaf<T>(
  defaultValue: T,
  o: LeafOptions,
  kind: Kind,
  accepts: (v: unknown) => v is T,
  inRange: (v: T) => boolean,
): Leaf<T> {
  return {
    kind: 'leaf',
    default: defaultValue,
    doc: o.doc,
    shortcut: o.shortcut,
    resumable: o.resumable ?? false,
    ...kind,
    check(value: unknown, key: string): T {
      if (!accepts(value))
        throw new TypeError(
          `${key}: expected ${kind.noun}, got ${typeName(value)} (${show(value)}); allowed: ${kind.allowed}`,
        );
      if (!inRange(value))
        throw new RangeError(`${key} must be ${kind.allowed}, got ${show(value)}${suggestion(value, kind)}`);
      return value;
    },
  };
}

/** For a misspelt name: the nearest allowed value, when one is close. */
function suggestion(value: unknown, spec: { names?: readonly string[] }): string {
  const near = typeof value === 'string' && spec.names ? nearest(value, spec.names) : undefined;
  return near === undefined ? '' : ` (did you mean "${near}"?)`;
}

interface Bounds {
  min?: number;
  max?: number;
  /** The minimum itself is not allowed (a learning rate > 0). */
  minExclusive?: boolean;
  /** The maximum itself is not allowed (a dropout < 1). */
  maxExclusive?: boolean;
}

function rangeText(b: Bounds, what: string): string {
  const lo = b.min === undefined ? undefined : `${b.minExclusive ? '>' : '>='} ${b.min}`;
  const hi = b.max === undefined ? undefined : `${b.maxExclusive ? '<' : '<='} ${b.max}`;
  if (lo && hi) return `${what} in ${b.minExclusive ? '(' : '['}${b.min}, ${b.max}${b.maxExclusive ? ')' : ']'}`;
  return [what, lo, hi].filter(Boolean).join(' ');
}

function within(v: number, b: Bounds): boolean {
  if (!Number.isFinite(v)) return false;
  if (b.min !== undefined && (b.minExclusive ? v <= b.min : v < b.min)) return false;
  return !(b.max !== undefined && (b.maxExclusive ? v >= b.max : v > b.max));
}

const isNumber = (v: unknown): v is number => typeof v === 'number';

/** An integer setting; `min: 1` reads "a positive integer". */
export function int(defaultValue: number, o: LeafOptions & Bounds): Leaf<number> {
  const allowed =
    o.min === 1 && o.max === undefined && !o.minExclusive ? 'a positive integer' : rangeText(o, 'an integer');
  return leaf(
    defaultValue,
    o,
    { allowed, noun: 'a number', textual: false },
    isNumber,
    (v) => Number.isInteger(v) && within(v, o),
  );
}

/** A finite number setting. */
export function num(defaultValue: number, o: LeafOptions & Bounds): Leaf<number> {
  return leaf(defaultValue, o, { allowed: rangeText(o, 'a number'), noun: 'a number', textual: false }, isNumber, (v) =>
    within(v, o),
  );
}

export function bool(defaultValue: boolean, o: LeafOptions): Leaf<boolean> {
  const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
  return leaf(defaultValue, o, { allowed: 'true or false', noun: 'a boolean', textual: false }, isBoolean, () => true);
}

const isString = (v: unknown): v is string => typeof v === 'string';

export function str(defaultValue: string, o: LeafOptions): Leaf<string> {
  return leaf(defaultValue, o, { allowed: 'any text', noun: 'a string', textual: true }, isString, () => true);
}

/** One of a fixed list of names. */
export function oneOf<const V extends readonly string[]>(
  values: V,
  defaultValue: V[number],
  o: LeafOptions,
): Leaf<V[number]> {
  const allowed = `one of ${values.map((v) => `"${v}"`).join(', ')}`;
  const isName = (v: unknown): v is V[number] => typeof v === 'string';
  return leaf<V[number]>(defaultValue, o, { allowed, noun: 'a string', textual: true, names: values }, isName, (v) =>
    values.includes(v),
  );
}

/** A list of integers, each within the bounds, strictly ascending. */
export function ascendingInts(defaultValue: number[], o: LeafOptions & Bounds): Leaf<number[]> {
  const allowed = `an ascending array of ${rangeText(o, 'integers')}`;
  const isNumbers = (v: unknown): v is number[] => Array.isArray(v) && v.every(isNumber);
  return leaf(defaultValue, o, { allowed, noun: 'an array of numbers', textual: false }, isNumbers, (v) =>
    v.every((x, i) => Number.isInteger(x) && within(x, o) && (i === 0 || x > v[i - 1])),
  );
}

export function group<const F extends Fields>(fields: F): Group<F> {
  return { kind: 'group', fields };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The default value of every setting under `node`, in declaration order. */
export function defaults<N extends Node>(node: N): Infer<N> {
  if (node.kind === 'leaf') return structuredClone(node.default) as Infer<N>;
  return Object.fromEntries(Object.entries(node.fields).map(([k, child]) => [k, defaults(child)])) as Infer<N>;
}

/** Every setting with its dotted key, in declaration order. */
export function leaves(node: Node, prefix = ''): Array<{ key: string; leaf: Leaf<unknown> }> {
  if (node.kind === 'leaf') return [{ key: prefix, leaf: node }];
  return Object.entries(node.fields).flatMap(([k, child]) => leaves(child, prefix ? `${prefix}.${k}` : k));
}

/** The setting at a dotted key, or undefined. */
export function leafAt(root: Node, key: string): Leaf<unknown> | undefined {
  let node: Node | undefined = root;
  for (const part of key.split('.'))
    node = node?.kind === 'group' && Object.hasOwn(node.fields, part) ? node.fields[part] : undefined;
  return node?.kind === 'leaf' ? node : undefined;
}

/** Edit distance: insertions, deletions, substitutions and swaps of neighbours (optimal string alignment), case-insensitive. */
export function editDistance(a: string, b: string): number {
  const s = a.toLowerCase();
  const t = b.toLowerCase();
  let before: number[] = [];
  let row = Array.from({ length: t.length + 1 }, (_, j) => j);
  for (let i = 1; i <= s.length; i++) {
    const next = [i];
    for (let j = 1; j <= t.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (s[i - 1] === t[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1])
        next[j] = Math.min(next[j], before[j - 2] + 1);
    }
    [before, row] = [row, next];
  }
  return row[t.length];
}

/**
 * The candidate nearest to `name` by edit distance (ties: the first), when it is close enough to be a
 * plausible typo: at most a third of the longer name's length, and at least 1 edit tolerated. A name that
 * is a prefix of exactly one candidate (--epoch for --epochs) counts as close.
 */
export function nearest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  if (best === undefined) return undefined;
  if (bestDistance <= Math.max(1, Math.floor(Math.max(name.length, best.length) / 3))) return best;
  const prefixed = candidates.filter((c) => name.length >= 2 && c.toLowerCase().startsWith(name.toLowerCase()));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** `(did you mean "x"?)` naming the nearest full dotted key, or the keys of the group. */
function unknownKeyHint(root: Node, groupPath: string, key: string, fields: Fields): string {
  const all = leaves(root).map((l) => l.key);
  const attempted = groupPath ? `${groupPath}.${key}` : key;
  // A leaf name given without its group (minCluster for odc.minCluster) or misspelt in either form.
  const byLeafName = all.filter((k) => k.split('.').at(-1)!.toLowerCase() === key.toLowerCase());
  const near = byLeafName.length === 1 ? byLeafName[0] : (nearest(attempted, all) ?? nearest(key, Object.keys(fields)));
  const known = `the keys of ${groupPath || 'the top level'} are: ${Object.keys(fields).join(', ')}`;
  return near === undefined ? ` (${known})` : ` (did you mean "${near}"? ${known})`;
}

/**
 * Deep-merges `patch` (untyped: JSON from a file, a --set, a stored run) into `base`, checking every key it
 * sets: an unknown key is an error naming `where`, the key and the nearest known one; a value of the wrong
 * type or out of range is an error naming the key, the value and what is allowed. Keys not in the patch
 * keep base's values (checked by `checkAll`, not here).
 */
export function merge<N extends Node>(root: N, base: Infer<N>, patch: unknown, where: string): Infer<N> {
  const walk = (node: Node, current: unknown, value: unknown, path: string): unknown => {
    if (node.kind === 'leaf') return node.check(value, path);
    const label = path ? `${where}.${path}` : where;
    if (!isPlainObject(value))
      throw new TypeError(`${label} must be a JSON object, got ${typeName(value)} (${show(value)})`);
    const out: Record<string, unknown> = { ...(current as Record<string, unknown>) };
    for (const [key, v] of Object.entries(value)) {
      if (!Object.hasOwn(node.fields, key))
        throw new Error(`${label}: unknown key "${key}"${unknownKeyHint(root, path, key, node.fields)}`);
      out[key] = walk(node.fields[key], out[key], v, path ? `${path}.${key}` : key);
    }
    return out;
  };
  return walk(root, base, patch, '') as Infer<N>;
}

/** Checks every setting of a complete value (one built in code, say); returns it. */
export function checkAll<N extends Node>(root: N, value: Infer<N>): Infer<N> {
  for (const { key, leaf } of leaves(root)) {
    let v: unknown = value;
    for (const part of key.split('.')) v = isPlainObject(v) ? v[part] : undefined;
    leaf.check(v, key);
  }
  return value;
}
