/**
 * The one module that knows which JavaScript runtime and which WebGPU implementation we are on.
 *
 * Bun and Node get WebGPU from Dawn through the npm package `webgpu`. Deno loads the same Dawn package
 * where it can (an H100 ran the same WGSL GEMM 10x faster under Dawn than under Deno's built-in wgpu)
 * and falls back to its built-in `navigator.gpu`. `ODC_WEBGPU=builtin` forces the built-in one so the
 * tests can cover both implementations.
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readFileSync } from 'node:fs';

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
  const g = globalThis as {
    Deno?: { env: { get(n: string): string | undefined } };
    process?: { env: Record<string, string | undefined> };
  };
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
  if (detectRuntime() === 'deno') throttleDawnPolling();
  dawnInstance = mod.create(DAWN_TOGGLES);
  return dawnInstance;
}

/** How long Dawn's polls run back to back at the start of a wait, and their interval after that (ms). */
const DAWN_POLL_BURST_MS = 2;
const DAWN_POLL_INTERVAL_MS = 1;

/**
 * While a mapAsync or onSubmittedWorkDone is pending, dawn.node polls its instance through
 * globalThis.setImmediate, with a new native function each time: back to back, tens of polls per
 * millisecond. A wait of a few seconds (lavapipe on a loaded CPU) made hundreds of thousands of them;
 * inside `deno test` (seen there only, not under `deno run`, Node or Bun) memory then grew by about 1 KB
 * a poll and the process spent minutes at 100% CPU before it ran the next immediate: one read waited
 * 148 s with no poll at all (issue 7; scripts/repro-deno-dawn-stall.ts). So under Deno, Dawn's polls
 * (anonymous native functions) go out at once for the first DAWN_POLL_BURST_MS of a wait and then once
 * per DAWN_POLL_INTERVAL_MS on a timer.
 */
function throttleDawnPolling(): void {
  type Schedule = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
  const g = globalThis as unknown as { setImmediate?: Schedule };
  const immediate = g.setImmediate;
  if (!immediate) return;
  let burstStart = 0;
  let lastPoll = -Infinity;
  g.setImmediate = (callback, ...args) => {
    if (callback.name !== '' || !Function.prototype.toString.call(callback).endsWith('{ [native code] }'))
      return immediate(callback, ...args);
    const now = performance.now();
    // A gap longer than a throttled poll's (timers may fire a few ms late) means a new wait.
    if (now - lastPoll > 5 * DAWN_POLL_INTERVAL_MS) burstStart = now;
    lastPoll = now;
    return now - burstStart < DAWN_POLL_BURST_MS
      ? immediate(callback, ...args)
      : setTimeout(callback, DAWN_POLL_INTERVAL_MS, ...args);
  };
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
  const deno = (
    globalThis as {
      Deno?: { build: { os: string }; env: { get(n: string): string | undefined; set(n: string, v: string): void } };
    }
  ).Deno;
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
    if (!builtin)
      throw new Error(
        `ODC_WEBGPU=builtin, but ${runtime} has no built-in navigator.gpu; unset ODC_WEBGPU to use Dawn (npm package "webgpu").`,
      );
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

/**
 * Runs `fn` (synchronous) with the process's native stderr (file descriptor 2) pointed at /dev/null, and
 * restores it before returning. Dawn prints its adapter-discovery notes there from C++ with no switch to
 * turn them off (on lavapipe and most Vulkan drivers two "max... artificially reduced" warnings; with no
 * driver, Vulkan-loader lines and a C++ source path), all inside the synchronous part of requestAdapter().
 * No JavaScript runs while stderr is redirected, so none of our own output can be lost. ODC_DEBUG=1
 * shows everything. Deno and Bun swap the descriptor with dup/dup2 through their FFI; Node has no FFI, so
 * on Linux it reopens a terminal, a pipe or a file opened for appending through /proc/self/fd (a socket
 * or a file opened without O_APPEND as stderr is left alone, as is any platform without /proc).
 */
export async function withNativeStderrSilenced<T>(fn: () => T): Promise<T> {
  if (envVar('ODC_DEBUG')) return fn();
  const runtime = detectRuntime();
  const swap = runtime === 'node' ? procFdSwap() : await ffiFdSwap(runtime);
  if (!swap) return fn();
  try {
    return fn();
  } finally {
    swap.restore();
  }
}

interface FdSwap {
  restore(): void;
}

interface LibC {
  dup(fd: number): number;
  dup2(from: number, to: number): number;
  close(fd: number): number;
  open(path: Uint8Array, flags: number): number;
}

const O_WRONLY = 1;
const DEV_NULL = new TextEncoder().encode('/dev/null\0');

/** dup/dup2 from glibc through Deno's or Bun's FFI; null (stderr untouched) where that is not possible. */
async function ffiFdSwap(runtime: 'bun' | 'deno'): Promise<FdSwap | null> {
  let libc: LibC;
  let unload: () => void;
  try {
    const signatures = { dup: ['i32'], dup2: ['i32', 'i32'], close: ['i32'], open: ['buffer', 'i32'] } as const;
    if (runtime === 'deno') {
      type DenoFfi = {
        dlopen(
          path: string,
          symbols: Record<string, { parameters: string[]; result: string }>,
        ): { symbols: LibC; close(): void };
        permissions: { querySync(p: { name: 'ffi' }): { state: string } };
      };
      const deno = (globalThis as unknown as { Deno: DenoFfi }).Deno;
      if (deno.permissions.querySync({ name: 'ffi' }).state !== 'granted') return null; // never prompt for it
      const symbols = Object.fromEntries(
        Object.entries(signatures).map(([name, p]) => [name, { parameters: [...p], result: 'i32' }]),
      );
      const lib = deno.dlopen('libc.so.6', symbols);
      libc = lib.symbols;
      unload = () => lib.close();
    } else {
      const ffiModule = 'bun:ffi';
      type BunFfi = {
        dlopen(
          path: string,
          symbols: Record<string, { args: string[]; returns: string }>,
        ): { symbols: LibC; close(): void };
      };
      const ffi = (await import(ffiModule)) as BunFfi;
      const args = (p: readonly string[]) => p.map((t) => (t === 'buffer' ? 'ptr' : t));
      const lib = ffi.dlopen(
        'libc.so.6',
        Object.fromEntries(Object.entries(signatures).map(([name, p]) => [name, { args: args(p), returns: 'i32' }])),
      );
      libc = lib.symbols;
      unload = () => lib.close();
    }
  } catch {
    return null; // not glibc, or Deno without --allow-ffi
  }
  const saved = libc.dup(2);
  const devNull = saved < 0 ? -1 : libc.open(DEV_NULL, O_WRONLY);
  if (devNull < 0 || libc.dup2(devNull, 2) < 0) {
    if (devNull >= 0) libc.close(devNull);
    if (saved >= 0) libc.close(saved);
    unload();
    return null;
  }
  libc.close(devNull);
  return {
    restore() {
      libc.dup2(saved, 2);
      libc.close(saved);
      unload();
    },
  };
}

/** Whether descriptor `fd` was opened with O_APPEND (Linux: the octal flags in /proc/self/fdinfo). */
function appending(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return flags !== null && (parseInt(flags[1], 8) & fsConstants.O_APPEND) !== 0;
}

/**
 * Node: close descriptor 2 and open /dev/null in its place (the lowest free descriptor), then put a
 * reopened copy of the original back. Only for a terminal, a pipe or a file opened for appending, where
 * reopening reaches the same place with nothing lost (a file not opened for appending would lose its
 * shared offset with stdout; a socket, as Node's own child processes get, cannot be reopened), and only
 * when descriptors 0 and 1 are open, so the reopen lands on 2.
 */
function procFdSwap(): FdSwap | null {
  const g = globalThis as { process?: { platform: string } };
  if (g.process?.platform !== 'linux') return null;
  try {
    fstatSync(0);
    fstatSync(1);
    const st = fstatSync(2);
    // A pipe is reopened read-write so the open cannot block, whatever the reader does meanwhile; a file
    // only if it was opened for appending (every write goes to its end, whichever description makes it).
    const flags = st.isFIFO()
      ? fsConstants.O_RDWR
      : st.isCharacterDevice()
        ? fsConstants.O_WRONLY | fsConstants.O_NOCTTY
        : st.isFile() && appending(2)
          ? fsConstants.O_WRONLY | fsConstants.O_APPEND
          : -1;
    if (flags < 0) return null;
    const saved = openSync('/proc/self/fd/2', flags);
    closeSync(2);
    const devNull = openSync('/dev/null', 'w');
    const reopen = () => openSync(`/proc/self/fd/${saved}`, st.isFIFO() ? fsConstants.O_WRONLY : flags);
    if (devNull !== 2) {
      closeSync(devNull);
      reopen();
      closeSync(saved);
      return null;
    }
    return {
      restore() {
        closeSync(2);
        reopen();
        closeSync(saved);
      },
    };
  } catch {
    return null;
  }
}
