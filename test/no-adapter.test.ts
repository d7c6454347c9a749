/**
 * A machine without a usable WebGPU adapter gets one clear message saying how to get one. Simulated by
 * pointing the Vulkan loader at a driver manifest that does not exist, in a child process running the
 * CLI under the same runtime as this test.
 */
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { assert } from './helpers.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const g = globalThis as { Deno?: unknown; Bun?: unknown };
const runtimeArgs = g.Deno ? ['run', '-A'] : g.Bun ? [] : ['--import', 'tsx'];

test('no WebGPU adapter: the CLI fails with one message naming the fix', () => {
  const result = spawnSync(process.execPath, [...runtimeArgs, 'src/cli/main.ts', 'info'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      VK_ICD_FILENAMES: '/nonexistent/icd.json',
      VK_DRIVER_FILES: '/nonexistent/icd.json',
      XDG_RUNTIME_DIR: '/tmp',
    },
  });
  assert.equal(result.status, 1, `exit status ${result.status}; stderr: ${result.stderr}`);
  assert.match(result.stderr, /odc: No WebGPU adapter was found\. .*Vulkan driver.*lavapipe.*bookworm-backports/);
});
