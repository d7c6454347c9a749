/**
 * The import rule of docs/ARCHITECTURE.md: no import circle anywhere in src/. Each .ts file under src/ is a
 * node; each relative `import ... from`, `export ... from`, side-effect `import '...'` and literal dynamic
 * `import('...')` is an edge. Type-only imports count too: they vanish at run time, but a circle through
 * them still ties two rooms together (neither can be read, moved or tested without the other), and the
 * rule is about the layout, not only about module evaluation order. A circle fails with its path.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** Static `import`/`export ... from` clauses (also `import type`, default + named, namespace) and bare side-effect imports. */
const STATIC_FROM = /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s+from\s+['"]([^'"]+)['"]/gm;
const SIDE_EFFECT = /^[ \t]*import\s+['"]([^'"]+)['"]/gm;
/** A dynamic import with a literal specifier; a computed one (`import(name)`) names a package, never a file of src/. */
const DYNAMIC = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

/** The module specifiers a TypeScript source imports (relative or not), comments aside. */
export function importSpecifiers(source: string): string[] {
  // Drop comment lines so an example in a doc comment is not an edge (real imports never start with `*` or `//`).
  const code = source
    .split('\n')
    .filter((line) => !/^\s*(\/\/|\*|\/\*)/.test(line))
    .join('\n');
  const specifiers: string[] = [];
  for (const pattern of [STATIC_FROM, SIDE_EFFECT, DYNAMIC]) for (const match of code.matchAll(pattern)) specifiers.push(match[1]);
  return specifiers;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The graph of src/: file (relative to src/) -> the files of src/ it imports. */
export function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(root)) {
    const targets = importSpecifiers(readFileSync(file, 'utf8'))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => relative(root, resolve(dirname(file), spec)).split('\\').join('/'));
    graph.set(relative(root, file).split('\\').join('/'), [...new Set(targets)]);
  }
  return graph;
}

/** One import circle as a closed path [a, b, ..., a], or null when the graph has none (depth-first search, three colours). */
export function findCycle(graph: Map<string, readonly string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const seen = state.get(next);
      if (seen === 'open') return [...path.slice(path.indexOf(next)), next];
      if (seen === undefined) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of [...graph.keys()].sort()) {
    if (state.has(node)) continue;
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

describe('import graph of src/', () => {
  it('the parser sees every kind of import and nothing in comments', () => {
    const source = [
      "import { a, b } from './a.ts';",
      "import type { T } from './t.ts';",
      'import {',
      '  c,',
      '  type D,',
      "} from '../c.ts';",
      "import * as ns from './ns.ts';",
      "import def, { e } from './def.ts';",
      "export { f } from './f.ts';",
      "export * from './star.ts';",
      "export type { G } from './g.ts';",
      "import './side.ts';",
      "  const m = await import('./lazy.ts');",
      "// import { x } from './commented.ts';",
      " * `import('./doc.ts')` in a doc comment",
      'export function from(x: number): number { return x; }',
      "const s = 'from';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(source).sort(), [
      '../c.ts', './a.ts', './def.ts', './f.ts', './g.ts', './lazy.ts', './ns.ts', './side.ts', './star.ts', './t.ts',
    ]);
  });

  it('findCycle returns the path of a circle and null for a layered graph', () => {
    const layered = new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]]);
    assert.equal(findCycle(layered), null);
    const circle = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]);
    assert.deepEqual(findCycle(circle), ['a', 'b', 'c', 'a']);
    assert.deepEqual(findCycle(new Map([['self', ['self']]])), ['self', 'self']);
  });

  it('every relative import names a file of src/', () => {
    const graph = importGraph(SRC);
    for (const [file, targets] of graph) for (const target of targets) assert.ok(graph.has(target), `${file} imports ${target}, which is not a .ts file of src/`);
  });

  it('has no import circle', () => {
    const graph = importGraph(SRC);
    assert.ok(graph.size > 50, `only ${graph.size} files found under ${SRC}`);
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import circle in src/: ${cycle?.join(' -> ')}`);
  });
});
