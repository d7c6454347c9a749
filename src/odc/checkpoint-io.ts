/**
 * A small binary container for named typed arrays plus JSON metadata, used for the ODC memory state
 * and reusable for whole training checkpoints.
 *
 * Layout (all integers little-endian):
 *   bytes 0..8    magic "ODCREC01"
 *   bytes 8..12   u32 header length H
 *   bytes 12..16  u32 CRC-32 of the header bytes
 *   bytes 16..16+H  header, UTF-8 JSON: { meta, records: [{ name, dtype, shape, offset, bytes, crc32 }], dataBytes }
 *   zero padding to a multiple of 8, then the data section (each record at `offset` from its start,
 *   8-byte aligned), then the 8-byte trailer "ODCEND01".
 * Each record carries the CRC-32 of its bytes; reading verifies the magic, the header CRC, the file
 * length (truncation), every record CRC and the trailer, and throws a `CheckpointError` naming the file
 * and what is wrong. Values round-trip bit-exactly (raw bytes, including NaN payloads and -0).
 *
 * Writing goes to a temporary file beside the target, is fsync'ed, then renamed over the target, so a
 * crash never leaves a half-written checkpoint under the real name. A process that must exit at once (a
 * second Ctrl-C) calls `abandonPendingWrites()` first, so no temporary file outlives it either.
 */
import { closeSync, fstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { crc32 as crc32Range } from '../util/crc32.ts';

export type RecordDType = 'f32' | 'f64' | 'i32' | 'u32' | 'u8';
export type RecordArray = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

/** A typed array with an optional logical shape (defaults to [length]). */
export interface TensorRecord {
  data: RecordArray;
  shape?: readonly number[];
}

/**
 * A record written from pieces produced on demand (a large GPU tensor read one shard at a time), so the writer
 * never holds it whole: its values in order, the pieces' lengths summing to the shape's size.
 */
export interface StreamedRecord {
  dtype: RecordDType;
  shape: readonly number[];
  chunks: () => AsyncIterable<RecordArray>;
}

export interface ReadRecord {
  dtype: RecordDType;
  shape: number[];
  data: RecordArray;
}

/**
 * A record left in the file by `readRecords`' `stream` option: read piece by piece (synchronous positional
 * reads), its CRC-32 checked once the last piece is read (a mismatch throws a CheckpointError then).
 */
export interface StreamedReadRecord {
  dtype: RecordDType;
  shape: number[];
  /** The values in order, in pieces of at most maxElements (each a fresh array). */
  pieces(maxElements: number): Iterable<RecordArray>;
}

export interface RecordFile {
  meta: unknown;
  records: Map<string, ReadRecord>;
  /** The records named by readRecords' `stream` option (empty without it). */
  streamed: Map<string, StreamedReadRecord>;
}

interface HeaderEntry {
  name: string;
  dtype: RecordDType;
  shape: number[];
  offset: number;
  bytes: number;
  crc32: number;
}

interface Header {
  meta: unknown;
  records: HeaderEntry[];
  dataBytes: number;
}

export class CheckpointError extends Error {
  constructor(where: string, what: string) {
    super(`${where}: ${what}`);
    this.name = 'CheckpointError';
  }
}

const MAGIC = 'ODCREC01';
const TRAILER = 'ODCEND01';

/** CRC-32 (IEEE 802.3, as zlib) of some bytes, optionally continuing from a previous value. */
export function crc32(bytes: Uint8Array, previous = 0): number {
  return crc32Range(bytes, 0, bytes.length, previous);
}

function dtypeOf(a: RecordArray): RecordDType {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Float64Array) return 'f64';
  if (a instanceof Int32Array) return 'i32';
  if (a instanceof Uint32Array) return 'u32';
  if (a instanceof Uint8Array) return 'u8';
  throw new TypeError('checkpoint records must be Float32Array, Float64Array, Int32Array, Uint32Array or Uint8Array');
}

const ELEMENT_BYTES: Record<RecordDType, number> = { f32: 4, f64: 8, i32: 4, u32: 4, u8: 1 };

function bytesOf(a: RecordArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function align8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

function normalise(
  records: Record<string, RecordArray | TensorRecord>,
): Array<{ name: string; data: RecordArray; shape: number[] }> {
  return Object.entries(records).map(([name, r]) => {
    const data = ArrayBuffer.isView(r) ? r : r.data;
    const shape = ArrayBuffer.isView(r) ? [data.length] : [...(r.shape ?? [data.length])];
    dtypeOf(data);
    const size = shape.reduce((a, b) => a * b, 1);
    if (size !== data.length)
      throw new RangeError(
        `checkpoint record "${name}": shape [${shape.join(', ')}] does not match ${data.length} values`,
      );
    return { name, data, shape };
  });
}

/** A record's header facts before its offset is known (crc32 of a streamed record: a placeholder until written). */
type EntryFacts = Omit<HeaderEntry, 'offset'>;

function factsOf(it: { name: string; data: RecordArray; shape: number[] }): EntryFacts {
  return {
    name: it.name,
    dtype: dtypeOf(it.data),
    shape: it.shape,
    bytes: it.data.byteLength,
    crc32: crc32(bytesOf(it.data)),
  };
}

/**
 * The preamble + header bytes. `jsonLength` pads the JSON with spaces to that length (a header rewritten once
 * the CRCs of streamed records are known keeps the length reserved for it).
 */
function buildHeader(facts: EntryFacts[], meta: unknown, jsonLength = 0): { prefix: Uint8Array; header: Header } {
  let offset = 0;
  const entries: HeaderEntry[] = facts.map((f) => {
    const e: HeaderEntry = { ...f, offset };
    offset = align8(offset + f.bytes);
    return e;
  });
  const header: Header = { meta: meta ?? null, records: entries, dataBytes: offset };
  const encoded = new TextEncoder().encode(JSON.stringify(header));
  const json = encoded.length < jsonLength ? new Uint8Array(jsonLength).fill(0x20) : encoded; // 0x20: JSON whitespace
  if (json !== encoded) json.set(encoded, 0);
  const prefix = new Uint8Array(align8(16 + json.length));
  prefix.set(new TextEncoder().encode(MAGIC), 0);
  const view = new DataView(prefix.buffer);
  view.setUint32(8, json.length, true);
  view.setUint32(12, crc32(json), true);
  prefix.set(json, 16);
  return { prefix, header };
}

/** Encodes records + metadata into one byte array (see the layout above). */
export function encodeRecords(records: Record<string, RecordArray | TensorRecord>, meta: unknown = null): Uint8Array {
  const items = normalise(records);
  const { prefix, header } = buildHeader(items.map(factsOf), meta);
  const out = new Uint8Array(prefix.length + header.dataBytes + TRAILER.length);
  out.set(prefix, 0);
  items.forEach((it, i) => out.set(bytesOf(it.data), prefix.length + header.records[i].offset));
  out.set(new TextEncoder().encode(TRAILER), prefix.length + header.dataBytes);
  return out;
}

/** Bytes read by position: a whole file's bytes in memory, or an open file. */
interface ByteSource {
  length: number;
  read(pos: number, length: number): Uint8Array;
}

/** Positional reads from an open file descriptor (synchronous: a checkpoint restore reads them in order). */
function fileSource(fd: number): ByteSource {
  return {
    length: fstatSync(fd).size,
    read(pos, length) {
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const got = readSync(fd, out, done, length - done, pos + done);
        if (got === 0) break;
        done += got;
      }
      return out.subarray(0, done);
    },
  };
}

/** Decodes and verifies a record file's bytes; `where` names the source in errors. */
export function decodeRecords(bytes: Uint8Array, where = 'checkpoint'): RecordFile {
  return decodeFrom(
    { length: bytes.length, read: (pos, length) => bytes.subarray(pos, pos + length) },
    where,
    () => false,
    '',
  );
}

/** decodeRecords over any byte source; records `stream` names stay in the file at `path`, read later by pieces. */
function decodeFrom(src: ByteSource, where: string, stream: (name: string) => boolean, path: string): RecordFile {
  if (src.length < 16)
    throw new CheckpointError(where, `truncated: ${src.length} bytes, shorter than the 16-byte preamble`);
  const preamble = src.read(0, 16);
  const magic = new TextDecoder().decode(preamble.subarray(0, 8));
  if (magic !== MAGIC)
    throw new CheckpointError(
      where,
      `not an ODC record file (magic "${magic.replace(/[^\x20-\x7e]/g, '?')}", expected "${MAGIC}")`,
    );
  const view = new DataView(preamble.buffer, preamble.byteOffset, preamble.byteLength);
  const headerLength = view.getUint32(8, true);
  const headerCrc = view.getUint32(12, true);
  if (16 + headerLength > src.length)
    throw new CheckpointError(
      where,
      `truncated: header needs ${headerLength} bytes, file has ${src.length - 16} after the preamble`,
    );
  const json = src.read(16, headerLength);
  if (crc32(json) !== headerCrc) throw new CheckpointError(where, 'corrupt header (CRC-32 mismatch)');
  let header: Header;
  try {
    header = JSON.parse(new TextDecoder().decode(json)) as Header;
  } catch (err) {
    throw new CheckpointError(where, `corrupt header JSON: ${(err as Error).message}`);
  }
  const dataStart = align8(16 + headerLength);
  const expected = dataStart + header.dataBytes + TRAILER.length;
  if (src.length < expected) throw new CheckpointError(where, `truncated: ${src.length} bytes, expected ${expected}`);
  if (src.length > expected)
    throw new CheckpointError(where, `${src.length - expected} unexpected bytes after the end of the data`);
  const trailer = new TextDecoder().decode(src.read(expected - TRAILER.length, TRAILER.length));
  if (trailer !== TRAILER) throw new CheckpointError(where, 'corrupt: end marker missing');
  const records = new Map<string, ReadRecord>();
  const streamed = new Map<string, StreamedReadRecord>();
  for (const e of header.records) {
    const per = ELEMENT_BYTES[e.dtype];
    if (per === undefined) throw new CheckpointError(where, `record "${e.name}" has unknown dtype ${String(e.dtype)}`);
    const size = e.shape.reduce((a, b) => a * b, 1);
    if (size * per !== e.bytes || e.offset + e.bytes > header.dataBytes)
      throw new CheckpointError(where, `record "${e.name}" has an inconsistent size or offset`);
    if (stream(e.name)) {
      streamed.set(e.name, {
        dtype: e.dtype,
        shape: e.shape,
        pieces: (maxElements) => readPieces(path, where, e, dataStart, maxElements),
      });
      continue;
    }
    const raw = src.read(dataStart + e.offset, e.bytes);
    if (crc32(raw) !== e.crc32) throw new CheckpointError(where, `record "${e.name}" is corrupt (CRC-32 mismatch)`);
    const copy = new Uint8Array(raw).buffer; // aligned private copy (Buffer#slice would share memory)
    records.set(e.name, { dtype: e.dtype, shape: e.shape, data: typedArray(e.dtype, copy) });
  }
  return { meta: header.meta, records, streamed };
}

function typedArray(dtype: RecordDType, copy: ArrayBuffer): RecordArray {
  return dtype === 'f32'
    ? new Float32Array(copy)
    : dtype === 'f64'
      ? new Float64Array(copy)
      : dtype === 'i32'
        ? new Int32Array(copy)
        : dtype === 'u32'
          ? new Uint32Array(copy)
          : new Uint8Array(copy);
}

/** A streamed record's pieces, read from the file again by position; its CRC-32 is checked after the last one. */
function* readPieces(
  path: string,
  where: string,
  e: HeaderEntry,
  dataStart: number,
  maxElements: number,
): Generator<RecordArray> {
  const per = ELEMENT_BYTES[e.dtype];
  const step = Math.max(1, Math.floor(maxElements)) * per;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw new CheckpointError(where, `cannot read: ${(err as Error).message}`);
  }
  try {
    const src = fileSource(fd);
    let crc = 0;
    for (let done = 0; done < e.bytes; done += step) {
      const raw = src.read(dataStart + e.offset + done, Math.min(step, e.bytes - done));
      if (raw.length < Math.min(step, e.bytes - done))
        throw new CheckpointError(where, `truncated while reading record "${e.name}"`);
      crc = crc32(raw, crc);
      yield typedArray(e.dtype, new Uint8Array(raw).buffer);
    }
    if (crc !== e.crc32) throw new CheckpointError(where, `record "${e.name}" is corrupt (CRC-32 mismatch)`);
  } finally {
    closeSync(fd);
  }
}

/** Temporary files of the writes in progress (created, not yet renamed over their target). */
const pendingTempFiles = new Set<string>();

/**
 * Deletes the temporary files of every write in progress, synchronously, for a process about to exit
 * without finishing them: each target keeps its previous complete version. Returns the files removed.
 */
export function abandonPendingWrites(): string[] {
  const removed: string[] = [];
  for (const tmp of pendingTempFiles) {
    try {
      unlinkSync(tmp);
      removed.push(tmp);
    } catch {
      // already renamed over its target (a complete file) or never created: nothing is left behind
    }
  }
  pendingTempFiles.clear();
  return removed;
}

function isStreamed(r: RecordArray | TensorRecord | StreamedRecord): r is StreamedRecord {
  return !ArrayBuffer.isView(r) && 'chunks' in r;
}

/**
 * Writes records + metadata to `path` atomically (temp file, fsync, rename). A StreamedRecord is written piece by
 * piece as its chunks come, and its CRC-32 goes into the header, rewritten in place once all data is written.
 */
export async function writeRecords(
  path: string,
  records: Record<string, RecordArray | TensorRecord | StreamedRecord>,
  meta: unknown = null,
): Promise<void> {
  const plain: Record<string, RecordArray | TensorRecord> = {};
  for (const [name, r] of Object.entries(records)) if (!isStreamed(r)) plain[name] = r;
  const arrays = new Map(normalise(plain).map((it) => [it.name, it]));
  const facts: EntryFacts[] = [];
  const streamed = new Map<number, StreamedRecord>();
  for (const [name, r] of Object.entries(records)) {
    if (!isStreamed(r)) {
      facts.push(factsOf(arrays.get(name)!));
      continue;
    }
    const per = ELEMENT_BYTES[r.dtype];
    if (per === undefined) throw new TypeError(`checkpoint record "${name}": unknown dtype ${String(r.dtype)}`);
    streamed.set(facts.length, r);
    // 0xffffffff: the widest CRC in JSON, so the final header is never longer than the reserved one
    facts.push({
      name,
      dtype: r.dtype,
      shape: [...r.shape],
      bytes: r.shape.reduce((a, b) => a * b, 1) * per,
      crc32: 0xffffffff,
    });
  }
  const reserved = buildHeader(facts, meta);
  const jsonLength = new DataView(reserved.prefix.buffer).getUint32(8, true);
  const prefix = reserved.prefix;
  const tmp = `${path}.tmp-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  // Created synchronously and registered at once: abandonPendingWrites() never misses a file being created.
  closeSync(openSync(tmp, 'wx'));
  pendingTempFiles.add(tmp);
  let fh;
  try {
    fh = await open(tmp, 'r+');
  } catch (err) {
    pendingTempFiles.delete(tmp);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  try {
    let pos = 0;
    const put = async (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) {
        const { bytesWritten } = await fh.write(b, done, Math.min(b.length - done, 1 << 30), pos);
        done += bytesWritten;
        pos += bytesWritten;
      }
    };
    await put(prefix);
    const zeros = new Uint8Array(8);
    for (let i = 0; i < facts.length; i++) {
      const stream = streamed.get(i);
      let length = 0;
      if (stream) {
        let crc = 0;
        for await (const piece of stream.chunks()) {
          if (dtypeOf(piece) !== facts[i].dtype)
            throw new TypeError(
              `checkpoint record "${facts[i].name}": a ${dtypeOf(piece)} piece in a ${facts[i].dtype} record`,
            );
          const b = bytesOf(piece);
          crc = crc32(b, crc);
          await put(b);
          length += b.length;
        }
        if (length !== facts[i].bytes)
          throw new RangeError(
            `checkpoint record "${facts[i].name}": its pieces hold ${length} bytes, its shape ${facts[i].bytes}`,
          );
        facts[i] = { ...facts[i], crc32: crc };
      } else {
        const b = bytesOf(arrays.get(facts[i].name)!.data);
        await put(b);
        length = b.length;
      }
      const pad = align8(length) - length;
      if (pad > 0) await put(zeros.subarray(0, pad));
    }
    await put(new TextEncoder().encode(TRAILER));
    if (streamed.size > 0) {
      const end = pos;
      pos = 0;
      await put(buildHeader(facts, meta, jsonLength).prefix);
      pos = end;
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    pendingTempFiles.delete(tmp);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  } finally {
    pendingTempFiles.delete(tmp);
  }
}

/**
 * Reads and verifies a file written by `writeRecords`. Records that `options.stream` names are not read now:
 * they come back in `streamed`, to be read piece by piece (the ODC memory's features on a resume).
 */
export async function readRecords(
  path: string,
  options: { stream?: (name: string) => boolean } = {},
): Promise<RecordFile> {
  if (options.stream) {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      throw new CheckpointError(path, `cannot read: ${(err as Error).message}`);
    }
    try {
      return decodeFrom(fileSource(fd), path, options.stream, path);
    } finally {
      closeSync(fd);
    }
  }
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new CheckpointError(path, `cannot read: ${(err as Error).message}`);
  }
  return decodeRecords(bytes, path);
}
