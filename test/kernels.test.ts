/**
 * The TypeScript/WGSL contract (src/gpu/kernel.ts): every entry point of every shaders/ family is declared
 * once in src/kernels/, every declaration compiles against its WGSL body, and the shaders hold no hand-written
 * parameter block or binding line. A declaration that does not match its body (a missing binding, a
 * misspelt parameter) fails here, at test time, not at dispatch.
 */
import { test } from 'node:test';
import { readdirSync, readFileSync } from 'node:fs';
import { assert, setupGpu } from './helpers.ts';
import { compileDeclared, declareKernels, dispatchKernel, packParams, type KernelDecl } from '../src/gpu/kernel.ts';
import { entryModule } from '../src/gpu/shaders.ts';
import { FEATURE_GATED_FAMILIES, KERNEL_FAMILIES, allKernels } from '../src/kernels/index.ts';

const dir = new URL('../shaders/', import.meta.url);
const families = readdirSync(dir)
  .filter((f) => f.endsWith('.wgsl'))
  .map((f) => f.slice(0, -'.wgsl'.length));

function computeEntries(text: string): string[] {
  return Array.from(text.matchAll(/@compute[^\n]*\n?\s*fn\s+(\w+)/g), (m) => m[1]);
}

test('every @compute entry of every shaders/ family is declared, and nothing else is', () => {
  const declared = { ...KERNEL_FAMILIES, ...FEATURE_GATED_FAMILIES };
  assert.deepEqual(Object.keys(declared).sort(), [...families].sort());
  for (const family of families) {
    const entries = computeEntries(readFileSync(new URL(`${family}.wgsl`, dir), 'utf8')).sort();
    assert.deepEqual(Object.keys(declared[family]).sort(), entries, family);
  }
});

test('shaders hold only bodies: no struct Params, no @binding line, no shared parameter block', () => {
  for (const family of families) {
    const text = readFileSync(new URL(`${family}.wgsl`, dir), 'utf8');
    assert.doesNotMatch(text, /@binding|struct\s+Params|\/\/!include\s+odc_params/, family);
  }
});

test('every declared entry compiles against its WGSL body', async () => {
  await setupGpu();
  const kernels = allKernels();
  assert.ok(kernels.length >= Object.keys(KERNEL_FAMILIES).length);
  await compileDeclared(kernels);
});

test('a declaration that does not match its body fails to compile, naming the family and entry', async () => {
  await setupGpu();
  // relu's body reads `a`; this declaration calls the input `x`.
  const wrong = declareKernels('elementwise', {
    relu: {
      params: { n: 'u32' },
      bindings: { x: { access: 'read', type: 'f32' }, out: { access: 'read_write', type: 'f32' } },
    },
  });
  await assert.rejects(compileDeclared([wrong.relu]), /elementwise/);
});

test('the generated header: Params in declaration order, bindings numbered from 1, enum constants', () => {
  const k = declareKernels('demo', {
    go: {
      params: { n: 'u32', scale: 'f32', relu: 'bool', mode: ['forward', 'input_grad'] },
      bindings: { src: { access: 'read', type: 'f32' }, dst: { access: 'read_write', type: 'vec4<f32>' } },
    },
  }).go;
  assert.match(k.header, /struct Params \{\n {2}n: u32,\n {2}scale: f32,\n {2}relu: u32,\n {2}mode: u32,\n\}/);
  assert.match(k.header, /@group\(0\) @binding\(0\) var<uniform> p: Params;/);
  assert.match(k.header, /@group\(0\) @binding\(1\) var<storage, read> src: array<f32>;/);
  assert.match(k.header, /@group\(0\) @binding\(2\) var<storage, read_write> dst: array<vec4<f32>>;/);
  assert.match(k.header, /const MODE_INPUT_GRAD: u32 = 1u;/);
  const bytes = new DataView(packParams(k, { n: 7, scale: 0.5, relu: true, mode: 'input_grad' }).data.buffer);
  assert.deepEqual(
    [bytes.getUint32(0, true), bytes.getFloat32(4, true), bytes.getUint32(8, true), bytes.getUint32(12, true)],
    [7, 0.5, 1, 1],
  );
  assert.throws(
    () => packParams(k, { n: 7, scale: 0.5, relu: true, mode: 'sideways' }),
    /mode is sideways, not one of forward, input_grad/,
  );
  assert.throws(() => packParams(k, { n: 7, scale: 0.5, relu: true }), /parameter mode is missing/);
  assert.throws(
    () => declareKernels('demo', { go: { params: { n: 'u32' }, bindings: { n: { access: 'read', type: 'f32' } } } }),
    /declared twice/,
  );
});

test('entryModule keeps the entry and what it reaches, drops the rest (line numbers kept), fills only the templates it keeps', () => {
  const text = [
    'const K: u32 = {{K}}u;',
    'const UNUSED: u32 = {{UNUSED}}u;',
    'var<workgroup> scratch: array<f32, K>;',
    'fn helper() -> u32 { scratch[0] = 1.0; return K; }',
    'fn unused() -> u32 { return q[0]; }',
    '@compute @workgroup_size({{WG}})',
    'fn main() { out[0] = helper(); }',
    '@compute @workgroup_size(1)',
    'fn other() { q[0] = UNUSED; }',
    '',
  ].join('\n');
  const module = entryModule('demo', 'main', '// header\n', { K: 4, WG: 64 }, text);
  assert.match(module, /const K: u32 = 4u;/);
  assert.match(module, /var<workgroup> scratch/);
  assert.match(module, /fn helper/);
  assert.match(module, /@compute @workgroup_size\(64\)\nfn main/);
  assert.doesNotMatch(module, /unused|other|UNUSED/);
  assert.equal(
    module.split('\n').findIndex((l) => l.includes('fn main')),
    6,
  );
  assert.ok(module.endsWith('// header\n'));
  assert.throws(() => entryModule('demo', 'main', '', { K: 4 }, text), /entry main\) needs template parameter WG/);
  assert.throws(() => entryModule('demo', 'nope', '', {}, text), /has no function nope/);
});

// Compile-time checks: this function is never called; `npx tsc --noEmit` fails if an expected error vanishes.
export function typeChecks(buffer: GPUBuffer, decl: KernelDecl): void {
  const k = declareKernels('demo', {
    go: { params: { n: 'u32', relu: 'bool', mode: ['a', 'b'] }, bindings: { src: { access: 'read', type: 'f32' } } },
  }).go;
  dispatchKernel(k, { params: { n: 1, relu: true, mode: 'b' }, bindings: { src: buffer }, workgroups: [1] });
  // @ts-expect-error a misspelt parameter name
  dispatchKernel(k, { params: { m: 1, relu: true, mode: 'b' }, bindings: { src: buffer }, workgroups: [1] });
  // @ts-expect-error a missing binding
  dispatchKernel(k, { params: { n: 1, relu: true, mode: 'b' }, bindings: {}, workgroups: [1] });
  // @ts-expect-error a number where the declaration says bool
  dispatchKernel(k, { params: { n: 1, relu: 1, mode: 'b' }, bindings: { src: buffer }, workgroups: [1] });
  // @ts-expect-error an enum value the declaration does not list
  dispatchKernel(k, { params: { n: 1, relu: true, mode: 'c' }, bindings: { src: buffer }, workgroups: [1] });
  dispatchKernel(k, {
    params: { n: 1, relu: true, mode: 'b' },
    // @ts-expect-error an extra binding
    bindings: { src: buffer, dst: buffer },
    workgroups: [1],
  });
  void decl;
}
