/**
 * Runs the odc CLI (or a test driver) in a child process under the same runtime as the test, capturing
 * its output. Under Node the child's stderr is a file opened for appending rather than Node's usual
 * socket pair: Node cannot keep Dawn's adapter-discovery notes off a socket (src/gpu/runtime.ts,
 * withNativeStderrSilenced), and a terminal, a pipe or an appended log file is what users have.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
const g = globalThis as { Deno?: { env: { get(n: string): string | undefined } }; Bun?: unknown };
const runtimeArgs = g.Deno ? ['run', '-A'] : g.Bun ? [] : ['--import', 'tsx'];
/** Deno's built-in WebGPU rather than Dawn (ODC_WEBGPU=builtin). */
export const builtinWebGpu = g.Deno?.env.get('ODC_WEBGPU') === 'builtin';

export interface ChildResult {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export function runCli(script: string, args: readonly string[], env: Record<string, string> = {}): ChildResult {
  const options = { cwd: root, encoding: 'utf8' as const, timeout: 300_000, env: { ...process.env, ...env } };
  if (g.Deno || g.Bun) {
    const r = spawnSync(process.execPath, [...runtimeArgs, script, ...args], options);
    if (r.error) throw new Error(`the child did not finish: ${r.error.message}`);
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  }
  const dir = mkdtempSync(join(tmpdir(), 'odc-stderr-'));
  const path = join(dir, 'stderr.txt');
  const fd = openSync(path, 'a');
  try {
    const r = spawnSync(process.execPath, [...runtimeArgs, script, ...args], {
      ...options,
      stdio: ['ignore', 'pipe', fd],
    });
    if (r.error) throw new Error(`the child did not finish: ${r.error.message}`);
    return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: readFileSync(path, 'utf8') };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}
