import { test } from 'node:test';
import { readdirSync, readFileSync } from 'node:fs';
import { assert } from './helpers.ts';
import { resolveIncludes, shaderSource } from '../src/gpu/shaders.ts';

const dir = new URL('../shaders/', import.meta.url);
const families = readdirSync(dir)
  .filter((f) => f.endsWith('.wgsl'))
  .map((f) => f.slice(0, -'.wgsl'.length));

test('//!include appends each named shaders/include file once, after the family text (line numbers kept)', () => {
  assert.ok(families.length > 0);
  let includes = 0;
  for (const family of families) {
    const own = readFileSync(new URL(`${family}.wgsl`, dir), 'utf8');
    const source = shaderSource(family);
    assert.ok(source.startsWith(own), `${family}: the family text comes first, unchanged`);
    const names = new Set(Array.from(own.matchAll(/^[ \t]*\/\/!include[ \t]+(\w+)[ \t]*$/gm), (m) => m[1]));
    for (const name of names) {
      const text = readFileSync(new URL(`include/${name}.wgsl`, dir), 'utf8');
      assert.equal(source.split(text).length - 1, 1, `${family}: include ${name} appears once`);
      includes++;
    }
    if (names.size === 0) assert.equal(source, own, `${family}: no includes, no change`);
  }
  assert.ok(includes > 0, 'some family uses an include');
});

test('a missing include is an error naming the family and the file', () => {
  assert.throws(() => resolveIncludes('some_family', '//!include no_such_include\nfn f() {}\n'), {
    message: 'shaders/some_family.wgsl: //!include no_such_include: cannot read shaders/include/no_such_include.wgsl',
  });
  assert.throws(
    () => resolveIncludes('some_family', '//!include ../gemm\n'),
    /cannot read shaders\/include\/\.\.\/gemm\.wgsl/,
  );
});
