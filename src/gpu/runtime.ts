/**
 * The one module that knows which JavaScript runtime and which WebGPU implementation we are on.
 *
 * Bun and Node get WebGPU from Dawn through the npm package `webgpu`. Deno loads the same Dawn package
 * where it can (an H100 ran the same WGSL GEMM 10x faster under Dawn than under Deno's built-in wgpu)
 * and falls back to its built-in `navigator.gpu`. `ODC_WEBGPU=builtin` forces the built-in one so the
 * tests can cover both implementations.
 */

export type WebGpuImplementation = 'dawn' | 'builtin';

export interface GpuEntry {
  gpu: GPU;
  implementation: WebGpuImplementation;
  runtime: 'node' | 'bun' | 'deno';
}

// Dawn destroys its instance when the object returned by create() is garbage-collected, and the
// process then segfaults a few hundred dispatches later: keep it referenced for the process lifetime.
let dawnInstance: GPU | undefined;

function detectRuntime(): GpuEntry['runtime'] {
  const g = globalThis as { Deno?: unknown; Bun?: unknown };
  if (g.Deno !== undefined) return 'deno';
  if (g.Bun !== undefined) return 'bun';
  return 'node';
}

function envVar(name: string): string | undefined {
  const g = globalThis as { Deno?: { env: { get(n: string): string | undefined } }; process?: { env: Record<string, string | undefined> } };
  try {
    return g.Deno ? g.Deno.env.get(name) : g.process?.env[name];
  } catch {
    return undefined; // Deno without --allow-env
  }
}

/** Dawn toggles that expose shader-f16 and subgroup-matrix on NVIDIA (harmless elsewhere). */
const DAWN_TOGGLES = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];

async function loadDawn(): Promise<GPU> {
  if (dawnInstance) return dawnInstance;
  const mod = (await import('webgpu')) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  // Install the GPUBufferUsage/GPUMapMode/... constants where the runtime lacks them.
  for (const [name, value] of Object.entries(mod.globals)) {
    if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
  }
  dawnInstance = mod.create(DAWN_TOGGLES);
  return dawnInstance;
}

/**
 * Deno's built-in WebGPU (wgpu) opens every backend it finds, and on Linux that includes OpenGL through
 * EGL, which loads Mesa's GL stack beside the Vulkan driver. With both loaded, a process sometimes
 * corrupted its heap at exit (`corrupted size vs. prev_size in fastbins`: a thread's heap, checked as the
 * thread ended while exit() ran the GL libraries' destructors; scripts/repro-deno-exit.sh). The project
 * uses Vulkan adapters only, so wgpu is asked for Vulkan alone, unless DENO_WEBGPU_BACKEND says otherwise.
 * Must run before navigator.gpu opens its instance.
 */
function denoBuiltinVulkanOnly(): void {
  const deno = (globalThis as { Deno?: { build: { os: string }; env: { get(n: string): string | undefined; set(n: string, v: string): void } } }).Deno;
  if (deno?.build.os !== 'linux') return;
  try {
    if (deno.env.get('DENO_WEBGPU_BACKEND') === undefined) deno.env.set('DENO_WEBGPU_BACKEND', 'vulkan');
  } catch {
    // no --allow-env: wgpu opens its default backends
  }
}

/** Finds a WebGPU entry point, preferring Dawn. Throws one clear error when there is none. */
export async function findGpu(): Promise<GpuEntry> {
  const runtime = detectRuntime();
  const wanted = envVar('ODC_WEBGPU');
  denoBuiltinVulkanOnly();
  const builtin = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (wanted === 'builtin') {
    if (!builtin) throw new Error(`ODC_WEBGPU=builtin, but ${runtime} has no built-in navigator.gpu; unset ODC_WEBGPU to use Dawn (npm package "webgpu").`);
    return { gpu: builtin, implementation: 'builtin', runtime };
  }
  try {
    return { gpu: await loadDawn(), implementation: 'dawn', runtime };
  } catch (err) {
    if (builtin) return { gpu: builtin, implementation: 'builtin', runtime };
    throw new Error(
      `Could not load Dawn's WebGPU bindings (npm package "webgpu") under ${runtime}: ${(err as Error).message}. ` +
        'Run `npm ci` in the project root, or use Deno, whose built-in WebGPU is the fallback.',
    );
  }
}
