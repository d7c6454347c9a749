/**
 * The import rule of docs/ARCHITECTURE.md: no import circle anywhere in src/. Each .ts file under src/ is a
 * node; each relative `import ... from`, `export ... from`, side-effect `import '...'`, literal dynamic
 * `import('...')` and type query `import('...').T` is an edge (read from TypeScript's syntax tree). Type-only imports count too: they vanish at run time, but a circle through
 * them still ties two rooms together (neither can be read, moved or tested without the other), and the
 * rule is about the layout, not only about module evaluation order. A circle fails with its path.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/**
 * The module specifiers a TypeScript source imports (relative or not), read from TypeScript's syntax tree
 * (typescript is already the type-checker's dependency), so comments, strings and line breaks inside an
 * import cannot fool it. A computed dynamic import (`import(name)`) names a package, never a file of src/.
 */
function importSpecifiers(source: string): string[] {
  const specifiers: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      specifiers.push(node.moduleSpecifier.text);
    }
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [first] = node.arguments;
      if (first && ts.isStringLiteralLike(first)) specifiers.push(first.text);
    }
    // A type written `import('./x.ts').T` is a type-only import too.
    if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
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

/** The graph of src/: file (relative to src/) -> the files of src/ it imports. */
function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(root)) {
    const targets = importSpecifiers(readFileSync(file, 'utf8'))
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

  it('has no import circle', () => {
    const graph = importGraph(SRC);
    assert.ok(graph.size > 50, `only ${graph.size} files found under ${SRC}`);
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import circle in src/: ${cycle?.join(' -> ')}`);
  });
});
