/**
 * Packs a kernel's uniform block. WGSL lays scalar u32/i32/f32 fields out 4 bytes apart, and the block
 * is padded to 16 bytes; fields must be pushed in the order the WGSL struct declares them, which
 * `packParams` (src/gpu/kernel.ts) does from a kernel's declaration.
 */
export class Params {
  private readonly view: DataView;
  private bytes = 0;

  constructor(capacity = 256) {
    this.view = new DataView(new ArrayBuffer(capacity));
  }

  u32(...values: number[]): this {
    for (const v of values) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`uniform u32 out of range: ${v}`);
      this.view.setUint32(this.bytes, v, true);
      this.bytes += 4;
    }
    return this;
  }

  i32(...values: number[]): this {
    for (const v of values) {
      if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`uniform i32 out of range: ${v}`);
      this.view.setInt32(this.bytes, v, true);
      this.bytes += 4;
    }
    return this;
  }

  f32(...values: number[]): this {
    for (const v of values) {
      this.view.setFloat32(this.bytes, v, true);
      this.bytes += 4;
    }
    return this;
  }

  /** The packed bytes, padded to a multiple of 16. */
  get data(): Uint8Array {
    return new Uint8Array(this.view.buffer, 0, Math.max(16, Math.ceil(this.bytes / 16) * 16));
  }
}
