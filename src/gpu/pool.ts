/**
 * Buffer pool with size classes and deferred release.
 *
 * A released buffer may still be referenced by commands recorded into the not-yet-submitted encoder,
 * and `queue.writeBuffer` runs ahead of those commands, so recycling it early would corrupt data.
 * Released buffers therefore wait in `pending` until the next submit, and only then become reusable.
 */

import { GpuOutOfMemoryError, mib } from './errors.ts';

const STORAGE_USAGE = 0x80 /* STORAGE */ | 0x4 /* COPY_SRC */ | 0x8; /* COPY_DST */
const MAX_FREE_PER_CLASS = 64;

/** Rounds a byte size up to its size class: powers of two up to 4 KiB, then steps of 1/8 of a power. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  /** Per size class, sorted by creation order, newest first: `acquire` takes the oldest (see `afterSubmit`). */
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly serials = new WeakMap<GPUBuffer, number>();
  /** Each created buffer's size: `GPUBuffer.size` is a native getter, slow beside a map lookup on this path. */
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  private created = 0;
  private pending: GPUBuffer[] = [];
  /** While work is held back (Gpu.hold): the buffers acquired since, and those from before released since. */
  private hold: { acquired: Set<GPUBuffer>; released: GPUBuffer[] } | null = null;
  /** While a tape captures (src/gpu/tape.ts): every buffer acquired since `beginCapture`. */
  private captured: Set<GPUBuffer> | null = null;
  /** Buffers a tape references but does not own: releasing one calls its callback (the tape is then stale). */
  private readonly pinned = new Map<GPUBuffer, Set<() => void>>();
  private live = 0;
  private liveBytes = 0;
  private peakBytes = 0;

  /**
   * `onAllocationError` hears of a buffer the device could not create (out of memory, or too large): WebGPU
   * reports that later, through error scopes, while the buffer handed out is already unusable.
   */
  constructor(
    private readonly device: GPUDevice,
    private readonly onAllocationError: (error: Error) => void,
    /** Counts every buffer this pool creates (the device's stats). */
    private readonly counts: { buffersCreated: number },
  ) {}

  /** A storage buffer of at least `bytes` bytes; contents are undefined. */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    const buffer = list?.pop() ?? this.create(size);
    this.hold?.acquired.add(buffer);
    this.captured?.add(buffer);
    this.live++;
    this.liveBytes += size;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    return buffer;
  }

  /**
   * A new buffer, with out-of-memory and validation errors caught in scopes and reported with its size. The
   * usage is always the same valid one, so a validation error here is a size the adapter does not allow:
   * both are out-of-memory errors to the user.
   */
  private create(size: number): GPUBuffer {
    const inUse = `with ${this.live} buffers, ${mib(this.liveBytes)}, in use`;
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage: STORAGE_USAGE });
    this.counts.buffersCreated++;
    this.serials.set(buffer, ++this.created);
    this.sizes.set(buffer, size);
    const report = (error: GPUError | null) => {
      if (error)
        this.onAllocationError(
          new GpuOutOfMemoryError(`allocating a ${mib(size)} buffer (${inUse}) failed: ${error.message.trim()}`),
        );
    };
    // A lost device rejects or empties the scopes; its loss is reported on its own.
    this.device.popErrorScope().then(report, () => {});
    this.device.popErrorScope().then(report, () => {});
    return buffer;
  }

  /** Returns a buffer; it becomes reusable after the next submit. */
  release(buffer: GPUBuffer): void {
    if (this.pinned.size !== 0) this.pinned.get(buffer)?.forEach((onRelease) => onRelease());
    this.live--;
    this.liveBytes -= this.sizeOf(buffer);
    if (this.hold && !this.hold.acquired.has(buffer)) this.hold.released.push(buffer);
    else this.pending.push(buffer);
  }

  /**
   * Work recorded from now on is held back (Gpu.hold) and will run after work recorded later. A buffer acquired
   * before and released meanwhile may still hold data the held work reads, so it must not be handed to that
   * later work: it waits in its own list until `endHold`'s list is given back with `returnHeld`. Buffers
   * acquired while holding recycle as usual (whoever gets them writes them before reading).
   */
  beginHold(): void {
    this.hold = { acquired: new Set(), released: [] };
  }

  /** Ends the hold; returns the buffers that must wait for the held work's submit. */
  endHold(): GPUBuffer[] {
    const released = this.hold?.released ?? [];
    this.hold = null;
    return released;
  }

  /** The held work using these buffers is submitted (or dropped): they become reusable after the next submit. */
  returnHeld(buffers: readonly GPUBuffer[]): void {
    this.pending.push(...buffers);
  }

  /** Starts collecting the buffers acquired from now on (a tape's capture). */
  beginCapture(): void {
    if (this.captured) throw new Error('BufferPool: captures cannot nest');
    this.captured = new Set();
  }

  /** Ends the capture: the buffers acquired since `beginCapture`, in the order first acquired. */
  endCapture(): Set<GPUBuffer> {
    const captured = this.captured ?? new Set<GPUBuffer>();
    this.captured = null;
    return captured;
  }

  /**
   * Takes the idle ones of `buffers` (released, waiting for a submit or free) out of the pool for good: they count as
   * live and are never handed out again until given back with `release`. Returns those taken; the others are
   * live elsewhere (a tape adopts what its capture acquired and released, src/gpu/tape.ts).
   */
  adopt(buffers: Iterable<GPUBuffer>): GPUBuffer[] {
    const wanted = new Set(buffers);
    const taken: GPUBuffer[] = [];
    const keepUnwanted = (list: GPUBuffer[]): GPUBuffer[] => {
      const kept: GPUBuffer[] = [];
      for (const b of list) {
        if (wanted.has(b)) taken.push(b);
        else kept.push(b);
      }
      return kept;
    };
    this.pending = keepUnwanted(this.pending);
    if (this.hold) this.hold.released = keepUnwanted(this.hold.released);
    for (const [size, list] of this.free) this.free.set(size, keepUnwanted(list));
    for (const b of taken) {
      this.live++;
      this.liveBytes += this.sizeOf(b);
    }
    return taken;
  }

  /**
   * Calls `onRelease` if one of `buffers` is released (until `unpin`): a tape that binds buffers it does not own
   * (parameters, optimiser state) learns that one was replaced and must not replay.
   */
  pin(buffers: Iterable<GPUBuffer>, onRelease: () => void): void {
    for (const b of buffers) {
      const callbacks = this.pinned.get(b);
      if (callbacks) callbacks.add(onRelease);
      else this.pinned.set(b, new Set([onRelease]));
    }
  }

  /** Ends what `pin(buffers, onRelease)` started. */
  unpin(buffers: Iterable<GPUBuffer>, onRelease: () => void): void {
    for (const b of buffers) {
      const callbacks = this.pinned.get(b);
      callbacks?.delete(onRelease);
      if (callbacks?.size === 0) this.pinned.delete(b);
    }
  }

  /** Whether `buffer` is idle in the pool (released, not handed out): a tape may not bind such a buffer. */
  isIdle(buffer: GPUBuffer): boolean {
    if (this.pending.includes(buffer) || this.hold?.released.includes(buffer)) return true;
    return this.free.get(this.sizeOf(buffer))?.includes(buffer) ?? false;
  }

  /**
   * Called by the recorder right after a submit: pending buffers are now safe to reuse. Each free list stays
   * in creation order, so which buffer an `acquire` gets depends only on which buffers are free, not on the
   * order they were released in: a training step then binds the same buffers every iteration, and the
   * recorder's bind groups are reused instead of made anew (a LIFO list permuted them from step to step).
   */
  afterSubmit(): void {
    const pending = this.pending;
    for (let i = 0; i < pending.length; i++) {
      const buffer = pending[i];
      const size = this.sizeOf(buffer);
      const list = this.free.get(size) ?? [];
      if (list.length < MAX_FREE_PER_CLASS) {
        // insertion by shifting the older ones up (splice made an array of the removed items per call)
        const serial = this.serials.get(buffer) ?? 0;
        let at = list.length;
        list.push(buffer);
        while (at > 0 && (this.serials.get(list[at - 1]) ?? 0) < serial) {
          list[at] = list[at - 1];
          at--;
        }
        list[at] = buffer;
        this.free.set(size, list);
      } else {
        buffer.destroy();
      }
    }
    pending.length = 0;
  }

  private sizeOf(buffer: GPUBuffer): number {
    return this.sizes.get(buffer) ?? buffer.size;
  }

  /** Buffers handed out and not yet released (tests check this for leaks). */
  get liveCount(): number {
    return this.live;
  }

  get liveByteCount(): number {
    return this.liveBytes;
  }

  /** The most bytes live at once since the last `resetPeak()` (what a step's activations cost, bench/precision.ts). */
  get peakLiveBytes(): number {
    return this.peakBytes;
  }

  /** Starts a new high-water mark at the bytes live now. */
  resetPeak(): void {
    this.peakBytes = this.liveBytes;
  }

  /** Released buffers kept for reuse (free lists and those waiting for the next submit), and their bytes. */
  get cached(): { count: number; bytes: number } {
    const waiting = [...this.pending, ...(this.hold?.released ?? [])];
    let count = waiting.length;
    let bytes = waiting.reduce((total, b) => total + b.size, 0);
    for (const [size, list] of this.free) {
      count += list.length;
      bytes += size * list.length;
    }
    return { count, bytes };
  }

  /** Destroys every cached buffer (not the live ones). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}
