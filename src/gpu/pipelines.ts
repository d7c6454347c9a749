/**
 * Compute pipelines cached by kernel identity (WGSL family, entry point, template values, binding layout).
 * `prepare` compiles a list of kernels in parallel with createComputePipelineAsync (warm-up);
 * `get` returns a cached pipeline or compiles synchronously on first use.
 */
import { entryModule, type Defines } from './shaders.ts';

/**
 * Which WGSL kernel to run: shaders/<family>.wgsl, entry point, template values, and the declarations
 * generated from the entry's TypeScript declaration (built by src/gpu/kernel.ts's kernelSource).
 */
export interface KernelSource {
  family: string;
  entry: string;
  defines?: Defines;
  header: string;
  /** Tells declarations of one entry apart in the cache (a test declares a deliberately wrong one). */
  declarationId: number;
  /** Directives that must open the module (`enable f16; `), written before the body on its first line. */
  directives?: string;
  /** The working precision of a precision-following entry, when not f32 (part of the cache key). */
  precision?: 'f16';
}

/** How one storage binding is declared in WGSL: var<storage, read> or var<storage, read_write>. */
export type Access = 'read' | 'rw';

/** Binding layout: whether @binding(0) is a uniform block, then the access of @binding(1..n). */
export interface LayoutSpec {
  uniforms: boolean;
  access: readonly Access[];
}

function layoutKey(layout: LayoutSpec): string {
  return (layout.uniforms ? 'u' : '-') + layout.access.map((a) => (a === 'read' ? 'r' : 'w')).join('');
}

export function kernelKey(source: KernelSource, layout: LayoutSpec): string {
  const defines = source.defines ? JSON.stringify(Object.entries(source.defines).sort()) : '';
  return `${source.family}:${source.entry}#${source.declarationId}${source.precision ? `@${source.precision}` : ''}:${defines}:${layoutKey(layout)}`;
}

export class PipelineCache {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly inFlight = new Map<string, Promise<GPUComputePipeline>>();
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly modules = new Map<string, GPUShaderModule>();

  /** `onCompileError` receives WGSL compiler errors (with line numbers), which Dawn does not raise itself. */
  constructor(
    private readonly device: GPUDevice,
    private readonly onCompileError: (message: string) => void,
  ) {}

  get size(): number {
    return this.pipelines.size;
  }

  bindGroupLayout(layout: LayoutSpec): GPUBindGroupLayout {
    const key = layoutKey(layout);
    let bgl = this.layouts.get(key);
    if (!bgl) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      // The uniform block's offset is given with each dispatch, so one bind group serves every block.
      if (layout.uniforms)
        entries.push({
          binding: 0,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: 'uniform', hasDynamicOffset: true },
        });
      layout.access.forEach((access, i) =>
        entries.push({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: access === 'read' ? 'read-only-storage' : 'storage' },
        }),
      );
      bgl = this.device.createBindGroupLayout({ label: key, entries });
      this.layouts.set(key, bgl);
    }
    return bgl;
  }

  private descriptor(source: KernelSource, layout: LayoutSpec): GPUComputePipelineDescriptor {
    const code = (source.directives ?? '') + entryModule(source.family, source.entry, source.header, source.defines);
    let module = this.modules.get(code);
    if (!module) {
      module = this.device.createShaderModule({ label: `${source.family}.${source.entry}`, code });
      this.modules.set(code, module);
      const where = `shaders/${source.family}.wgsl (entry ${source.entry}; lines past the file's end are its generated header)`;
      void module.getCompilationInfo().then((info) => {
        const errors = info.messages.filter((m) => m.type === 'error');
        if (errors.length > 0) {
          this.onCompileError(
            `${where}: ${errors.map((m) => `line ${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`,
          );
        }
      });
    }
    const label = `${source.family}.${source.entry}`;
    return {
      label,
      layout: this.device.createPipelineLayout({ label, bindGroupLayouts: [this.bindGroupLayout(layout)] }),
      compute: { module, entryPoint: source.entry },
    };
  }

  /** The pipeline for a kernel, compiled synchronously if warm-up did not prepare it. */
  get(source: KernelSource, layout: LayoutSpec): GPUComputePipeline {
    const key = kernelKey(source, layout);
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      pipeline = this.device.createComputePipeline(this.descriptor(source, layout));
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  /** Compiles kernels in parallel (call at warm-up); already cached or in-flight ones are skipped. */
  async prepare(kernels: ReadonlyArray<{ source: KernelSource; layout: LayoutSpec }>): Promise<void> {
    const unique = new Map(kernels.map((k) => [kernelKey(k.source, k.layout), k]));
    await Promise.all(
      [...unique].map(([key, { source, layout }]) => {
        if (this.pipelines.has(key)) return undefined;
        let pending = this.inFlight.get(key);
        if (!pending) {
          pending = this.device.createComputePipelineAsync(this.descriptor(source, layout)).then((p) => {
            this.pipelines.set(key, p);
            this.inFlight.delete(key);
            return p;
          });
          this.inFlight.set(key, pending);
        }
        return pending;
      }),
    );
  }
}
