/**
 * safetensors files (https://github.com/huggingface/safetensors format), written and read without
 * dependencies so that trained backbones load in PyTorch with `safetensors.torch.load_file`.
 *
 * Layout: an unsigned 64-bit little-endian N, then N bytes of UTF-8 JSON, then the data section.
 * The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets
 * relative to the start of the data section) and may carry "__metadata__": {string: string}. The header
 * is padded with spaces so that the data section starts at a multiple of 8 bytes. Tensors are stored
 * row-major, little-endian, back to back in key order (names sorted with JavaScript's default string
 * order, which is also their order in the header), covering the data section with no holes. The reader
 * accepts any order and checks that the tensors tile the data section exactly.
 *
 * Conv weights: the engine stores them [KH, KW, Cin, Cout] (so conv is an im2col GEMM), PyTorch's
 * nn.Conv2d wants [Cout, Cin, KH, KW] (OIHW): element (kh, kw, ci, co) moves to (co, ci, kh, kw).
 * `toOIHW` does that transpose (and `fromOIHW` its inverse); linear weights are already [out, in] and
 * biases [out], so they are written as they are.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';

export type SafeDType = 'F32' | 'I64' | 'I32' | 'U32';
export type SafeData = Float32Array | Int32Array | Uint32Array | BigInt64Array;

export interface SafeTensor {
  dtype: SafeDType;
  shape: number[];
  data: SafeData;
}

/** What a reader may find in files written by other tools; 16-bit floats come back as raw bits. */
export type ReadDType = SafeDType | 'F64' | 'U64' | 'I16' | 'U16' | 'I8' | 'U8' | 'BOOL' | 'F16' | 'BF16';
export type ReadData = SafeData | Float64Array | BigUint64Array | Int16Array | Uint16Array | Int8Array | Uint8Array;

export interface ReadTensor {
  dtype: ReadDType;
  shape: number[];
  data: ReadData;
}

export interface SafetensorsFile {
  tensors: Record<string, ReadTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const ITEM_BYTES: Record<ReadDType, number> = {
  F64: 8,
  I64: 8,
  U64: 8,
  F32: 4,
  I32: 4,
  U32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  U16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

const WRITE_CTOR: Record<
  SafeDType,
  typeof Float32Array | typeof Int32Array | typeof Uint32Array | typeof BigInt64Array
> = {
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
  U32: Uint32Array,
};

/** Largest header we accept (the reference implementation's limit is 100 MB). */
const MAX_HEADER = 100_000_000;

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1)
    throw new SafetensorsError('safetensors: big-endian hosts are not supported');
}

/** obj[key] = value as an own property, even for keys like "__proto__". */
function setOwn(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function product(shape: readonly number[]): number {
  return shape.reduce((x, y) => x * y, 1);
}

/** Serialises tensors (and optional string metadata) to the bytes of a safetensors file. */
export function encodeSafetensors(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  assertLittleEndian();
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new TypeError(`writeSafetensors: metadata value for "${k}" must be a string, got ${typeof v}`);
    }
    const meta = {};
    for (const [k, v] of Object.entries(metadata)) setOwn(meta, k, v);
    setOwn(header, '__metadata__', meta);
  }
  let offset = 0;
  for (const name of names) {
    if (name.length === 0 || name === '__metadata__')
      throw new RangeError(`writeSafetensors: invalid tensor name "${name}"`);
    const t = tensors[name];
    const Ctor = WRITE_CTOR[t.dtype];
    if (!Ctor)
      throw new TypeError(
        `writeSafetensors: tensor "${name}" has unsupported dtype ${String(t.dtype)} (F32, I64, I32, U32)`,
      );
    if (!(t.data instanceof Ctor)) {
      throw new TypeError(
        `writeSafetensors: tensor "${name}" is ${t.dtype} but its data is a ${t.data.constructor.name}, not a ${Ctor.name}`,
      );
    }
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new RangeError(`writeSafetensors: tensor "${name}" has an invalid shape [${String(t.shape)}]`);
    }
    if (product(t.shape) !== t.data.length) {
      throw new RangeError(
        `writeSafetensors: tensor "${name}" has shape [${t.shape.join(', ')}] (${product(t.shape)} elements) but ${t.data.length} values`,
      );
    }
    const bytes = t.data.byteLength;
    setOwn(header, name, { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + bytes] });
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let at = 8 + padded;
  for (const name of names) {
    const d = tensors[name].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

function fail(where: string, message: string): never {
  throw new SafetensorsError(`${where}: ${message}`);
}

function typedView(dtype: ReadDType, bytes: ArrayBuffer): ReadData {
  switch (dtype) {
    case 'F64':
      return new Float64Array(bytes);
    case 'F32':
      return new Float32Array(bytes);
    case 'I64':
      return new BigInt64Array(bytes);
    case 'U64':
      return new BigUint64Array(bytes);
    case 'I32':
      return new Int32Array(bytes);
    case 'U32':
      return new Uint32Array(bytes);
    case 'I16':
      return new Int16Array(bytes);
    case 'U16':
    case 'F16':
    case 'BF16':
      return new Uint16Array(bytes);
    case 'I8':
      return new Int8Array(bytes);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(bytes);
  }
}

/** Parses the bytes of a safetensors file; `where` names the source in error messages. */
export function decodeSafetensors(bytes: Uint8Array, where = 'safetensors'): SafetensorsFile {
  assertLittleEndian();
  if (bytes.length < 8) fail(where, `truncated file: ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER))
    fail(where, `corrupt file: header length ${headerLen64} exceeds the ${MAX_HEADER}-byte limit`);
  const headerLen = Number(headerLen64);
  if (8 + headerLen > bytes.length) {
    fail(
      where,
      `truncated file: header says ${headerLen} bytes of JSON but only ${bytes.length - 8} bytes follow the length`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)));
  } catch (err) {
    fail(where, `corrupt header: not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header))
    fail(where, 'corrupt header: the JSON is not an object');
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: Record<string, ReadTensor> = {};
  const spans: Array<[number, number, string]> = [];
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
        fail(where, 'corrupt header: __metadata__ is not an object');
      for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(where, `corrupt header: __metadata__["${k}"] is not a string`);
        setOwn(metadata, k, v);
      }
      continue;
    }
    if (entry === null || typeof entry !== 'object') fail(where, `corrupt header: entry "${name}" is not an object`);
    const {
      dtype,
      shape,
      data_offsets: offsets,
    } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in ITEM_BYTES))
      fail(where, `tensor "${name}": unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || (d as number) < 0)) {
      fail(where, `tensor "${name}": invalid shape ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      offsets.some((o) => !Number.isSafeInteger(o) || (o as number) < 0)
    ) {
      fail(where, `tensor "${name}": invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const itemBytes = ITEM_BYTES[dtype as ReadDType];
    const expected = product(shape as number[]) * itemBytes;
    if (end < begin || end - begin !== expected) {
      fail(
        where,
        `tensor "${name}": data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but ${dtype} [${(shape as number[]).join(', ')}] needs ${expected}`,
      );
    }
    if (end > dataLen)
      fail(
        where,
        `truncated file: tensor "${name}" ends at byte ${end} of the data section, which has only ${dataLen} bytes`,
      );
    spans.push([begin, end, name]);
    // Copy so the typed array is aligned and independent of the file buffer.
    const copy = bytes.slice(dataStart + begin, dataStart + end).buffer;
    setOwn(tensors, name, {
      dtype: dtype as ReadDType,
      shape: (shape as number[]).slice(),
      data: typedView(dtype as ReadDType, copy),
    });
  }
  spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let covered = 0;
  for (const [begin, end, name] of spans) {
    if (begin !== covered) {
      fail(
        where,
        begin < covered
          ? `corrupt header: tensor "${name}" overlaps the previous tensor`
          : `corrupt header: a gap of ${begin - covered} bytes before tensor "${name}"`,
      );
    }
    covered = end;
  }
  if (covered !== dataLen) fail(where, `corrupt file: ${dataLen - covered} trailing bytes after the last tensor`);
  return { tensors, metadata };
}

/** Writes a safetensors file atomically (a temporary file beside it, fsync, then rename). */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const bytes = encodeSafetensors(tensors, metadata);
  const tmp = `${path}.tmp-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Reads a safetensors file; throws a SafetensorsError naming the file for truncated or corrupt ones. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const bytes = await readFile(path);
  return decodeSafetensors(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}

function convDims(shape: readonly number[], what: string): [number, number, number, number] {
  if (shape.length !== 4 || shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new RangeError(`${what}: expected a 4-D conv weight shape, got [${shape.join(', ')}]`);
  }
  return [shape[0], shape[1], shape[2], shape[3]];
}

/**
 * The one index map between engine [KH, KW, Cin, Cout] and PyTorch [Cout, Cin, KH, KW] order, applied
 * in either direction (a pure permutation: every output value is one input value).
 */
function permuteConv(
  data: ArrayLike<number>,
  kh: number,
  kw: number,
  ci: number,
  co: number,
  direction: 'toOIHW' | 'fromOIHW',
): Float32Array {
  const out = new Float32Array(data.length);
  const toTorch = direction === 'toOIHW';
  for (let h = 0; h < kh; h++) {
    for (let w = 0; w < kw; w++) {
      for (let i = 0; i < ci; i++) {
        for (let o = 0; o < co; o++) {
          const engine = ((h * kw + w) * ci + i) * co + o;
          const torch = ((o * ci + i) * kh + h) * kw + w;
          if (toTorch) out[torch] = data[engine];
          else out[engine] = data[torch];
        }
      }
    }
  }
  return out;
}

/** Engine conv weight [KH, KW, Cin, Cout] -> PyTorch [Cout, Cin, KH, KW] (OIHW). */
export function toOIHW(data: ArrayLike<number>, shape: readonly number[]): { data: Float32Array; shape: number[] } {
  const [kh, kw, ci, co] = convDims(shape, 'toOIHW');
  if (data.length !== kh * kw * ci * co)
    throw new RangeError(`toOIHW: ${data.length} values for shape [${shape.join(', ')}]`);
  return { data: permuteConv(data, kh, kw, ci, co, 'toOIHW'), shape: [co, ci, kh, kw] };
}

/** PyTorch [Cout, Cin, KH, KW] -> engine [KH, KW, Cin, Cout] (inverse of toOIHW). */
export function fromOIHW(data: ArrayLike<number>, shape: readonly number[]): { data: Float32Array; shape: number[] } {
  const [co, ci, kh, kw] = convDims(shape, 'fromOIHW');
  if (data.length !== kh * kw * ci * co)
    throw new RangeError(`fromOIHW: ${data.length} values for shape [${shape.join(', ')}]`);
  return { data: permuteConv(data, kh, kw, ci, co, 'fromOIHW'), shape: [kh, kw, ci, co] };
}
