/**
 * The suite's own runner (scripts/test-all.sh) reports every outcome: it runs here in a throwaway copy of
 * the repository's scripts on tiny test files that pass, fail, or crash the runtime, and must end with its
 * total line, a non-zero exit on a failure or a crash, and the failure or the crash named above the total.
 */
import { test, before, after } from 'node:test';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assert } from './helpers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
let dir = '';
/** Each case starts a runtime or two on tiny files: seconds, but a loaded machine stretches them. */
const LIMIT_MS = 300_000;

const FILES: Record<string, string> = {
  'passes.test.ts':
    "import { test } from 'node:test';\ntest('one plus one is two', () => {\n  if (1 + 1 !== 2) throw new Error('arithmetic');\n});\n",
  'fails.test.ts':
    "import { test } from 'node:test';\ntest('a test that must fail', () => {\n  throw new Error('failing on purpose');\n});\n",
  // Passes, then the runtime aborts as the file ends: the shape of the exit crash test-all.sh must report.
  'crashes.test.ts':
    "import { test } from 'node:test';\nimport process from 'node:process';\ntest('passes, then the process aborts', () => {\n" +
    '  const g = globalThis as { Deno?: unknown; addEventListener?: (type: string, fn: () => void) => void };\n' +
    "  if (g.Deno) g.addEventListener!('unload', () => process.abort());\n  else process.on('exit', () => process.abort());\n});\n",
};

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'odc-test-all-'));
  mkdirSync(join(dir, 'scripts'));
  mkdirSync(join(dir, 'test'));
  for (const script of ['test-all.sh', 'test-lib.sh'])
    copyFileSync(join(root, 'scripts', script), join(dir, 'scripts', script));
  writeFileSync(join(dir, 'scripts', 'setup.sh'), '# installing packages is not under test here\n');
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  for (const [name, text] of Object.entries(FILES)) writeFileSync(join(dir, 'test', name), text);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs the copied test-all.sh on the given fake test files under the given runtimes. */
function testAll(runtimes: string, files: string[]): { status: number | null; lines: string[] } {
  const env: Record<string, string | undefined> = {
    ...process.env,
    ODC_RUNTIMES: runtimes,
    ODC_TEST_FILES: files.map((f) => `test/${f}`).join(' '),
  };
  // Under `node --test` this marks a child of the runner, which would make the inner runner report in its
  // binary protocol instead of text.
  delete env.NODE_TEST_CONTEXT;
  const result = spawnSync('bash', ['scripts/test-all.sh'], { cwd: dir, encoding: 'utf8', timeout: LIMIT_MS, env });
  const lines = `${result.stdout}${result.stderr}`.trimEnd().split('\n');
  return { status: result.status, lines };
}

/** The index of the first line matching `pattern`, asserting there is one. */
function lineIndex(lines: string[], pattern: RegExp): number {
  const i = lines.findIndex((l) => pattern.test(l));
  assert.ok(i >= 0, `no line matches ${pattern} in:\n${lines.join('\n')}`);
  return i;
}

test('test-all.sh: all passing ends with its total line and exit status 0', { timeout: LIMIT_MS }, () => {
  const { status, lines } = testAll('node', ['passes.test.ts']);
  assert.equal(lines.at(-1), 'total: 1 passed, 0 failed', lines.join('\n'));
  assert.equal(status, 0);
  assert.ok(!lines.includes('=== failures'));
  lineIndex(lines, /^wall time: node \d+ s$/);
});

test(
  'test-all.sh: a failing test gives the total line, a non-zero exit, and the test named above the total',
  { timeout: LIMIT_MS },
  () => {
    const { status, lines } = testAll('node', ['passes.test.ts', 'fails.test.ts']);
    assert.equal(lines.at(-1), 'total: 1 passed, 1 failed', lines.join('\n'));
    assert.equal(status, 1);
    const failures = lineIndex(lines, /^=== failures$/);
    assert.ok(lineIndex(lines, /^\[node\] not ok \d+ - a test that must fail$/) > failures);
  },
);

test(
  'test-all.sh: a runtime that aborts after its tests passed counts as failed, with the signal named',
  { skip: !hasDeno(), timeout: LIMIT_MS },
  () => {
    const { status, lines } = testAll('deno-builtin', ['passes.test.ts', 'crashes.test.ts']);
    const total = lines.length - 1;
    assert.match(lines[total], /^total: \d+ passed, 1 failed$/, lines.join('\n'));
    assert.equal(status, 1);
    const crash = lineIndex(lines, /^\[deno-builtin\] crashed: (\S+: )?signal SIGABRT/);
    assert.ok(crash > lineIndex(lines, /^=== failures$/) && crash < total);
    lineIndex(lines, /^=== deno-builtin: CRASHED: (\S+: )?signal SIGABRT/);
  },
);

test(
  'test-all.sh: every runtime is reported when one fails and another crashes',
  { skip: !hasDeno(), timeout: LIMIT_MS },
  () => {
    const { status, lines } = testAll('node deno-builtin', ['passes.test.ts', 'fails.test.ts', 'crashes.test.ts']);
    const match = /^total: (\d+) passed, (\d+) failed$/.exec(lines.at(-1) ?? '');
    assert.ok(match, lines.join('\n'));
    // node: the failing test and the file whose process aborted; deno-builtin: its failing test or its crash
    assert.ok(Number(match[2]) >= 3, `at least 3 failures counted: ${lines.at(-1)}`);
    assert.equal(status, 1);
    lineIndex(lines, /^\[node\] not ok \d+ - a test that must fail$/);
    lineIndex(lines, /^\[deno-builtin\] crashed: (\S+: )?signal SIGABRT/);
    lineIndex(lines, /^wall time: node \d+ s, deno-builtin \d+ s$/);
  },
);

/** Deno comes with the npm packages; a checkout without it skips the Deno cases. */
function hasDeno(): boolean {
  return spawnSync(join(root, 'node_modules/.bin/deno'), ['--version']).status === 0;
}
