import { test } from 'node:test';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert } from './helpers.ts';
import {
  SafetensorsError,
  decodeSafetensors,
  encodeSafetensors,
  fromOIHW,
  readSafetensors,
  toOIHW,
  writeSafetensors,
  type SafeTensor,
} from '../src/io/safetensors.ts';

function u64le(n: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return [...b];
}

function assemble(headerJson: string, data: number[], pad = true): Uint8Array {
  let json = [...new TextEncoder().encode(headerJson)];
  if (pad) while ((8 + json.length) % 8 !== 0) json.push(0x20);
  return Uint8Array.from([...u64le(json.length), ...json, ...data]);
}

test('encodes exactly the hand-assembled byte layout', () => {
  const bytes = encodeSafetensors(
    {
      b: { dtype: 'I32', shape: [2], data: Int32Array.from([1, -2]) },
      a: { dtype: 'F32', shape: [1], data: Float32Array.from([1.5]) },
      c: { dtype: 'I64', shape: [1, 1], data: BigInt64Array.from([-3n]) },
      d: { dtype: 'U32', shape: [], data: Uint32Array.from([0xdeadbeef]) },
    },
    { format: 'pt' },
  );
  const header =
    '{"__metadata__":{"format":"pt"},' +
    '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},' +
    '"b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]},' +
    '"c":{"dtype":"I64","shape":[1,1],"data_offsets":[12,20]},' +
    '"d":{"dtype":"U32","shape":[],"data_offsets":[20,24]}}';
  const data = [
    0x00,
    0x00,
    0xc0,
    0x3f, // 1.5f
    0x01,
    0x00,
    0x00,
    0x00,
    0xfe,
    0xff,
    0xff,
    0xff, // 1, -2
    0xfd,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff,
    0xff, // -3 as i64
    0xef,
    0xbe,
    0xad,
    0xde, // 0xdeadbeef
  ];
  const expected = assemble(header, data);
  assert.deepEqual([...bytes], [...expected]);
  assert.equal((8 + Number(new DataView(bytes.buffer).getBigUint64(0, true))) % 8, 0, 'data section is 8-byte aligned');
  assert.equal(bytes[8 + header.length], 0x20, 'padding is spaces');
});

test('reads a file laid out by another writer (unsorted offsets, other dtypes)', () => {
  // Data order differs from key order; F16 comes back as raw bits, BOOL as bytes.
  const header =
    '{"w":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"m":{"dtype":"BOOL","shape":[3],"data_offsets":[12,15]},' +
    '"z":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0,4],"data_offsets":[15,15]}}';
  const f64 = [...new Uint8Array(Float64Array.from([-0.25]).buffer)];
  const file = decodeSafetensors(assemble(header, [...f64, 0x00, 0x3c, 0x00, 0xc0, 1, 0, 1], false));
  assert.deepEqual([...(file.tensors.z.data as Float64Array)], [-0.25]);
  assert.deepEqual([...(file.tensors.w.data as Uint16Array)], [0x3c00, 0xc000]); // 1.0, -2.0 in half precision
  assert.deepEqual([...(file.tensors.m.data as Uint8Array)], [1, 0, 1]);
  assert.deepEqual(file.tensors.e.shape, [0, 4]);
  assert.equal(file.tensors.e.data.length, 0);
  assert.deepEqual(file.metadata, {});
});

const dtypeArb = fc.constantFrom('F32', 'I64', 'I32', 'U32') as fc.Arbitrary<SafeTensor['dtype']>;

function makeData(dtype: SafeTensor['dtype'], n: number, seed: number): SafeTensor['data'] {
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  switch (dtype) {
    case 'F32':
      return Float32Array.from({ length: n }, () => (next() / 2 ** 32 - 0.5) * 1e3);
    case 'I64':
      return BigInt64Array.from({ length: n }, () => (BigInt(next()) << 32n) - BigInt(next()));
    case 'I32':
      return Int32Array.from({ length: n }, () => next() | 0);
    case 'U32':
      return Uint32Array.from({ length: n }, () => next());
  }
}

const tensorsArb = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }).filter((s) => s !== '__metadata__'),
  fc
    .tuple(dtypeArb, fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), fc.integer())
    .map(([dtype, shape, seed]) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return { dtype, shape, data: makeData(dtype, n, seed) } as SafeTensor;
    }),
  { maxKeys: 6 },
);

test('round trip: decode(encode(x)) = x for random tensors, names and metadata; every strict prefix is rejected', () => {
  fc.assert(
    fc.property(
      tensorsArb,
      fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
      (tensors, metadata) => {
        const bytes = encodeSafetensors(tensors, metadata);
        const back = decodeSafetensors(bytes);
        assert.deepEqual(Object.keys(back.tensors).sort(), Object.keys(tensors).sort());
        for (const [name, t] of Object.entries(tensors)) {
          const r = back.tensors[name];
          assert.equal(r.dtype, t.dtype);
          assert.deepEqual(r.shape, t.shape);
          assert.equal(r.data.constructor, t.data.constructor);
          assert.deepEqual([...r.data], [...t.data]);
        }
        assert.deepEqual(back.metadata, { ...metadata });
        for (let len = 0; len < bytes.length; len += Math.max(1, Math.floor(bytes.length / 40))) {
          assert.throws(
            () => decodeSafetensors(bytes.subarray(0, len)),
            SafetensorsError,
            `prefix of ${len} / ${bytes.length} bytes`,
          );
        }
        if (bytes.length > 0)
          assert.throws(() => decodeSafetensors(bytes.subarray(0, bytes.length - 1)), SafetensorsError);
      },
    ),
    { numRuns: 150 },
  );
});

test('writeSafetensors writes atomically and readSafetensors reads it back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'safetensors-test-'));
  try {
    const path = join(dir, 'backbone.safetensors');
    writeFileSync(path, 'old contents');
    const w = Float32Array.from({ length: 24 }, (_, i) => i / 7);
    await writeSafetensors(
      path,
      { 'backbone.conv1.weight': { dtype: 'F32', shape: [2, 3, 2, 2], data: w } },
      { source: 'odc-webgpu' },
    );
    assert.deepEqual(readdirSync(dir), ['backbone.safetensors'], 'no temporary file is left behind');
    const file = await readSafetensors(path);
    assert.deepEqual([...file.tensors['backbone.conv1.weight'].data], [...w]);
    assert.deepEqual(file.metadata, { source: 'odc-webgpu' });
    // A failed write (bad input) leaves the old file untouched and no temp file.
    await assert.rejects(
      writeSafetensors(path, { x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
      /shape \[3\] \(3 elements\) but 2 values/,
    );
    assert.deepEqual(readdirSync(dir), ['backbone.safetensors']);
    // Truncated on disk: the error names the file.
    const full = readFileSync(path);
    writeFileSync(path, full.subarray(0, full.length - 3));
    await assert.rejects(
      readSafetensors(path),
      (err: Error) => err instanceof SafetensorsError && err.message.includes(path) && /truncated/.test(err.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('clear errors for corrupt files and invalid inputs', () => {
  const ok = (h: string, data: number[]) => () => decodeSafetensors(assemble(h, data));
  assert.throws(() => decodeSafetensors(new Uint8Array(5)), /truncated file: 5 bytes/);
  assert.throws(
    () => decodeSafetensors(Uint8Array.from([...u64le(1000), 0x7b, 0x7d])),
    /truncated file: header says 1000 bytes/,
  );
  assert.throws(() => decodeSafetensors(Uint8Array.from([...u64le(2 ** 40), 0])), /exceeds the 100000000-byte limit/);
  assert.throws(ok('{"a":', []), /not valid UTF-8 JSON/);
  assert.throws(ok('[1,2]', []), /not an object/);
  assert.throws(ok('{"a":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}', [0]), /unknown dtype "Q8"/);
  assert.throws(
    ok('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]),
    /hold 4 bytes, but F32 \[2\] needs 8/,
  );
  assert.throws(ok('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', [0, 0, 0, 0]), /invalid shape/);
  assert.throws(
    ok(
      '{"a":{"dtype":"U32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U32","shape":[1],"data_offsets":[2,6]}}',
      [0, 0, 0, 0, 0, 0],
    ),
    /overlaps/,
  );
  assert.throws(
    ok('{"a":{"dtype":"U32","shape":[1],"data_offsets":[4,8]}}', [0, 0, 0, 0, 0, 0, 0, 0]),
    /gap of 4 bytes/,
  );
  assert.throws(ok('{"a":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}}', [0, 0, 0, 0, 9]), /1 trailing bytes/);
  assert.throws(ok('{"__metadata__":{"k":1}}', []), /__metadata__\["k"\] is not a string/);
  const enc = (t: Record<string, SafeTensor>) => () => encodeSafetensors(t);
  assert.throws(
    enc({ a: { dtype: 'F32', shape: [1], data: Int32Array.from([1]) } }),
    /is F32 but its data is a Int32Array/,
  );
  assert.throws(
    enc({ __metadata__: { dtype: 'F32', shape: [1], data: Float32Array.from([1]) } }),
    /invalid tensor name/,
  );
  assert.throws(enc({ a: { dtype: 'F32', shape: [1.5], data: Float32Array.from([1]) } }), /invalid shape/);
});

test('toOIHW: [KH, KW, Cin, Cout] -> [Cout, Cin, KH, KW], hand-computed and as a convolution', () => {
  // shape [1, 2, 2, 3]: element (h, w, i, o) = ((h*2 + w)*2 + i)*3 + o holds its own flat index.
  const data = Float32Array.from({ length: 12 }, (_, i) => i);
  const t = toOIHW(data, [1, 2, 2, 3]);
  assert.deepEqual(t.shape, [3, 2, 1, 2]);
  assert.deepEqual([...t.data], [0, 6, 3, 9, 1, 7, 4, 10, 2, 8, 5, 11]);
  assert.deepEqual([...fromOIHW(t.data, t.shape).data], [...data]);
  assert.throws(() => toOIHW(data, [2, 2, 3]), /expected a 4-D conv weight shape/);
  assert.throws(() => toOIHW(data, [2, 2, 3, 2]), /12 values for shape \[2, 2, 3, 2\]/);

  fc.assert(
    fc.property(
      fc.tuple(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
      ),
      fc.integer(),
      ([kh, kw, ci, co], seed) => {
        let s = seed >>> 0;
        const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5;
        const w = Float32Array.from({ length: kh * kw * ci * co }, rnd);
        const patch = Float64Array.from({ length: kh * kw * ci }, rnd); // NHWC input patch [kh, kw, ci]
        const pt = toOIHW(w, [kh, kw, ci, co]);
        assert.deepEqual([...fromOIHW(pt.data, pt.shape).data], [...w]);
        // out[o] via the engine's im2col GEMM layout vs PyTorch's OIHW indexing (input patch read as CHW)
        for (let o = 0; o < co; o++) {
          let engine = 0;
          let torch = 0;
          for (let h = 0; h < kh; h++) {
            for (let x = 0; x < kw; x++) {
              for (let i = 0; i < ci; i++) {
                const v = patch[(h * kw + x) * ci + i];
                engine += v * w[((h * kw + x) * ci + i) * co + o];
                torch += v * pt.data[((o * ci + i) * kh + h) * kw + x];
              }
            }
          }
          assert.equal(engine, torch);
        }
      },
    ),
    { numRuns: 100 },
  );
});
