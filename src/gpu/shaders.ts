/**
 * Loads WGSL kernel families from shaders/ and builds the module of one declared entry point.
 *
 * A template parameter is written `{{NAME}}` in the .wgsl file; only values that must be compile-time
 * constants (tile sizes, workgroup sizes, fused epilogues) are templated. Shapes travel in uniforms.
 *
 * WGSL has no #include: a line `//!include NAME` (a WGSL comment, so the file stays valid as written)
 * pulls in shaders/include/NAME.wgsl, for declarations several families share. The included text is
 * appended after the family's own text (WGSL module-scope declarations may appear in any order), so the
 * line numbers of compile errors inside the family's own code stay those of its file (errors in included
 * code point past its last line, into the section marked `// ---- included from ...`). Each include is
 * added once however often it is named; included files may not include others. Includes are resolved
 * before `{{NAME}}` templating, so an included file may use template parameters too.
 *
 * A declared entry point (src/gpu/kernel.ts) is compiled as a module of its own: `entryModule` keeps the
 * entry's function and the module-scope declarations it reaches, and appends the header generated from
 * its TypeScript declaration.
 */
import { readFileSync } from 'node:fs';

const sources = new Map<string, string>();

// shaders/ sits two levels above this module both in the sources (src/gpu/shaders.ts) and in the compiled
// package (dist/gpu/shaders.js), so one relative URL serves tsx, Bun, Deno and Node on dist/.
function shaderUrl(family: string): URL {
  return new URL(`../../shaders/${family}.wgsl`, import.meta.url);
}

const INCLUDE = /^[ \t]*\/\/!include[ \t]+(\S+)[ \t]*$/gm;

function includeText(family: string, name: string): string {
  let text: string;
  try {
    if (!/^\w+$/.test(name)) throw new Error('an include name is letters, digits and _');
    text = readFileSync(new URL(`../../shaders/include/${name}.wgsl`, import.meta.url), 'utf8');
  } catch (cause) {
    throw new Error(`shaders/${family}.wgsl: //!include ${name}: cannot read shaders/include/${name}.wgsl`, { cause });
  }
  if (/^[ \t]*\/\/!include\b/m.test(text)) {
    throw new Error(`shaders/include/${name}.wgsl (included by shaders/${family}.wgsl) may not include other files`);
  }
  return text;
}

/** `own` (the text of shaders/<family>.wgsl) with the files its `//!include` lines name appended. */
export function resolveIncludes(family: string, own: string): string {
  const names = [...new Set(Array.from(own.matchAll(INCLUDE), (m) => m[1]))];
  return [
    own,
    ...names.map((name) => `\n// ---- included from shaders/include/${name}.wgsl\n${includeText(family, name)}`),
  ].join('');
}

/** Text of shaders/<family>.wgsl with its `//!include` files appended, before templating (cached). */
export function shaderSource(family: string): string {
  let text = sources.get(family);
  if (text === undefined) {
    text = resolveIncludes(family, readFileSync(shaderUrl(family), 'utf8'));
    sources.set(family, text);
  }
  return text;
}

export type Defines = Readonly<Record<string, string | number>>;

/** Splits WGSL text into its top-level declarations (comments before a declaration belong to it). */
function topLevelChunks(text: string): string[] {
  const chunks: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '/' && text[i + 1] === '/') {
      const end = text.indexOf('\n', i);
      i = end < 0 ? text.length : end;
    } else if (c === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
    } else if (c === '{') depth++;
    else if (c === '}') {
      if (--depth === 0) {
        chunks.push(text.slice(start, i + 1));
        start = i + 1;
      }
    } else if (c === ';' && depth === 0) {
      chunks.push(text.slice(start, i + 1));
      start = i + 1;
    }
  }
  chunks.push(text.slice(start));
  return chunks;
}

function withoutComments(text: string): string {
  return text.replace(/\/\/[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
}

/** The name a module-scope declaration declares (function, constant, struct, variable, alias, override). */
const DECLARED = /^\s*(?:@[\s\S]*?)?\b(?:fn|const|struct|alias|override|var(?:<[^>]*>)?)\s+(\w+)/;
/** A template placeholder, hidden as an identifier while the module is cut (its braces would split it). */
const PLACEHOLDER = /\{\{(\w+)\}\}/g;

/**
 * The text of a declared entry point's module: shaders/<family>.wgsl (with its includes) cut down to the
 * entry function and the declarations it reaches (functions, constants, structs, workgroup variables),
 * then templated with `defines`, with `header` (the declarations generated from the TypeScript
 * declaration) appended. Other entries, which name bindings this one does not declare, and constants
 * with template parameters this entry does not use, are left out; dropped declarations keep their line
 * breaks, so compile errors point at the family file's own line numbers.
 */
export function entryModule(
  family: string,
  entry: string,
  header: string,
  defines: Defines = {},
  text = shaderSource(family),
): string {
  const hidden = text.replace(PLACEHOLDER, (_, name: string) => `__template_${name}__`);
  const chunks = topLevelChunks(hidden).map((chunk) => {
    const code = withoutComments(chunk);
    const name = DECLARED.exec(code)?.[1];
    const refs = new Set(Array.from(code.matchAll(/(?<![.\w])[A-Za-z_]\w*/g), (m) => m[0]));
    return { chunk, name, refs };
  });
  const declared = new Map(chunks.filter((c) => c.name !== undefined).map((c) => [c.name as string, c]));
  if (!/^\s*(?:@[\s\S]*?)?\bfn\s/.test(withoutComments(declared.get(entry)?.chunk ?? ''))) {
    throw new Error(`shaders/${family}.wgsl has no function ${entry}`);
  }
  const reached = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const name = pending.pop() as string;
    if (reached.has(name)) continue;
    reached.add(name);
    for (const ref of declared.get(name)?.refs ?? []) if (declared.has(ref) && !reached.has(ref)) pending.push(ref);
  }
  const kept = chunks
    .map((c) => (c.name === undefined || reached.has(c.name) ? c.chunk : c.chunk.replace(/[^\n]/g, '')))
    .join('');
  const rendered = kept.replace(/__template_(\w+)__/g, (_, name: string) => {
    const value = defines[name];
    if (value === undefined)
      throw new Error(`shaders/${family}.wgsl (entry ${entry}) needs template parameter ${name}`);
    return String(value);
  });
  // A module that calls a subgroup builtin needs the directive before every declaration: on the first line,
  // so line numbers stay the file's.
  const directive = /\bsubgroup[A-Z]\w*\s*\(/.test(withoutComments(rendered)) ? 'enable subgroups; ' : '';
  return `${directive}${rendered}\n${header}`;
}
