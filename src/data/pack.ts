/**
 * Packed image files (`.odcpack`): n images of one stored size as fixed-size uint8 records, read by
 * offset, so a data set far larger than memory trains without loading it (`odc prepare` writes them,
 * `--data pack:FILE` reads them).
 *
 * Layout (little-endian):
 *   0      4096-byte header block: "ODCPACK1", u32 JSON length, u32 CRC-32 of the JSON, the JSON (PackHeader)
 *   4096   the images, image i at 4096 + i * imageBytes (HWC, 0..255)
 *   then   labels (n x i32) when the set is labelled, then the image names (UTF-8, one per line)
 * The header holds CRC-32s of the three sections. A pack is written under `<out>.partial` with its header
 * block zeroed, and only when everything else is on disk is the header written, the file fsync'ed and
 * renamed to `<out>`: a killed prepare leaves at most a `.partial` file, which no reader accepts (no magic).
 */
import { closeSync, fstatSync, fsyncSync, openSync, read, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { crc32 } from '../util/crc32.ts';
import { checkLabels, imageBytes } from './dataset.ts';
import { checkRead, type ImageSource } from './source.ts';
import { fsReason } from './files.ts';

const MAGIC = 'ODCPACK1';
export const PACK_HEADER_BYTES = 4096;
/** The suffix of a pack being written. */
export const PARTIAL_SUFFIX = '.partial';

/** The JSON of a pack's header block. */
export interface PackHeader {
  version: 1;
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
  numClasses: number | null;
  /** Class names in label order (class sub-folders), or null. */
  classNames: string[] | null;
  imagesCrc32: number;
  labelsCrc32: number | null;
  namesCrc32: number;
  namesBytes: number;
  /** Where the images came from and how they were brought to the stored size (informative). */
  source: string;
  stored: string;
}

/** The byte offsets of a pack's sections. */
function sections(h: Pick<PackHeader, 'n' | 'height' | 'width' | 'channels' | 'numClasses' | 'namesBytes'>): {
  labels: number;
  names: number;
  end: number;
} {
  const labels = PACK_HEADER_BYTES + h.n * imageBytes(h);
  const names = labels + (h.numClasses === null ? 0 : 4 * h.n);
  return { labels, names, end: names + h.namesBytes };
}

/**
 * Writes a pack image by image (`append`, in order), then `finish` makes it complete and visible under
 * its name in one rename. `abort` (or a kill) leaves no file that looks complete.
 */
export class PackWriter {
  readonly partial: string;
  private readonly fd: number;
  private readonly per: number;
  private count = 0;
  private imagesCrc = 0;
  private readonly labels: number[] = [];
  private readonly names: string[] = [];
  private closed = false;

  constructor(
    readonly path: string,
    readonly shape: { height: number; width: number; channels: 1 | 3 },
  ) {
    this.per = imageBytes(shape);
    this.partial = path + PARTIAL_SUFFIX;
    try {
      this.fd = openSync(this.partial, 'w'); // replaces the leftover of a killed run
    } catch (err) {
      throw new Error(
        `${this.partial}: cannot create the pack file (${fsReason(err)}): check the output path and its folder's permissions`,
      );
    }
    writeSync(this.fd, new Uint8Array(PACK_HEADER_BYTES), 0, PACK_HEADER_BYTES, 0);
  }

  /** Images written so far. */
  get n(): number {
    return this.count;
  }

  /** Appends one image (imageBytes bytes, HWC), its label (-1: none) and its name (a path, no newline). */
  append(image: Uint8Array, label: number, name: string): void {
    if (image.length !== this.per)
      throw new RangeError(`PackWriter: image "${name}" has ${image.length} bytes, expected ${this.per}`);
    writeAll(this.fd, image, PACK_HEADER_BYTES + this.count * this.per);
    this.imagesCrc = crc32(image, 0, image.length, this.imagesCrc);
    this.labels.push(label);
    this.names.push(name.replace(/\n/g, ' '));
    this.count++;
  }

  /** Writes labels, names and the header, syncs, and renames the file to its name. Returns the path. */
  finish(meta: { numClasses: number | null; classNames?: string[] | null; source: string; stored: string }): string {
    const n = this.count;
    if (n === 0) throw new Error(`${this.path}: no image was written: the source holds no usable image`);
    let labelsCrc32: number | null = null;
    if (meta.numClasses !== null) {
      const labels = Int32Array.from(this.labels);
      checkLabels(labels, meta.numClasses, this.path, 'image');
      const bytes = new Uint8Array(labels.buffer);
      labelsCrc32 = crc32(bytes);
      writeAll(this.fd, bytes, PACK_HEADER_BYTES + n * this.per);
    }
    const names = new TextEncoder().encode(this.names.join('\n'));
    const header: PackHeader = {
      version: 1,
      n,
      ...this.shape,
      numClasses: meta.numClasses,
      classNames: meta.classNames ?? null,
      imagesCrc32: this.imagesCrc,
      labelsCrc32,
      namesCrc32: crc32(names),
      namesBytes: names.length,
      source: meta.source,
      stored: meta.stored,
    };
    writeAll(this.fd, names, sections(header).names);
    let json = new TextEncoder().encode(JSON.stringify(header));
    if (16 + json.length > PACK_HEADER_BYTES) {
      // class names are informative: drop them rather than fail a long build at its last step
      header.classNames = null;
      json = new TextEncoder().encode(JSON.stringify(header));
    }
    const block = new Uint8Array(PACK_HEADER_BYTES);
    block.set(new TextEncoder().encode(MAGIC), 0);
    new DataView(block.buffer).setUint32(8, json.length, true);
    new DataView(block.buffer).setUint32(12, crc32(json), true);
    block.set(json, 16);
    fsyncSync(this.fd); // the data reaches the disk before the header that declares it complete
    writeAll(this.fd, block, 0);
    fsyncSync(this.fd);
    closeSync(this.fd);
    this.closed = true;
    renameSync(this.partial, this.path);
    return this.path;
  }

  /** Closes and deletes the partial file (nothing is left under either name). */
  abort(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    try {
      unlinkSync(this.partial);
    } catch {
      // already gone
    }
  }
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

function readAll(fd: number, out: Uint8Array, offset: number, length: number, position: number, path: string): void {
  let done = 0;
  while (done < length) {
    const got = readSync(fd, out, offset + done, length - done, position + done);
    if (got === 0) throw new Error(`${path}: the pack file ends early (truncated?): prepare it again`);
    done += got;
  }
}

/** Reads and checks a pack's header block and its size on disk. */
export function readPackHeader(path: string, fd: number): PackHeader {
  const block = new Uint8Array(PACK_HEADER_BYTES);
  const size = fstatSync(fd).size;
  const bad = (why: string): Error =>
    new Error(
      `${path}: not a complete .odcpack file (${why}): make it with \`odc prepare --data SOURCE --out ${path}\`${path.endsWith(PARTIAL_SUFFIX) ? ' (a .partial file is an unfinished prepare)' : ''}`,
    );
  if (size < PACK_HEADER_BYTES) throw bad(`${size} bytes, shorter than its header`);
  readAll(fd, block, 0, PACK_HEADER_BYTES, 0, path);
  if (new TextDecoder().decode(block.subarray(0, 8)) !== MAGIC) throw bad('no ODCPACK1 signature');
  const view = new DataView(block.buffer);
  const length = view.getUint32(8, true);
  if (length > PACK_HEADER_BYTES - 16) throw bad('a header length beyond the header block');
  const json = block.subarray(16, 16 + length);
  if (crc32(json) !== view.getUint32(12, true)) throw bad('the header fails its checksum');
  const h = JSON.parse(new TextDecoder().decode(json)) as PackHeader;
  if (h.version !== 1) throw bad(`format version ${String(h.version)}; this program reads version 1`);
  const end = sections(h).end;
  if (size !== end) throw bad(`${size} bytes on disk, the header declares ${end}`);
  return h;
}

export interface PackSourceOptions {
  /** Check every section's CRC-32 on open (reads the whole file once). */
  verify?: boolean;
}

/** A packed file as an image source: reads are positional, nothing but the labels is loaded. */
export class PackSource implements ImageSource {
  readonly name: string;
  readonly n: number;
  readonly height: number;
  readonly width: number;
  readonly channels: 1 | 3;
  readonly labels: Int32Array | null;
  readonly numClasses: number | null;
  readonly resident = null;
  readonly header: PackHeader;
  private fd: number | null;
  private readonly per: number;
  private names: string[] | null = null;

  constructor(
    readonly path: string,
    options: PackSourceOptions = {},
  ) {
    try {
      this.fd = openSync(path, 'r');
    } catch (err) {
      throw new Error(
        `${path}: cannot open the pack file (${fsReason(err)}): make it with \`odc prepare --data SOURCE --out ${path}\``,
      );
    }
    try {
      const h = readPackHeader(path, this.fd);
      this.header = h;
      this.name = path.replace(/^.*\//, '').replace(/\.odcpack$/, '');
      this.n = h.n;
      this.height = h.height;
      this.width = h.width;
      this.channels = h.channels;
      this.numClasses = h.numClasses;
      this.per = imageBytes(h);
      const at = sections(h);
      if (h.numClasses !== null) {
        const bytes = new Uint8Array(4 * h.n);
        readAll(this.fd, bytes, 0, bytes.length, at.labels, path);
        if (crc32(bytes) !== h.labelsCrc32)
          throw new Error(`${path}: the labels fail their checksum (a damaged file): prepare it again`);
        this.labels = new Int32Array(bytes.buffer);
        checkLabels(this.labels, h.numClasses, path, 'image');
      } else {
        this.labels = null;
      }
      if (options.verify) this.verify();
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Reads the whole image section and the names and compares their CRC-32s with the header's. */
  verify(): void {
    const fd = this.openFd();
    const chunk = new Uint8Array(Math.max(this.per, 1 << 22) - (Math.max(this.per, 1 << 22) % this.per));
    let crc = 0;
    const total = this.n * this.per;
    for (let done = 0; done < total;) {
      const len = Math.min(chunk.length, total - done);
      readAll(fd, chunk, 0, len, PACK_HEADER_BYTES + done, this.path);
      crc = crc32(chunk, 0, len, crc);
      done += len;
    }
    if (crc !== this.header.imagesCrc32)
      throw new Error(`${this.path}: the images fail their checksum (a damaged file): prepare it again`);
    if (crc32(this.namesBytes()) !== this.header.namesCrc32)
      throw new Error(`${this.path}: the image names fail their checksum (a damaged file): prepare it again`);
  }

  /** Each image's identifier (the report's, `odc clusters`'): its name in the pack, read on first use. */
  get ids(): readonly string[] {
    this.names ??= this.imageNames();
    return this.names;
  }

  /** The name (source path) of every image, in order. */
  imageNames(): string[] {
    const text = new TextDecoder().decode(this.namesBytes());
    return this.n === 0 ? [] : text.split('\n');
  }

  read(indices: ArrayLike<number>, out: Uint8Array): void {
    checkRead(this, indices, out);
    const fd = this.openFd();
    for (let i = 0; i < indices.length; i++)
      readAll(fd, out, i * this.per, this.per, PACK_HEADER_BYTES + indices[i] * this.per, this.path);
  }

  async readAsync(indices: ArrayLike<number>, out: Uint8Array): Promise<void> {
    checkRead(this, indices, out);
    const fd = this.openFd();
    // positional reads on the runtime's thread pool, on the descriptor the synchronous reads use
    const one = (i: number): Promise<void> =>
      new Promise((resolve, reject) => {
        const step = (done: number): void => {
          if (done === this.per) return resolve();
          read(
            fd,
            out,
            i * this.per + done,
            this.per - done,
            PACK_HEADER_BYTES + indices[i] * this.per + done,
            (err, bytesRead) => {
              if (err) reject(new Error(`${this.path}: cannot read the pack file (${fsReason(err)})`));
              else if (bytesRead === 0)
                reject(new Error(`${this.path}: the pack file ends early (truncated?): prepare it again`));
              else step(done + bytesRead);
            },
          );
        };
        step(0);
      });
    await Promise.all(Array.from({ length: indices.length }, (_, i) => one(i)));
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private openFd(): number {
    if (this.fd === null) throw new Error(`${this.path}: the pack was closed`);
    return this.fd;
  }

  private namesBytes(): Uint8Array {
    const bytes = new Uint8Array(this.header.namesBytes);
    readAll(this.openFd(), bytes, 0, bytes.length, sections(this.header).names, this.path);
    return bytes;
  }
}

/** Opens a pack file as a source. */
export function openPack(path: string, options: PackSourceOptions = {}): PackSource {
  return new PackSource(path, options);
}
