/**
 * Tapes: a region of recorded GPU work captured once and replayed without running the JavaScript that recorded it
 * (CUDA graphs, tinygrad's TinyJit). While a tape captures, the recorder (src/gpu/device.ts) tells it every launch
 * (resolved pipeline, storage buffers, uniform words, workgroups), copy and write (with its bytes); `replay`
 * re-issues them through the recorder's own paths (uniform staging, submits every DISPATCHES_PER_SUBMIT launches,
 * the flush before a write to a buffer in use, held work, the pool's afterSubmit), so a replayed launch costs about
 * what the raw WebGPU calls cost.
 *
 * The rules that make a replay equal to running the region again:
 * - Only what is proven stable replays: a tape is adopted only when it equals the capture of the previous run of the
 *   same region entry by entry (`differenceFrom`). A uniform word may differ only where it is a value drawn on the
 *   host through `drawForTape` (dropout seeds): a replay draws those anew, in the same order, and patches them in.
 * - Buffers: what the region acquired from the pool belongs to the tape once adopted (`BufferPool.adopt`), so no one
 *   else is handed a buffer the next replay overwrites; reuse inside the region stays as captured. Every other
 *   buffer it binds (parameters, optimiser state, inputs and outputs its owner keeps) must be live; it is pinned,
 *   and releasing one marks the tape stale (`stale`): it must be dropped, never replayed.
 * - Inputs that change on every run are copied into buffers the tape owns by `input` (one copy each, first thing in
 *   the region); a replay takes the new source buffers.
 * - Nothing that a replay could not repeat may happen inside the region: a blocking or late read, a hold boundary
 *   (Gpu.hold/endHold), a profile or a compileAll. Such a capture is refused (`refusal`) and never replays.
 * - A tape is bound to the device it was captured on, and to recordOnly or real recording (`Gpu.recordingOnly`):
 *   its owner keys it by everything host-side that changes the recording and drops it when that key changes.
 * - A replay is recorded like any other work: inside Gpu.hold it is held too, and work recorded after it (a rare
 *   path) runs before it, exactly as for the eager region; the tape's own buffers are out of the pool, so that work
 *   cannot be handed one. `BufferPool.trim` destroys only idle buffers: never a tape's, nor one it pins (live).
 */
import type { BindGroupCache, Gpu, LaunchRecorder, ResolvedKernel } from './device.ts';

type Entry =
  | {
      kind: 'launch';
      kernel: ResolvedKernel;
      words: Uint32Array | null;
      buffers: GPUBuffer[];
      x: number;
      y: number;
      z: number;
      /** Its bind group from the last replay (see BindGroupCache). */
      group: BindGroupCache;
    }
  | { kind: 'copy'; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { kind: 'write'; buffer: GPUBuffer; byteOffset: number; data: Uint8Array }
  | { kind: 'input'; slot: number; dst: GPUBuffer; bytes: number };

/** A value drawn on the host inside the region (`drawForTape`): how to draw it again, and what it was. */
interface Draw {
  draw: () => number;
  value: number;
}

/** Uniform word `word` of launch `entry` is the value of draw `draw`. */
interface Patch {
  entry: number;
  word: number;
  draw: number;
}

/** The tape capturing now, for `drawForTape`. */
let capturing: Tape | null = null;

/**
 * A value drawn on the host for a launch's uniform block (a dropout seed): returns `draw()`. Inside a capture the
 * tape also keeps `draw`, so that its replays draw again, in the same order, and patch the value in where the
 * captured uniform words held it. `draw` must give a u32.
 */
export function drawForTape(draw: () => number): number {
  const value = draw();
  capturing?.draws.push({ draw, value });
  return value;
}

export class Tape implements LaunchRecorder {
  private readonly entries: Entry[] = [];
  /** The values drawn while capturing, in order (`drawForTape`). */
  readonly draws: Draw[] = [];
  private patches: Patch[] = [];
  private refused: string | null = null;
  private acquired = new Set<GPUBuffer>();
  private owned: GPUBuffer[] = [];
  private pinned: GPUBuffer[] = [];
  private staleBecause: string | null = null;
  private phase: 'new' | 'capturing' | 'captured' | 'adopted' | 'released' = 'new';
  /** The next `copy` the recorder reports is an input copy that `input` records itself. */
  private skipCopy = false;
  readonly recordOnly: boolean;
  private readonly onPinnedRelease = (): void => {
    this.staleBecause ??= 'a buffer it binds and does not own was released (its owner replaced or freed it)';
  };

  constructor(private readonly g: Gpu) {
    this.recordOnly = g.recordingOnly;
  }

  /** Runs `fn` with everything it records captured on this tape (once per tape). */
  capture<T>(fn: () => T): T {
    if (this.phase !== 'new') throw new Error('Tape.capture: a tape captures once');
    if (capturing) throw new Error('Tape.capture: captures cannot nest');
    this.phase = 'capturing';
    this.g.beginCapture(this);
    this.g.pool.beginCapture();
    capturing = this;
    try {
      return fn();
    } finally {
      capturing = null;
      this.acquired = this.g.pool.endCapture();
      this.g.endCapture();
      this.phase = 'captured';
    }
  }

  /** Inside `capture`: copies `bytes` bytes of `src` (a new buffer on every replay: input `slot`) into `dst`. */
  input(slot: number, src: GPUBuffer, dst: GPUBuffer, bytes: number): void {
    if (this.phase !== 'capturing') throw new Error('Tape.input: only inside capture()');
    this.skipCopy = true;
    try {
      this.g.copy(src, 0, dst, 0, bytes);
    } finally {
      this.skipCopy = false;
    }
    this.entries.push({ kind: 'input', slot, dst, bytes });
  }

  /** Why this tape may never replay (a read, a hold boundary, ... inside the region), or null. */
  get refusal(): string | null {
    return this.refused;
  }

  /** Why an adopted tape must be dropped (a buffer it binds was released), or null. */
  get stale(): string | null {
    return this.staleBecause;
  }

  /** Launches, copies, writes and input copies on the tape. */
  get length(): number {
    return this.entries.length;
  }

  /** Launches on the tape. */
  get launches(): number {
    let n = 0;
    for (const e of this.entries) if (e.kind === 'launch') n++;
    return n;
  }

  /**
   * The launches on the tape, in order: pipeline, storage buffers, whether it has a uniform block, workgroups (for
   * bench/host-overhead.ts, which issues the same launches as raw WebGPU calls: the floor a replay is measured against).
   */
  launchList(): Array<{
    pipeline: GPUComputePipeline;
    buffers: readonly GPUBuffer[];
    uniforms: boolean;
    workgroups: [number, number, number];
  }> {
    const out = [];
    for (const e of this.entries) {
      if (e.kind !== 'launch') continue;
      out.push({
        pipeline: e.kernel.pipeline,
        buffers: e.buffers,
        uniforms: e.words !== null,
        workgroups: [e.x, e.y, e.z] as [number, number, number],
      });
    }
    return out;
  }

  /** The buffers this adopted tape owns (taken out of the pool). */
  get ownedBuffers(): readonly GPUBuffer[] {
    return this.owned;
  }

  /**
   * Null when this capture equals `previous` (a capture of the same region one run earlier) entry by entry, up to
   * uniform words that are host draws in both; otherwise the first difference, in words. Remembers the draws' places.
   */
  differenceFrom(previous: Tape): string | null {
    if (this.refused) return this.refused;
    if (previous.refused) return previous.refused;
    if (this.recordOnly !== previous.recordOnly) return 'one capture was recordOnly and the other real';
    if (this.entries.length !== previous.entries.length)
      return `${this.entries.length} recorded operations against ${previous.entries.length} the run before`;
    if (this.draws.length !== previous.draws.length)
      return `${this.draws.length} host draws against ${previous.draws.length} the run before`;
    const patches: Patch[] = [];
    for (let i = 0; i < this.entries.length; i++) {
      const a = this.entries[i];
      const b = previous.entries[i];
      const where = `operation ${i}`;
      if (a.kind !== b.kind) return `${where} is a ${a.kind}, the run before a ${b.kind}`;
      if (a.kind === 'launch' && b.kind === 'launch') {
        const what = `${where} (${a.kernel.label})`;
        if (a.kernel !== b.kernel) return `${what} launches another kernel than ${b.kernel.label} the run before`;
        if (a.x !== b.x || a.y !== b.y || a.z !== b.z) return `${what} has other workgroup counts`;
        if (!sameList(a.buffers, b.buffers)) return `${what} binds other buffers`;
        if ((a.words === null) !== (b.words === null) || a.words?.length !== b.words?.length)
          return `${what} has another uniform block`;
        if (!a.words || !b.words) continue;
        for (let w = 0; w < a.words.length; w++) {
          if (a.words[w] === b.words[w]) continue;
          const d = this.draws.findIndex(
            (draw, k) => draw.value === a.words![w] && previous.draws[k].value === b.words![w],
          );
          if (d < 0) return `${what}: uniform word ${w} changes from run to run (${b.words[w]} -> ${a.words[w]})`;
          patches.push({ entry: i, word: w, draw: d });
        }
      } else if (a.kind === 'copy' && b.kind === 'copy') {
        if (a.src !== b.src || a.dst !== b.dst || a.srcOffset !== b.srcOffset || a.dstOffset !== b.dstOffset)
          return `${where} copies between other buffers`;
        if (a.bytes !== b.bytes) return `${where} copies another size`;
      } else if (a.kind === 'write' && b.kind === 'write') {
        if (a.buffer !== b.buffer || a.byteOffset !== b.byteOffset) return `${where} writes another buffer`;
        if (!sameBytes(a.data, b.data)) return `${where} writes other bytes`;
      } else if (a.kind === 'input' && b.kind === 'input') {
        if (a.slot !== b.slot || a.dst !== b.dst || a.bytes !== b.bytes)
          return `${where} copies input ${a.slot} elsewhere`;
      }
    }
    this.patches = patches;
    return null;
  }

  /**
   * Makes this captured tape replayable: the buffers the region acquired and released become the tape's (out of the
   * pool); every other buffer it binds must be live, and is pinned (its release makes the tape stale). Returns the
   * refusal (a bound buffer idle in the pool), or null.
   */
  adopt(): string | null {
    if (this.phase !== 'captured') throw new Error('Tape.adopt: capture first, once');
    if (this.refused) return this.refused;
    const pool = this.g.pool;
    const referenced = new Set<GPUBuffer>();
    for (const e of this.entries) {
      if (e.kind === 'launch') for (const b of e.buffers) referenced.add(b);
      else if (e.kind === 'copy') referenced.add(e.src).add(e.dst);
      else if (e.kind === 'write') referenced.add(e.buffer);
      else referenced.add(e.dst);
    }
    this.owned = pool.adopt(this.acquired);
    const owned = new Set(this.owned);
    const external = [...referenced].filter((b) => !owned.has(b));
    const idle = external.find((b) => pool.isIdle(b));
    if (idle) {
      for (const b of this.owned) pool.release(b);
      this.owned = [];
      return (this.refused = 'it binds a buffer that was released before the region ended and was not acquired in it');
    }
    this.pinned = external;
    pool.pin(external, this.onPinnedRelease);
    this.phase = 'adopted';
    return null;
  }

  /**
   * Records the region again: input `i` is copied from `sources[i]` (as `input` did), the host draws are drawn
   * anew and patched in, and every launch, copy and write is re-issued in order through the recorder.
   */
  replay(sources: readonly GPUBuffer[]): void {
    if (this.phase !== 'adopted') throw new Error('Tape.replay: the tape is not adopted (or was released)');
    if (this.staleBecause) throw new Error(`Tape.replay: the tape is stale: ${this.staleBecause}`);
    if (this.g.recordingOnly !== this.recordOnly)
      throw new Error('Tape.replay: captured under recordOnly and replayed for real, or the reverse');
    const g = this.g;
    if (this.patches.length > 0) {
      const values = this.draws.map((d) => d.draw());
      for (const p of this.patches) (this.entries[p.entry] as { words: Uint32Array }).words[p.word] = values[p.draw];
    } else {
      for (const d of this.draws) d.draw();
    }
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      switch (e.kind) {
        case 'launch': {
          let words = -1;
          if (e.words) {
            g.uniformU32.set(e.words, g.reserveUniforms());
            words = e.words.length;
          }
          g.dispatchResolved(e.kernel, words, e.buffers, e.buffers.length, e.x, e.y, e.z, e.group);
          break;
        }
        case 'copy':
          g.copy(e.src, e.srcOffset, e.dst, e.dstOffset, e.bytes);
          break;
        case 'write':
          g.write(e.buffer, e.data, e.byteOffset);
          break;
        case 'input':
          g.copy(sources[e.slot], 0, e.dst, 0, e.bytes);
          break;
      }
    }
  }

  /** Gives the owned buffers back to the pool and unpins the others; the tape never replays again. */
  release(): void {
    if (this.phase === 'released') return;
    const pool = this.g.pool;
    pool.unpin(this.pinned, this.onPinnedRelease);
    this.pinned = [];
    for (const b of this.owned) pool.release(b);
    this.owned = [];
    this.phase = 'released';
  }

  // LaunchRecorder: what the recorder reports while this tape captures.

  launch(
    kernel: ResolvedKernel,
    words: Uint32Array | null,
    buffers: readonly GPUBuffer[],
    count: number,
    x: number,
    y: number,
    z: number,
  ): void {
    const group = { uniforms: null, node: null };
    this.entries.push({ kind: 'launch', kernel, words, buffers: buffers.slice(0, count), x, y, z, group });
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (!this.skipCopy) this.entries.push({ kind: 'copy', src, srcOffset, dst, dstOffset, bytes });
  }

  write(buffer: GPUBuffer, data: Uint8Array, byteOffset: number): void {
    this.entries.push({ kind: 'write', buffer, byteOffset, data: data.slice() });
  }

  refuse(reason: string): void {
    this.refused ??= reason;
  }
}

function sameList<T>(a: readonly T[], b: readonly T[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
