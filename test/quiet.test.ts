/**
 * Quiet by default: a normal `odc train` prints nothing on stderr (no Dawn limit warnings, no Vulkan
 * loader lines, no C++ source paths), a machine without an adapter gets exactly the project's message,
 * and ODC_DEBUG=1 shows the native notes again.
 */
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert } from './helpers.ts';
import { builtinWebGpu, runCli } from './cli-child.ts';
import { TINY_DIGITS_FLAGS } from './train-fixtures.ts';

/** The Vulkan loader pointed at a driver manifest that does not exist: no adapter (as no-adapter.test.ts). */
const NO_DRIVER = {
  VK_ICD_FILENAMES: '/nonexistent/icd.json',
  VK_DRIVER_FILES: '/nonexistent/icd.json',
  XDG_RUNTIME_DIR: '/tmp',
};
const NATIVE_NOISE = /warning|artificially|vulkan|\.cpp|loader|dawn/i;
const noAdapterSkip = builtinWebGpu ? "Deno's built-in WebGPU may fall back to a non-Vulkan adapter" : false;

test('a normal odc train prints nothing on stderr', () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-quiet-'));
  try {
    const result = runCli('src/cli/main.ts', ['train', ...TINY_DIGITS_FLAGS, '--epochs', '1', '--out', dir]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /done: 6 iterations/);
    const noisy = result.stderr.split('\n').filter((l) => NATIVE_NOISE.test(l));
    assert.deepEqual(noisy, [], `native noise on stderr:\n${result.stderr}`);
    assert.equal(result.stderr.trim(), '', `stderr of a normal run:\n${result.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no adapter: stderr is exactly the project's message", { skip: noAdapterSkip }, () => {
  const result = runCli('src/cli/main.ts', ['info'], NO_DRIVER);
  assert.equal(result.status, 1, result.stderr);
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `stderr:\n${result.stderr}`);
  assert.match(lines[0], /^odc: No WebGPU adapter was found\. .*Vulkan driver.*lavapipe/);
});

test('ODC_DEBUG=1 shows the native notes (here the Vulkan loader finding no driver)', { skip: noAdapterSkip }, () => {
  const result = runCli('src/cli/main.ts', ['info'], { ...NO_DRIVER, ODC_DEBUG: '1' });
  assert.equal(result.status, 1, result.stderr);
  assert.match(result.stderr, /vkCreateInstance|VK_ERROR_INCOMPATIBLE_DRIVER/);
  assert.match(result.stderr, /odc: No WebGPU adapter was found/);
});
