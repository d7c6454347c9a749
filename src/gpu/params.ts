/**
 * Packs a kernel's uniform block. WGSL lays scalar u32/i32/f32 fields out 4 bytes apart, and the block
 * is padded to 16 bytes; fields must be pushed in the order the WGSL struct declares them, which
 * `packParams` (src/gpu/kernel.ts) does from a kernel's declaration.
 *
 * Blocks live in one shared arena (a ring of 256-byte slots) rather than a buffer each: recording a
 * dispatch allocates no backing store, and the recorder copies the words straight into its uniform
 * staging. A block stays valid until ARENA_SLOTS newer blocks have been made (thousands of dispatches);
 * using one after that throws, so build a block right before the dispatches that use it.
 */

/** Bytes per block: the uniform binding size (and minUniformBufferOffsetAlignment on every adapter we know). */
export const PARAMS_BYTES = 256;
const SLOT_WORDS = PARAMS_BYTES / 4;
const ARENA_SLOTS = 4096;

const arena = new ArrayBuffer(ARENA_SLOTS * PARAMS_BYTES);
const arenaU32 = new Uint32Array(arena);
const arenaI32 = new Int32Array(arena);
const arenaF32 = new Float32Array(arena);
/** Which block (by serial number) owns each slot now. */
const owner = new Float64Array(ARENA_SLOTS);
let serial = 0;

export class Params {
  private readonly slot: number;
  private readonly serial: number;
  private words = 0;
  private readonly capacityWords: number;

  constructor(capacity = PARAMS_BYTES) {
    if (capacity > PARAMS_BYTES) throw new RangeError(`uniform block over ${PARAMS_BYTES} bytes`);
    this.capacityWords = Math.floor(capacity / 4);
    this.serial = ++serial;
    this.slot = this.serial % ARENA_SLOTS;
    owner[this.slot] = this.serial;
  }

  private next(): number {
    if (owner[this.slot] !== this.serial) throw this.stale();
    if (this.words >= this.capacityWords) throw new RangeError(`uniform block over ${this.capacityWords * 4} bytes`);
    return this.slot * SLOT_WORDS + this.words++;
  }

  u32(...values: number[]): this {
    for (const v of values) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform u32 out of range: ${v}`);
      arenaU32[this.next()] = v;
    }
    return this;
  }

  i32(...values: number[]): this {
    for (const v of values) {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff)
        throw new RangeError(`uniform i32 out of range: ${v}`);
      arenaI32[this.next()] = v;
    }
    return this;
  }

  f32(...values: number[]): this {
    for (const v of values) arenaF32[this.next()] = v;
    return this;
  }

  /** Appends `words` words, which `write` puts at word `at` and after in the arena's three views of one buffer. */
  pack(words: number, write: (u32: Uint32Array, i32: Int32Array, f32: Float32Array, at: number) => void): this {
    if (owner[this.slot] !== this.serial) throw this.stale();
    if (this.words + words > this.capacityWords)
      throw new RangeError(`uniform block over ${this.capacityWords * 4} bytes`);
    write(arenaU32, arenaI32, arenaF32, this.slot * SLOT_WORDS + this.words);
    this.words += words;
    return this;
  }

  /** Size of the packed block in bytes: the fields, padded to a multiple of 16 (at least 16). */
  get byteLength(): number {
    return Math.max(16, Math.ceil(this.words / 4) * 16);
  }

  /** Copies the packed block (byteLength bytes, padding zeroed) into `target` from word `wordOffset`. */
  copyInto(target: Uint32Array, wordOffset: number): void {
    if (owner[this.slot] !== this.serial) throw this.stale();
    const base = this.slot * SLOT_WORDS;
    const padded = this.byteLength / 4;
    for (let i = 0; i < this.words; i++) target[wordOffset + i] = arenaU32[base + i];
    for (let i = this.words; i < padded; i++) target[wordOffset + i] = 0;
  }

  /** The packed bytes, padded to a multiple of 16 (a copy). */
  get data(): Uint8Array {
    const out = new Uint32Array(this.byteLength / 4);
    this.copyInto(out, 0);
    return new Uint8Array(out.buffer);
  }

  private stale(): Error {
    return new Error(
      `a uniform block (Params) was used after ${ARENA_SLOTS} newer blocks reused its arena slot: build it right before its dispatches`,
    );
  }
}
