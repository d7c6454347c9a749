/**
 * The GPU device and everything a kernel launch needs: adapter limits and features, the buffer pool,
 * the pipeline cache, and a recorder that batches dispatches into one shared encoder and compute pass,
 * submitting in chunks. Nothing here reads from the GPU unless a caller asks (`read`).
 */
import { findGpu, withNativeStderrSilenced, type WebGpuImplementation } from './runtime.ts';
import { BufferPool, sizeClass } from './pool.ts';
import { GpuDeviceLostError, GpuOutOfMemoryError, isOutOfMemory, mib } from './errors.ts';
import { PipelineCache, kernelKey, type Access, type KernelSource, type LayoutSpec } from './pipelines.ts';
import type { Params } from './params.ts';

export { GpuDeviceLostError, GpuOutOfMemoryError } from './errors.ts';

export interface Binding {
  buffer: GPUBuffer;
  access: Access;
}

export interface DispatchArgs {
  kernel: KernelSource;
  /** Storage buffers at @binding(1), @binding(2), ... in this order. */
  bindings: readonly Binding[];
  /** The uniform block at @binding(0), if the kernel declares one. */
  params?: Params;
  /** Workgroup counts; x may exceed the per-dimension limit only through `grid`. */
  workgroups: readonly [number, number?, number?];
}

/**
 * A kernel launch resolved ahead of its dispatches (src/gpu/kernel.ts keeps one per declaration and template
 * values): its pipeline, whether @binding(0) is a uniform block, and its name for errors and profiles.
 */
export interface ResolvedKernel {
  readonly pipeline: GPUComputePipeline;
  readonly uniforms: boolean;
  readonly label: string;
}

/** One subgroup-matrix shape the adapter runs (Dawn's GPUSubgroupMatrixConfig): left M×K, right K×N, result M×N. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface GpuFeatures {
  f16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  /** `subgroup-size-control`: a pipeline may pin its subgroup size (`@subgroup_size(n)`). */
  subgroupSizeControl: boolean;
  /** `chromium-experimental-subgroup-matrix` (tensor cores): the configs the adapter lists; empty without the feature. */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
}

export interface GpuStats {
  dispatches: number;
  submits: number;
  /** Blocking reads (`read`): each submits everything recorded and waits for the GPU to finish it. */
  reads: number;
  /** Late reads (`readLater`): the host records on while the GPU gets there. */
  lateReads: number;
  /** Bind groups created (a dispatch with a (pipeline, buffers) combination seen before reuses its group). */
  bindGroups: number;
  /** GPU buffers created: storage (the pool), uniform and read staging buffers. */
  buffersCreated: number;
  /** Bytes of uniform blocks written to the GPU. */
  uniformBytes: number;
}

/** GPU time of one kernel (shaders/<family>.wgsl entry point) summed over the calls `profile` saw. */
export interface KernelTime {
  kernel: string;
  calls: number;
  ms: number;
}

/** Timestamp pairs per query set (WebGPU allows 4096 queries per set). */
const PROFILE_PAIRS_PER_SET = 2048;

const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment on every adapter we know
const UNIFORM_SLOT_WORDS = UNIFORM_SLOT / 4;
const UNIFORM_SLOTS_PER_SUBMIT = 256;
/** Dispatches per submit: small enough that the GPU starts early, large enough to amortise the submit. */
const DISPATCHES_PER_SUBMIT = 64;

const NO_ADAPTER_HELP =
  'No WebGPU adapter was found. On a machine with a GPU, install its Vulkan driver (NVIDIA, AMD or Intel). ' +
  'On a CPU-only Debian 12 machine install Mesa lavapipe 25.x from bookworm-backports: ' +
  "`bash .ci/setup-system.sh` (as root) does it; Debian 12's own mesa-vulkan-drivers 22.x does not work with Dawn.";

/** Work recorded between `Gpu.hold` and `Gpu.endHold`: its queue operations, in order, not yet run. */
export class HeldWork {
  private ops: Array<() => void> | null;

  constructor(
    private readonly gpu: Gpu,
    ops: Array<() => void>,
    /** Buffers released while holding that the held work may still read (BufferPool.beginHold). */
    private readonly buffers: GPUBuffer[],
  ) {
    this.ops = ops;
  }

  /**
   * Submits what is recorded now (it was recorded later but must run first), then sends the held writes,
   * submits and read maps to the queue in the order they were recorded. Once.
   */
  submit(): void {
    const ops = this.take();
    this.gpu.flush();
    for (const op of ops) op();
    this.gpu.pool.returnHeld(this.buffers);
  }

  /** Drops the held work (after a failure): none of it runs; its buffers go back to the pool. */
  discard(): void {
    this.take();
    this.gpu.pool.returnHeld(this.buffers);
  }

  private take(): Array<() => void> {
    if (!this.ops) throw new Error('HeldWork was submitted or discarded already');
    const ops = this.ops;
    this.ops = null;
    return ops;
  }
}

/**
 * What a capturing tape (src/gpu/tape.ts) hears from the recorder: every launch, copy and write as it is recorded,
 * and `refuse` for anything a replay could not repeat (a read, a hold boundary, a profile).
 */
export interface LaunchRecorder {
  launch(
    kernel: ResolvedKernel,
    words: Uint32Array | null,
    buffers: readonly GPUBuffer[],
    count: number,
    x: number,
    y: number,
    z: number,
  ): void;
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void;
  write(buffer: GPUBuffer, data: Uint8Array, byteOffset: number): void;
  refuse(reason: string): void;
}

/**
 * A launch's bind group remembered by its caller (a tape's entry, src/gpu/tape.ts), so a launch repeated with the
 * same uniform buffer skips the cache's lookup: `dispatchResolved` fills it and reuses it while `uniforms` matches.
 */
export interface BindGroupCache {
  uniforms: GPUBuffer | null;
  /** The cache's node for (pipeline, uniforms, buffers); opaque to the caller. */
  node: object | null;
}

/** Bind groups kept for reuse before the cache starts afresh (a resnet18 step uses a few hundred). */
const MAX_CACHED_BIND_GROUPS = 16384;

/** One level of the bind-group cache: the buffer bound next leads to a child; the last level holds the group. */
class BindGroupNode {
  group: GPUBindGroup | null = null;
  /** At the last level: the storage buffers the group binds, and the serial of the last encoder that used it. */
  buffers: readonly GPUBuffer[] = [];
  encoderSerial = 0;
  private children: Map<GPUBuffer, BindGroupNode> | null = null;

  child(buffer: GPUBuffer): BindGroupNode {
    this.children ??= new Map();
    let node = this.children.get(buffer);
    if (!node) this.children.set(buffer, (node = new BindGroupNode()));
    return node;
  }
}

/** Staging buffers kept for reuse by `read`: per size class, and only small ones (reads of a few values are the frequent ones). */
const MAX_STAGING_PER_CLASS = 4;
const MAX_CACHED_STAGING_BYTES = 1 << 20;

/** How long a failed GPU wait gives `device.lost` to settle before the failure is reported as it is. */
const LOSS_SETTLE_MS = 2000;

/** Limits read into the snapshot even where the runtime's limits object does not enumerate its fields. */
const LIMIT_NAMES = [
  'maxTextureDimension1D',
  'maxTextureDimension2D',
  'maxTextureDimension3D',
  'maxTextureArrayLayers',
  'maxBindGroups',
  'maxBindGroupsPlusVertexBuffers',
  'maxBindingsPerBindGroup',
  'maxDynamicUniformBuffersPerPipelineLayout',
  'maxDynamicStorageBuffersPerPipelineLayout',
  'maxSampledTexturesPerShaderStage',
  'maxSamplersPerShaderStage',
  'maxStorageBuffersPerShaderStage',
  'maxStorageTexturesPerShaderStage',
  'maxUniformBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxStorageBufferBindingSize',
  'minUniformBufferOffsetAlignment',
  'minStorageBufferOffsetAlignment',
  'maxVertexBuffers',
  'maxBufferSize',
  'maxVertexAttributes',
  'maxVertexBufferArrayStride',
  'maxInterStageShaderVariables',
  'maxColorAttachments',
  'maxColorAttachmentBytesPerSample',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
] as const satisfies ReadonlyArray<keyof GPUSupportedLimits>;

/** The WebGPU defaults of the limits the kernels may need more of (the WebGPU spec's "default" column). */
const DEFAULT_LIMITS = {
  maxStorageBufferBindingSize: 134217728,
  maxBufferSize: 268435456,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupSizeY: 256,
  maxComputeWorkgroupsPerDimension: 65535,
} as const;

export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly stats: GpuStats = {
    dispatches: 0,
    submits: 0,
    reads: 0,
    lateReads: 0,
    bindGroups: 0,
    buffersCreated: 0,
    uniformBytes: 0,
  };

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatchesInEncoder = 0;
  /**
   * What the open encoder uses, for `write` (which must submit first when it does): the bind groups it binds (each
   * once, by the serial they keep) and the buffers it copies. A dispatch then marks one group, not each buffer (a
   * Set of buffers cleared per submit grew its table anew every time); the rare `write` scans the list.
   */
  private readonly encoderGroups: BindGroupNode[] = [];
  private readonly encoderCopies: GPUBuffer[] = [];
  private encoderSerial = 1;
  /** While set (between `hold` and `endHold`), the queue operations of what is recorded, in order. */
  private held: Array<() => void> | null = null;
  private readonly uniformStaging = new Uint8Array(UNIFORM_SLOT * UNIFORM_SLOTS_PER_SUBMIT);
  /** The uniform staging of this submit as words: `reserveUniforms` hands out a block's place in them. */
  readonly uniformU32 = new Uint32Array(this.uniformStaging.buffer);
  readonly uniformI32 = new Int32Array(this.uniformStaging.buffer);
  readonly uniformF32 = new Float32Array(this.uniformStaging.buffer);
  /**
   * The uniform block's offset for setBindGroup, one array reused by every dispatch: Dawn takes a plain array
   * faster than the (Uint32Array, start, length) form (1.1 against 1.3 µs per call, best of 40 rounds).
   */
  private readonly dynamicOffsets = [0];
  private readonly pipelineByKey = new Map<string, ResolvedKernel>();
  /** The pipeline last set on the open compute pass (setPipeline is skipped when the next launch uses it too). */
  private passPipeline: GPUComputePipeline | null = null;
  private bindGroups = new Map<GPUComputePipeline, BindGroupNode>();
  private cachedBindGroups = 0;
  private readonly maxWorkgroupsPerDimension: number;
  private cachedLimits: GPUSupportedLimits | null = null;
  private cachedBindingBytes: number | null = null;
  private uniformBuffer: GPUBuffer | null = null;
  private uniformSlots = 0;
  private freeUniformBuffers: GPUBuffer[] = [];
  private usedUniformBuffers: GPUBuffer[] = [];
  /** While set (inside `compileAll`), dispatches only collect their kernels for parallel compilation. */
  private collecting: Array<{ source: KernelSource; layout: LayoutSpec }> | null = null;
  /** While set (inside `recordOnly`), command buffers are finished but never submitted, and reads are answered by it. */
  private answerRead: ((bytes: number) => ArrayBuffer) | null = null;
  /** While set (a tape's capture), hears every launch, copy and write recorded. */
  private capture: LaunchRecorder | null = null;
  /** While set (inside `profile`), each dispatch gets its own compute pass with timestamp writes. */
  private profiling: { sets: GPUQuerySet[]; kernels: string[] } | null = null;
  private firstError: string | null = null;
  private readonly compileErrors: string[] = [];
  private lostReason: string | null = null;
  /** Rejects with a GpuDeviceLostError once the device is lost, so no GPU wait outlives the device. */
  private readonly whenLost: Promise<never>;
  /** Unmapped MAP_READ buffers by size, for reuse by `read`. */
  private readonly freeStaging = new Map<number, GPUBuffer[]>();
  /** The first allocation that failed (an out-of-memory or validation error scope around createBuffer). */
  private allocationFailure: Error | null = null;

  private constructor(
    readonly device: GPUDevice,
    readonly adapterName: string,
    readonly implementation: WebGpuImplementation,
    readonly runtime: string,
    readonly features: GpuFeatures,
    /** Subgroup sizes the adapter may use (0 when it does not say): subgroup kernels need a fixed one. */
    readonly subgroupSizes: { min: number; max: number } = { min: 0, max: 0 },
  ) {
    this.pool = new BufferPool(
      device,
      (error) => {
        this.allocationFailure ??= error;
      },
      this.stats,
    );
    this.pipelines = new PipelineCache(device, (message) => {
      this.compileErrors.push(message);
    });
    device.addEventListener('uncapturederror', (event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      if (isOutOfMemory(error))
        this.allocationFailure ??= new GpuOutOfMemoryError(
          error.message || 'the device reported an out-of-memory error',
        );
      else this.firstError ??= error.message;
    });
    this.whenLost = device.lost.then((info) => {
      this.lostReason = [info.reason, info.message].filter((s) => s).join(': ') || 'no reason given';
      throw new GpuDeviceLostError(this.lostReason);
    });
    this.whenLost.catch(() => {}); // observed through races and checkHealthy, never unhandled
    this.maxWorkgroupsPerDimension = device.limits.maxComputeWorkgroupsPerDimension;
  }

  /**
   * Opens the adapter with the optional features it offers, raising only the limits the kernels may use
   * beyond the WebGPU defaults. Dawn's adapter-discovery notes on native stderr are kept out of the way
   * (see withNativeStderrSilenced; ODC_DEBUG=1 shows them).
   */
  static async create(): Promise<Gpu> {
    const entry = await findGpu();
    const requestAdapter = () => entry.gpu.requestAdapter({ powerPreference: 'high-performance' });
    const adapter = await (entry.implementation === 'dawn'
      ? withNativeStderrSilenced(requestAdapter)
      : requestAdapter());
    if (!adapter) throw new Error(NO_ADAPTER_HELP);
    // Subgroup matrices (tensor cores) are requested with what they need: subgroups and a pinned subgroup size.
    const wanted = [
      'shader-f16',
      'subgroups',
      'timestamp-query',
      'subgroup-size-control',
      'chromium-experimental-subgroup-matrix',
    ] as GPUFeatureName[];
    const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
    const requiredLimits: Record<string, number> = {};
    for (const [name, fallback] of Object.entries(DEFAULT_LIMITS)) {
      const offered = adapter.limits[name as keyof typeof DEFAULT_LIMITS];
      if (offered > fallback) requiredLimits[name] = offered;
    }
    const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
    const info = adapter.info;
    const name =
      [info?.vendor, info?.architecture, info?.device, info?.description].filter((s) => s).join(' ') ||
      'unknown adapter';
    const has = (f: string): boolean => (requiredFeatures as string[]).includes(f);
    const extra = (info ?? {}) as { subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[] };
    return new Gpu(
      device,
      name,
      entry.implementation,
      entry.runtime,
      {
        f16: has('shader-f16'),
        subgroups: has('subgroups'),
        timestampQuery: has('timestamp-query'),
        subgroupSizeControl: has('subgroup-size-control'),
        subgroupMatrixConfigs: has('chromium-experimental-subgroup-matrix')
          ? (extra.subgroupMatrixConfigs ?? []).map((c) => ({
              componentType: c.componentType,
              resultComponentType: c.resultComponentType,
              M: c.M,
              N: c.N,
              K: c.K,
            }))
          : [],
      },
      subgroupSizesOf(info),
    );
  }

  /**
   * The device's limits as a plain object, read once: Dawn builds a new object on every `device.limits` and
   * each of its fields is a native getter (~0.2 µs), asked by matmul, grid and every tensor allocation.
   */
  get limits(): GPUSupportedLimits {
    if (!this.cachedLimits) {
      const native = this.device.limits;
      const plain: Record<string, number> = {};
      for (const name in native) plain[name] = native[name as keyof GPUSupportedLimits] as number;
      for (const name of LIMIT_NAMES) plain[name] ??= native[name] as number;
      this.cachedLimits = plain as unknown as GPUSupportedLimits;
    }
    return this.cachedLimits;
  }

  /** True on CPU adapters (lavapipe/llvmpipe/SwiftShader), where kernel variants differ. */
  get isCpuAdapter(): boolean {
    return /llvmpipe|lavapipe|swiftshader|cpu/i.test(this.adapterName);
  }

  /** True once the device is lost; every later GPU call throws a GpuDeviceLostError. */
  get isLost(): boolean {
    return this.lostReason !== null;
  }

  private checkHealthy(): void {
    if (this.lostReason) throw new GpuDeviceLostError(this.lostReason);
    if (this.allocationFailure) throw this.allocationFailure;
    if (this.compileErrors.length > 0 || this.firstError) {
      // A WGSL compile error explains the "invalid pipeline" errors that follow it: report it first.
      const message = this.compileErrors.length > 0 ? this.compileErrors.join('\n') : this.firstError;
      this.compileErrors.length = 0;
      this.firstError = null;
      throw new Error(`WebGPU error: ${message}`);
    }
  }

  /** The most bytes one storage buffer may hold here (maxStorageBufferBindingSize, or maxBufferSize if lower). */
  get maxBindingBytes(): number {
    return (this.cachedBindingBytes ??= Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize));
  }

  /**
   * Throws a GpuOutOfMemoryError naming `what` if a buffer of this many bytes is over what this adapter
   * allows in one storage buffer (maxStorageBufferBindingSize, maxBufferSize).
   */
  checkBindingSize(bytes: number, what: string): void {
    if (bytes <= this.maxBindingBytes) return;
    const { maxStorageBufferBindingSize, maxBufferSize } = this.limits;
    const name = maxBufferSize < maxStorageBufferBindingSize ? 'maxBufferSize' : 'maxStorageBufferBindingSize';
    throw new GpuOutOfMemoryError(
      `${what} needs ${mib(bytes)} in one buffer, over the ${mib(this.maxBindingBytes)} this adapter allows (${name})`,
    );
  }

  /**
   * Waits for `promise` unless the device is lost first (then throws a GpuDeviceLostError): a lost device
   * may never settle a pending map or onSubmittedWorkDone. A wait that fails gives the loss a moment to
   * be reported, so the error names the loss rather than its symptom (an aborted map).
   */
  private async unlessLost<T>(promise: Promise<T>): Promise<T> {
    try {
      return await Promise.race([promise, this.whenLost]);
    } catch (err) {
      if (!(err instanceof GpuDeviceLostError)) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          this.whenLost,
          new Promise((resolve) => (timer = setTimeout(resolve, LOSS_SETTLE_MS))),
        ]).catch(() => {});
        clearTimeout(timer);
        this.checkHealthy();
      }
      throw err;
    }
  }

  private createCounted(descriptor: GPUBufferDescriptor): GPUBuffer {
    this.stats.buffersCreated++;
    return this.device.createBuffer(descriptor);
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) {
      this.pass = this.encoder.beginComputePass();
      this.passPipeline = null;
    }
    return this.pass;
  }

  private endPass(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
      this.passPipeline = null;
    }
    return this.encoder;
  }

  /**
   * The word index in `uniformU32` / `uniformI32` / `uniformF32` where the next launch's uniform block goes
   * (submitting first if this submit's staging is full). Write the block's fields from there, then pass their
   * count to `dispatchResolved` right away: nothing else may be recorded in between.
   */
  reserveUniforms(): number {
    if (this.uniformSlots === UNIFORM_SLOTS_PER_SUBMIT) this.flush();
    if (!this.uniformBuffer) {
      this.uniformBuffer =
        this.freeUniformBuffers.pop() ??
        this.createCounted({
          size: this.uniformStaging.byteLength,
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        });
    }
    return this.uniformSlots * UNIFORM_SLOT_WORDS;
  }

  /**
   * A kernel's pipeline and layout resolved for `dispatchResolved`, under the pipeline cache's own key (one key
   * builder, so nothing it tells apart, the precision included, can be missed here); a miss falls through to the
   * canonical cache, compiling the kernel if warm-up did not. Declared launches reach it only once per
   * declaration, precision and template values (src/gpu/kernel.ts keeps what it returns).
   */
  resolve(kernel: KernelSource, uniforms: boolean, access: readonly Access[]): ResolvedKernel {
    const layout = { uniforms, access };
    const key = kernelKey(kernel, layout);
    let resolved = this.pipelineByKey.get(key);
    if (!resolved) {
      resolved = { pipeline: this.pipelines.get(kernel, layout), uniforms, label: `${kernel.family}.${kernel.entry}` };
      this.pipelineByKey.set(key, resolved);
    }
    return resolved;
  }

  /**
   * The bind group of (pipeline, uniform buffer, storage buffers), made once and reused: a training step
   * launches the same combinations every iteration (the pool hands out the same buffers in the same order).
   * The uniform block's offset is dynamic, so it is not part of the key. The cache is a trie of maps keyed by
   * the objects themselves (no key strings); it starts afresh when it grows past MAX_CACHED_BIND_GROUPS.
   */
  private bindGroupFor(
    pipeline: GPUComputePipeline,
    uniforms: GPUBuffer | null,
    buffers: readonly GPUBuffer[],
    count: number,
  ): BindGroupNode {
    let node = this.bindGroups.get(pipeline);
    if (!node) this.bindGroups.set(pipeline, (node = new BindGroupNode()));
    if (uniforms) node = node.child(uniforms);
    for (let i = 0; i < count; i++) node = node.child(buffers[i]);
    if (node.group) return node;
    const entries: GPUBindGroupEntry[] = [];
    if (uniforms) entries.push({ binding: 0, resource: { buffer: uniforms, offset: 0, size: UNIFORM_SLOT } });
    for (let i = 0; i < count; i++) entries.push({ binding: i + 1, resource: { buffer: buffers[i] } });
    node.group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    node.buffers = buffers.slice(0, count);
    this.stats.bindGroups++;
    if (++this.cachedBindGroups > MAX_CACHED_BIND_GROUPS) {
      this.bindGroups = new Map();
      this.cachedBindGroups = 0;
    }
    return node;
  }

  /** True when the open encoder binds or copies `buffer`. */
  private usedInEncoder(buffer: GPUBuffer): boolean {
    if (this.encoderCopies.includes(buffer)) return true;
    const groups = this.encoderGroups;
    for (let i = 0; i < groups.length; i++) if (groups[i].buffers.includes(buffer)) return true;
    return false;
  }

  /** True inside `compileAll`, where launches are only collected: `dispatch` takes them, `dispatchResolved` must not. */
  get collectingKernels(): boolean {
    return this.collecting !== null;
  }

  /** Records one kernel launch into the shared compute pass (the general form of `dispatchResolved`). */
  dispatch(args: DispatchArgs): void {
    this.checkHealthy();
    const bindings = args.bindings;
    const access = bindings.map((b) => b.access);
    if (this.collecting) {
      const [x, y = 1, z = 1] = args.workgroups;
      if (x !== 0 && y !== 0 && z !== 0)
        this.collecting.push({ source: args.kernel, layout: { uniforms: args.params !== undefined, access } });
      return;
    }
    const kernel = this.resolve(args.kernel, args.params !== undefined, access);
    let words = -1;
    if (args.params) {
      const at = this.reserveUniforms();
      args.params.copyInto(this.uniformU32, at);
      words = args.params.byteLength / 4;
    }
    const [x, y, z] = args.workgroups;
    this.dispatchResolved(
      kernel,
      words,
      bindings.map((b) => b.buffer),
      bindings.length,
      x,
      y,
      z,
    );
  }

  /**
   * Records one launch of a resolved kernel: `uniformWords` fields written at `reserveUniforms()` (-1 for a
   * kernel without a uniform block), storage buffers `buffers[0..count)` at @binding(1), @binding(2), ...
   * The hot path of every dispatch: no allocation once its bind group exists.
   */
  dispatchResolved(
    kernel: ResolvedKernel,
    uniformWords: number,
    buffers: readonly GPUBuffer[],
    count: number,
    x: number,
    y = 1,
    z = 1,
    groupCache?: BindGroupCache,
  ): void {
    this.checkHealthy();
    if (x === 0 || y === 0 || z === 0) return;
    const maxDim = this.maxWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim)
      throw new RangeError(`${kernel.label}: ${x}x${y}x${z} workgroups exceed ${maxDim} per dimension`);
    if (this.collecting) throw new Error(`${kernel.label}: a resolved launch inside compileAll() (use dispatch)`);
    if (kernel.uniforms !== uniformWords >= 0)
      throw new Error(`${kernel.label}: the uniform block is ${kernel.uniforms ? 'missing' : 'not declared'}`);
    let offset = -1;
    if (uniformWords >= 0) {
      if (uniformWords > UNIFORM_SLOT_WORDS)
        throw new RangeError(`${kernel.label}: uniform block over ${UNIFORM_SLOT} bytes`);
      // zero the padding to 16 bytes (at least 16), as WGSL lays the struct out
      const at = this.uniformSlots * UNIFORM_SLOT_WORDS;
      const padded = Math.max(4, (uniformWords + 3) & ~3);
      for (let i = uniformWords; i < padded; i++) this.uniformU32[at + i] = 0;
      this.stats.uniformBytes += padded * 4;
      offset = this.uniformSlots++ * UNIFORM_SLOT;
      this.capture?.launch(kernel, this.uniformU32.slice(at, at + uniformWords), buffers, count, x, y, z);
    } else {
      this.capture?.launch(kernel, null, buffers, count, x, y, z);
    }
    const pipeline = kernel.pipeline;
    const uniforms = offset >= 0 ? this.uniformBuffer : null;
    let cached: BindGroupNode;
    if (groupCache && groupCache.uniforms === uniforms && groupCache.node) {
      cached = groupCache.node as BindGroupNode;
    } else {
      cached = this.bindGroupFor(pipeline, uniforms, buffers, count);
      if (groupCache) {
        groupCache.uniforms = uniforms;
        groupCache.node = cached;
      }
    }
    const bindGroup = cached.group!;
    if (cached.encoderSerial !== this.encoderSerial) {
      cached.encoderSerial = this.encoderSerial;
      this.encoderGroups.push(cached);
    }
    const pass = this.profiling ? this.timedPass(kernel.label) : this.ensurePass();
    if (pipeline !== this.passPipeline) {
      pass.setPipeline(pipeline);
      this.passPipeline = pipeline;
    }
    if (offset >= 0) {
      this.dynamicOffsets[0] = offset;
      pass.setBindGroup(0, bindGroup, this.dynamicOffsets);
    } else {
      pass.setBindGroup(0, bindGroup);
    }
    pass.dispatchWorkgroups(x, y, z);
    if (this.profiling) this.endPass();
    this.stats.dispatches++;
    if (++this.dispatchesInEncoder >= DISPATCHES_PER_SUBMIT) this.flush();
  }

  /**
   * Warm-up: runs `fn` with every dispatch turned into a compile request (nothing executes, so results
   * are garbage and must be discarded), then compiles all the kernels it asked for in parallel with
   * createComputePipelineAsync. Run one training step through it before training so the first real
   * step does not stall on dozens of sequential shader compilations.
   */
  async compileAll(fn: () => void): Promise<number> {
    if (this.collecting) throw new Error('compileAll() calls cannot nest');
    const kernels: Array<{ source: KernelSource; layout: LayoutSpec }> = [];
    this.collecting = kernels;
    try {
      fn();
    } finally {
      this.collecting = null;
    }
    const before = this.pipelines.size;
    await this.unlessLost(this.pipelines.prepare(kernels));
    this.checkHealthy();
    return this.pipelines.size - before;
  }

  /** A compute pass of its own for one profiled dispatch, bracketed by two timestamp writes. */
  private timedPass(kernel: string): GPUComputePassEncoder {
    const p = this.profiling!;
    const pair = p.kernels.length % PROFILE_PAIRS_PER_SET;
    if (pair === 0) p.sets.push(this.device.createQuerySet({ type: 'timestamp', count: 2 * PROFILE_PAIRS_PER_SET }));
    p.kernels.push(kernel);
    const encoder = this.endPass();
    this.pass = encoder.beginComputePass({
      timestampWrites: {
        querySet: p.sets[p.sets.length - 1],
        beginningOfPassWriteIndex: 2 * pair,
        endOfPassWriteIndex: 2 * pair + 1,
      },
    });
    return this.pass;
  }

  /**
   * Runs `fn` with every dispatch timed by timestamp queries and returns GPU milliseconds per kernel,
   * largest first. Each dispatch gets a compute pass of its own, so keep this out of real training:
   * it is for finding where a step spends its time (`npx tsx bench/profile-step.ts`).
   */
  async profile(fn: () => void | Promise<void>): Promise<KernelTime[]> {
    if (!this.features.timestampQuery)
      throw new Error(`Profiling needs the "timestamp-query" feature, which ${this.adapterName} does not offer.`);
    if (this.profiling || this.collecting) throw new Error('profile() cannot nest or run inside compileAll()');
    this.capture?.refuse('it is profiled');
    this.flush();
    const p: { sets: GPUQuerySet[]; kernels: string[] } = { sets: [], kernels: [] };
    this.profiling = p;
    try {
      await fn();
    } catch (err) {
      for (const set of p.sets) set.destroy();
      throw err;
    } finally {
      this.profiling = null;
    }
    const totals = new Map<string, KernelTime>();
    for (let s = 0; s < p.sets.length; s++) {
      const pairs = Math.min(PROFILE_PAIRS_PER_SET, p.kernels.length - s * PROFILE_PAIRS_PER_SET);
      const resolved = this.device.createBuffer({
        size: 16 * pairs,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      this.endPass().resolveQuerySet(p.sets[s], 0, 2 * pairs, resolved, 0);
      const ns = new BigInt64Array(await this.read(resolved, 16 * pairs));
      resolved.destroy();
      p.sets[s].destroy();
      for (let i = 0; i < pairs; i++) {
        const kernel = p.kernels[s * PROFILE_PAIRS_PER_SET + i];
        const t = totals.get(kernel) ?? { kernel, calls: 0, ms: 0 };
        t.calls++;
        t.ms += Number(ns[2 * i + 1] - ns[2 * i]) / 1e6;
        totals.set(kernel, t);
      }
    }
    return [...totals.values()].sort((a, b) => b.ms - a.ms);
  }

  /** Records a buffer-to-buffer copy (sizes in bytes, multiples of 4). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.checkHealthy();
    if (bytes === 0) return;
    this.capture?.copy(src, srcOffset, dst, dstOffset, bytes);
    this.endPass().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.encoderCopies.push(src, dst);
  }

  /** Writes host data into a buffer, flushing first if recorded work still uses that buffer. */
  write(buffer: GPUBuffer, data: ArrayBufferView, byteOffset = 0): void {
    this.checkHealthy();
    this.capture?.write(buffer, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), byteOffset);
    if (this.usedInEncoder(buffer)) this.flush();
    if (this.held) {
      const copy = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
      this.held.push(() => this.device.queue.writeBuffer(buffer, byteOffset, copy, 0, copy.byteLength));
      return;
    }
    this.device.queue.writeBuffer(buffer, byteOffset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  }

  /** Submits everything recorded so far. Cheap when nothing is pending. */
  flush(): void {
    if (!this.encoder && this.uniformSlots === 0) return;
    const encoder = this.endPass();
    if (this.uniformBuffer) {
      const bytes = this.uniformSlots * UNIFORM_SLOT;
      if (this.held) {
        const buffer = this.uniformBuffer;
        const copy = this.uniformStaging.slice(0, bytes);
        this.held.push(() => this.device.queue.writeBuffer(buffer, 0, copy, 0, bytes));
      } else {
        this.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformStaging, 0, bytes);
      }
      this.usedUniformBuffers.push(this.uniformBuffer);
      this.uniformBuffer = null;
      this.uniformSlots = 0;
    }
    const commands = encoder.finish();
    if (this.answerRead) {
      // recordOnly: finished, never submitted
    } else if (this.held) {
      this.held.push(() => this.device.queue.submit([commands]));
    } else {
      this.device.queue.submit([commands]);
    }
    this.encoder = null;
    this.dispatchesInEncoder = 0;
    this.encoderSerial++;
    this.encoderGroups.length = 0;
    this.encoderCopies.length = 0;
    this.stats.submits++;
    // Safe even while held: held work is submitted later as one in-order run, and whatever is submitted in
    // the meantime (which executes first) writes a recycled buffer before it reads it.
    this.pool.afterSubmit();
    // Uniform buffers written for this submit may be rewritten now: later writes queue behind it.
    this.freeUniformBuffers.push(...this.usedUniformBuffers);
    this.usedUniformBuffers = [];
  }

  /** True between `hold` and `endHold`. */
  get holding(): boolean {
    return this.held !== null;
  }

  /**
   * Starts holding back what is recorded from now on: its submits, uniform and data writes and late-read maps
   * are kept, in order, instead of reaching the queue, until `endHold` hands them over as one HeldWork. Work
   * recorded and submitted after that (e.g. a decision's rare path) then runs on the GPU before it, while the
   * host recorded it earlier (src/odc/small-clusters.ts). Blocking reads are refused while holding.
   */
  hold(): void {
    if (this.held) throw new Error('hold() calls cannot nest');
    this.capture?.refuse('it holds recorded work back (Gpu.hold)');
    this.checkHealthy();
    this.flush();
    this.held = [];
    this.pool.beginHold();
  }

  /** Ends holding: everything recorded since `hold`, flushed, as one HeldWork that `submit` sends to the queue. */
  endHold(): HeldWork {
    if (!this.held) throw new Error('endHold() without hold()');
    this.capture?.refuse('it ends a hold of recorded work (Gpu.endHold)');
    this.flush();
    const ops = this.held;
    this.held = null;
    return new HeldWork(this, ops, this.pool.endHold());
  }

  /**
   * A late read: records a copy of `bytes` bytes of `buffer` and returns a promise of them that settles once
   * the GPU has run the work recorded so far, without submitting or waiting now (unless nothing is held, when
   * the copy is submitted with the rest). The host goes on recording meanwhile; nothing drains.
   */
  readLater(buffer: GPUBuffer, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.checkHealthy();
    this.capture?.refuse('it reads from the GPU (readLater)');
    this.stats.lateReads++;
    const size = Math.ceil(bytes / 4) * 4;
    if (this.answerRead) {
      this.flush();
      return Promise.resolve(this.answerRead(bytes));
    }
    const staging = this.stagingFor(size);
    this.copy(buffer, byteOffset, staging, 0, size);
    this.flush();
    return new Promise<ArrayBuffer>((resolve, reject) => {
      const map = () => {
        this.mapStaging(staging, size, bytes).then(resolve, reject);
      };
      if (this.held) this.held.push(map);
      else map();
    });
  }

  private stagingFor(size: number): GPUBuffer {
    return (
      this.freeStaging.get(sizeClass(size))?.pop() ??
      this.createCounted({ size: sizeClass(size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST })
    );
  }

  /** Maps a staging buffer whose copy was submitted, takes `bytes` bytes out and keeps the buffer for reuse. */
  private async mapStaging(staging: GPUBuffer, size: number, bytes: number): Promise<ArrayBuffer> {
    try {
      await this.unlessLost(staging.mapAsync(GPUMapMode.READ, 0, size));
    } catch (err) {
      staging.destroy();
      throw err;
    }
    const out = staging.getMappedRange(0, size).slice(0, bytes);
    staging.unmap();
    this.releaseStaging(staging);
    this.checkHealthy();
    return out;
  }

  /**
   * Sends every launch, copy and write recorded from now on to `recorder` as well, until `endCapture` (a tape's
   * capture, src/gpu/tape.ts). Nothing about the recording itself changes.
   */
  beginCapture(recorder: LaunchRecorder): void {
    if (this.capture) throw new Error('beginCapture(): a capture is open already');
    if (this.collecting || this.profiling) recorder.refuse('it runs inside compileAll() or profile()');
    this.capture = recorder;
  }

  /** Ends what `beginCapture` started. */
  endCapture(): void {
    this.capture = null;
  }

  /** True inside `recordOnly` (command buffers are never submitted; a tape captured here must not run for real). */
  get recordingOnly(): boolean {
    return this.answerRead !== null;
  }

  /**
   * For measuring the host's cost of recording (bench/host-overhead.ts): runs `fn` with every command buffer
   * recorded and finished as usual but never submitted, so nothing executes and the GPU's state is left as it
   * was (results computed inside are garbage). Each `read` still counts, but returns `answerRead(bytes)` at once.
   */
  async recordOnly<T>(fn: () => Promise<T>, answerRead: (bytes: number) => ArrayBuffer): Promise<T> {
    if (this.answerRead || this.collecting || this.profiling)
      throw new Error('recordOnly() cannot nest or run inside compileAll() or profile()');
    this.flush();
    this.answerRead = answerRead;
    try {
      const result = await fn();
      this.flush();
      return result;
    } finally {
      this.answerRead = null;
    }
  }

  /** Copies `bytes` bytes from a buffer back to the host, waiting for the GPU to finish everything recorded. */
  async read(buffer: GPUBuffer, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.checkHealthy();
    if (this.held)
      throw new Error('a blocking read while recorded work is held back (Gpu.hold): it would not see that work');
    this.capture?.refuse('it reads from the GPU (read)');
    if (this.answerRead) {
      this.flush();
      this.stats.reads++;
      return this.answerRead(bytes);
    }
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.stagingFor(size);
    this.copy(buffer, byteOffset, staging, 0, size);
    this.flush();
    this.stats.reads++;
    return this.mapStaging(staging, size, bytes);
  }

  /**
   * Keeps a small staging buffer for the next read of its size class: Dawn keeps about 1 KiB of native
   * memory for every buffer ever created, even destroyed and collected, which a read per iteration turns
   * into a slow RSS creep over a long run (bench/soak.ts).
   */
  private releaseStaging(staging: GPUBuffer): void {
    const list = this.freeStaging.get(staging.size) ?? [];
    if (staging.size > MAX_CACHED_STAGING_BYTES || list.length >= MAX_STAGING_PER_CLASS) {
      staging.destroy();
      return;
    }
    list.push(staging);
    this.freeStaging.set(staging.size, list);
  }

  /** Waits until the GPU has finished all submitted work (for benchmarks). */
  async sync(): Promise<void> {
    if (this.held) throw new Error('sync() while recorded work is held back (Gpu.hold)');
    this.flush();
    await this.unlessLost(this.device.queue.onSubmittedWorkDone());
    this.checkHealthy();
  }

  /**
   * Ends the device in order: submits what is recorded, waits until the GPU has finished it, destroys the
   * pool's idle buffers, the uniform buffers and the cached read staging buffers, then the device, so that no work is in flight and no GPU
   * memory is left to the garbage collector when the runtime ends. Tensors still alive are unusable
   * afterwards. A lost device has no work left to wait for.
   */
  async close(): Promise<void> {
    if (!this.lostReason) {
      this.flush();
      await this.device.queue.onSubmittedWorkDone();
    }
    this.pool.trim();
    for (const buffer of this.freeUniformBuffers) buffer.destroy();
    this.freeUniformBuffers = [];
    for (const list of this.freeStaging.values()) for (const buffer of list) buffer.destroy();
    this.freeStaging.clear();
    this.bindGroups.clear();
    this.device.destroy();
  }
}

/** adapter.info's subgroupMinSize/subgroupMaxSize, where the implementation reports them. */
function subgroupSizesOf(info: GPUAdapterInfo | undefined): { min: number; max: number } {
  const sizes = info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  return { min: sizes?.subgroupMinSize ?? 0, max: sizes?.subgroupMaxSize ?? 0 };
}

let current: Gpu | null = null;
let opening: Promise<Gpu> | null = null;

/** Opens the process-wide GPU once; later calls return the same one, or open a new one if it was lost. */
export function initGpu(): Promise<Gpu> {
  if (current?.isLost) {
    current = null;
    opening = null;
  }
  opening ??= Gpu.create().then((g) => (current = g));
  return opening;
}

/**
 * Closes the process-wide GPU, if one was opened, with `Gpu.close`; a later initGpu() opens a new one.
 * Call it when GPU work is over, before the process (or, under `deno test`, the test file) ends.
 */
export async function closeGpu(): Promise<void> {
  const opened = opening;
  opening = null;
  current = null;
  const g = await opened?.catch(() => null); // an adapter that never opened has nothing to close
  await g?.close();
}

/** The process-wide GPU; throws if initGpu() has not completed. */
export function gpu(): Gpu {
  if (!current) throw new Error('No GPU: call `await initGpu()` before creating tensors or running ops.');
  return current;
}

/** Splits a 1-D launch of `count` workgroups into a 2-D grid within the per-dimension limit. */
export function grid(count: number): [number, number] {
  const max = current?.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (count <= max) return [Math.max(count, 0), 1];
  const y = Math.ceil(count / max);
  return [Math.ceil(count / y), y];
}
