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
import { KERNEL_FAMILIES, allKernels } from '../src/kernels/index.ts';

const dir = new URL('../shaders/', import.meta.url);
const families = readdirSync(dir).filter((f) => f.endsWith('.wgsl')).map((f) => f.slice(0, -'.wgsl'.length));
const migrated = new Set(Object.keys(KERNEL_FAMILIES));

function computeEntries(text: string): string[] {
  return Array.from(text.matchAll(/@compute[^\n]*\n?\s*fn\s+(\w+)/g), (m) => m[1]);
}

test('every @compute entry of a declared family is declared, and nothing else is', () => {
  for (const family of families.filter((f) => migrated.has(f))) {
    const entries = computeEntries(readFileSync(new URL(`${family}.wgsl`, dir), 'utf8')).sort();
    assert.deepEqual(Object.keys(KERNEL_FAMILIES[family]).sort(), entries, family);
  }
});

test('declared families hold only bodies: no struct Params, no @binding line', () => {
  for (const family of families.filter((f) => migrated.has(f))) {
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
  const wrong = declareKernels('elementwise', { relu: { params: { n: 'u32' }, bindings: { x: { access: 'read', type: 'f32' }, out: { access: 'read_write', type: 'f32' } } } });
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
  assert.deepEqual([bytes.getUint32(0, true), bytes.getFloat32(4, true), bytes.getUint32(8, true), bytes.getUint32(12, true)], [7, 0.5, 1, 1]);
  assert.throws(() => packParams(k, { n: 7, scale: 0.5, relu: true, mode: 'sideways' }), /mode is sideways, not one of forward, input_grad/);
  assert.throws(() => packParams(k, { n: 7, scale: 0.5, relu: true }), /parameter mode is missing/);
  assert.throws(() => declareKernels('demo', { go: { params: { n: 'u32' }, bindings: { n: { access: 'read', type: 'f32' } } } }), /declared twice/);
});

test('entryModule keeps the entry, the functions it reaches and the other declarations; drops other entries (line numbers kept)', () => {
  const text = 'const K: u32 = 4u;\nfn helper() -> u32 { return K; }\nfn unused() -> u32 { return q[0]; }\n@compute @workgroup_size(1)\nfn main() { out[0] = helper(); }\n@compute @workgroup_size(1)\nfn other() { q[0] = 1u; }\n';
  const module = entryModule('demo', text, 'main', '// header\n');
  assert.match(module, /fn helper/);
  assert.match(module, /fn main/);
  assert.doesNotMatch(module, /unused|other/);
  assert.equal(module.split('\n').findIndex((l) => l.includes('fn main')), 4);
  assert.ok(module.endsWith('// header\n'));
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
  // @ts-expect-error an extra binding
  dispatchKernel(k, { params: { n: 1, relu: true, mode: 'b' }, bindings: { src: buffer, dst: buffer }, workgroups: [1] });
  void decl;
}
