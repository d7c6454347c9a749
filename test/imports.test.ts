/**
 * The import rule of docs/ARCHITECTURE.md: no import circle anywhere in src/, and rooms layered in the order
 * that document gives (a file imports its own room and the rooms below it; the package's entry points stand
 * above all and nothing imports them; src/ref takes only types from outside). Each .ts file under src/ is a
 * node; each relative `import ... from`, `export ... from`, side-effect `import '...'`, literal dynamic
 * `import('...')` and type query `import('...').T` is an edge (read from TypeScript's syntax tree). Type-only
 * imports count too: they vanish at run time, but they still tie two rooms together (neither can be read,
 * moved or tested without the other), and the rule is about the layout, not only about module evaluation
 * order. A circle fails with its path, a layering breach with the file, its import and both rooms.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');

/** Whether an import or export declaration brings in types only (`import type`, or every name marked `type`). */
function typeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) {
    const clause = node.exportClause;
    return node.isTypeOnly || (!!clause && ts.isNamedExports(clause) && clause.elements.every((e) => e.isTypeOnly));
  }
  const clause = node.importClause;
  if (!clause) return false; // a side-effect import runs the module
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return !clause.name && !!named && ts.isNamedImports(named) && named.elements.every((e) => e.isTypeOnly);
}

/**
 * The module specifiers a TypeScript source imports (relative or not), read from TypeScript's syntax tree
 * (typescript is already the type-checker's dependency), so comments, strings and line breaks inside an
 * import cannot fool it. A computed dynamic import (`import(name)`) names a package, never a file of src/.
 * With `valuesOnly`, the imports that bring in types only are left out.
 */
function importSpecifiers(source: string, valuesOnly = false): string[] {
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier) &&
      !(valuesOnly && typeOnly(node))
    ) {
      specifiers.push(node.moduleSpecifier.text);
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [first] = node.arguments;
      if (first && ts.isStringLiteralLike(first)) specifiers.push(first.text);
    }
    // A type written `import('./x.ts').T` is a type-only import too.
    if (
      !valuesOnly &&
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      specifiers.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile('file.ts', source, ts.ScriptTarget.Latest, false));
  return specifiers;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The graph of src/: file (relative to src/) -> the files of src/ it imports (with `valuesOnly`, at run time). */
function importGraph(root: string, valuesOnly = false): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(root)) {
    const targets = importSpecifiers(readFileSync(file, 'utf8'), valuesOnly)
      .filter((spec) => spec.startsWith('.'))
      .map((spec) =>
        relative(root, resolve(dirname(file), spec))
          .split('\\')
          .join('/'),
      );
    graph.set(relative(root, file).split('\\').join('/'), [...new Set(targets)]);
  }
  return graph;
}

/** One import circle as a closed path [a, b, ..., a], or null when the graph has none (depth-first search, three colours). */
function findCycle(graph: Map<string, readonly string[]>): string[] | null {
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

/** The room of a file of src/ (its first folder), or null for a file directly in src/. */
function roomOf(file: string): string | null {
  const slash = file.indexOf('/');
  return slash < 0 ? null : file.slice(0, slash);
}

/** The rooms from the bottom up, as the line of docs/ARCHITECTURE.md that starts "Rooms from the bottom up" names them. */
function roomOrder(): string[] {
  const doc = readFileSync(join(ROOT, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const line = /^Rooms from the bottom up[^:]*:(.*)$/m.exec(doc);
  assert.ok(line, 'docs/ARCHITECTURE.md has no line starting "Rooms from the bottom up"');
  return [...line[1].matchAll(/`([^`]+)`/g)].map((m) => m[1]);
}

/** The package's entry points (package.json `exports`, their source files), relative to src/. */
function entryPoints(): Set<string> {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, string | { bun?: string }>;
  };
  const sources = Object.values(pkg.exports).flatMap((e) => (typeof e === 'object' && e.bun ? [e.bun] : []));
  return new Set(sources.map((path) => relative(SRC, resolve(ROOT, path)).split('\\').join('/')));
}

/**
 * Every import that breaks the layering: a file importing a room above its own, or anything importing an entry
 * point. Entry points may import every room; a file directly in src/ that is not an entry point has no room and
 * is reported. One line per breach.
 */
function layeringBreaches(graph: Map<string, readonly string[]>, order: string[], entries: Set<string>): string[] {
  const level = new Map(order.map((room, i) => [room, i]));
  const breaches: string[] = [];
  for (const [file, targets] of graph) {
    for (const target of targets) {
      if (entries.has(target)) {
        breaches.push(`${file} imports the entry point ${target}`);
        continue;
      }
      if (entries.has(file)) continue;
      const from = roomOf(file);
      const to = roomOf(target);
      const fromLevel = from === null ? undefined : level.get(from);
      const toLevel = to === null ? undefined : level.get(to);
      if (fromLevel === undefined || toLevel === undefined) {
        breaches.push(`${file} imports ${target}, and a room of the two is not in the order`);
      } else if (toLevel > fromLevel) {
        breaches.push(`${file} imports ${target}: src/${to} is above src/${from}`);
      }
    }
  }
  return breaches;
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
      "const text = `import { y } from './in-a-template.ts'`;",
      "let t: import('./type-query.ts').T;",
      'const pkg = await import(packageName);',
    ].join('\n');
    assert.deepEqual(importSpecifiers(source).sort(), [
      '../c.ts',
      './a.ts',
      './def.ts',
      './f.ts',
      './g.ts',
      './lazy.ts',
      './ns.ts',
      './side.ts',
      './star.ts',
      './t.ts',
      './type-query.ts',
    ]);
  });

  it('findCycle returns the path of a circle and null for a layered graph', () => {
    const layered = new Map([
      ['a', ['b', 'c']],
      ['b', ['c']],
      ['c', []],
    ]);
    assert.equal(findCycle(layered), null);
    const circle = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
    ]);
    assert.deepEqual(findCycle(circle), ['a', 'b', 'c', 'a']);
    assert.deepEqual(findCycle(new Map([['self', ['self']]])), ['self', 'self']);
  });

  it('a circle across folders, closed by a lazy import, is found with its path', () => {
    const root = mkdtempSync(join(tmpdir(), 'odc-imports-'));
    try {
      mkdirSync(join(root, 'low'));
      mkdirSync(join(root, 'high'));
      writeFileSync(join(root, 'low', 'a.ts'), "import { b } from '../high/b.ts';\nexport const a = () => b;\n");
      writeFileSync(join(root, 'high', 'b.ts'), "export const b = async () => (await import('../low/a.ts')).a;\n");
      writeFileSync(join(root, 'high', 'c.ts'), "import type { a } from '../low/a.ts';\nexport type C = typeof a;\n");
      assert.deepEqual(findCycle(importGraph(root)), ['high/b.ts', 'low/a.ts', 'high/b.ts']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('every relative import names a file of src/', () => {
    const graph = importGraph(SRC);
    for (const [file, targets] of graph)
      for (const target of targets)
        assert.ok(graph.has(target), `${file} imports ${target}, which is not a .ts file of src/`);
  });

  it('typeOnly: `import type`, all-type names and type queries are types; a default, a namespace or a side effect is a value', () => {
    const source = [
      "import type { A } from './type.ts';",
      "import { type B, type C } from './all-types.ts';",
      "import { type D, e } from './mixed.ts';",
      "import def from './default.ts';",
      "import * as ns from './namespace.ts';",
      "import './side.ts';",
      "export type { F } from './export-type.ts';",
      "export { type G } from './export-all-types.ts';",
      "export { h } from './export-value.ts';",
      "let t: import('./type-query.ts').T;",
      "const m = await import('./lazy.ts');",
    ].join('\n');
    assert.deepEqual(importSpecifiers(source, true).sort(), [
      './default.ts',
      './export-value.ts',
      './lazy.ts',
      './mixed.ts',
      './namespace.ts',
      './side.ts',
    ]);
  });

  it('layeringBreaches names an upward import, an import of an entry point and a room outside the order', () => {
    const order = ['low', 'high'];
    const entries = new Set(['index.ts']);
    const graph = new Map([
      ['index.ts', ['high/h.ts', 'low/l.ts']],
      ['high/h.ts', ['low/l.ts', 'high/g.ts']],
      ['high/g.ts', []],
      ['low/l.ts', ['low/m.ts']],
      ['low/m.ts', []],
    ]);
    assert.deepEqual(layeringBreaches(graph, order, entries), []);
    graph.set('low/m.ts', ['high/g.ts', 'index.ts']);
    graph.set('stray/s.ts', ['low/l.ts']);
    assert.deepEqual(layeringBreaches(graph, order, entries), [
      'low/m.ts imports high/g.ts: src/high is above src/low',
      'low/m.ts imports the entry point index.ts',
      'stray/s.ts imports low/l.ts, and a room of the two is not in the order',
    ]);
  });

  it('the room order of docs/ARCHITECTURE.md names every folder of src/ once', () => {
    const order = roomOrder();
    const folders = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
    assert.deepEqual([...order].sort(), [...new Set(order)].sort(), 'a room named twice');
    assert.deepEqual([...order].sort(), folders.sort());
  });

  it('no room imports a room above it, and nothing imports an entry point', () => {
    const entries = entryPoints();
    assert.ok(entries.has('index.ts') && entries.has('odc/index.ts'), `entry points: ${[...entries].join(', ')}`);
    const breaches = layeringBreaches(importGraph(SRC), roomOrder(), entries);
    assert.deepEqual(breaches, [], `imports against the room order of docs/ARCHITECTURE.md:\n${breaches.join('\n')}`);
  });

  it('src/ref (the oracle) takes only types from outside it, and nothing in src/ imports it', () => {
    for (const [file, targets] of importGraph(SRC, true)) {
      for (const target of targets) {
        if (roomOf(file) === 'ref') assert.equal(roomOf(target), 'ref', `${file} imports ${target} at run time`);
        else assert.notEqual(roomOf(target), 'ref', `${file} imports the reference ${target}`);
      }
    }
  });

  it('has no import circle', () => {
    const graph = importGraph(SRC);
    assert.ok(graph.size > 50, `only ${graph.size} files found under ${SRC}`);
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import circle in src/: ${cycle?.join(' -> ')}`);
  });
});
