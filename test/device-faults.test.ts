/**
 * GPU faults end training with one clear message and leave the last checkpoint byte-identical: a device
 * lost mid-run (device.destroy() between iterations, in this process and under the CLI at a given submit)
 * and buffers the adapter cannot provide (over its per-buffer limit, or refused by createBuffer).
 */
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { GpuDeviceLostError, GpuOutOfMemoryError, gpu, initGpu } from '../src/gpu/device.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { train } from '../src/odc/trainer.ts';
import { syntheticDataset, tinyConfig, TINY_DIGITS_FLAGS } from './train-fixtures.ts';
import { runCli as cli, type ChildResult } from './cli-child.ts';

/** A tiny real run through the CLI: 96 digits, batch 16, so 6 iterations per epoch. */
const TINY = [...TINY_DIGITS_FLAGS, '--quiet'];

/** Exit status 1 and exactly one message line on stderr, `odc: ...`, with no stack trace. */
function assertOneMessage(result: ChildResult, pattern: RegExp): void {
  assert.equal(result.status, 1, `exit status ${result.status} (signal ${result.signal}); stderr: ${result.stderr}`);
  const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
  assert.equal(lines.length, 1, `one message expected, stderr was:\n${result.stderr}`);
  assert.match(lines[0], /^odc: /);
  assert.match(lines[0], pattern);
}

test('a device lost mid-run: train() rejects with GpuDeviceLostError and the last checkpoint is byte-identical', async () => {
  await setupGpu();
  const dir = mkdtempSync(join(tmpdir(), 'odc-lost-'));
  try {
    const config = tinyConfig('optim.epochs=3'); // 6 iterations per epoch, a checkpoint after each
    let before: Buffer | null = null;
    const run = train({
      config,
      outDir: dir,
      dataset: syntheticDataset(),
      quiet: true,
      afterIteration: (iteration) => {
        if (iteration !== 8) return;
        before = readFileSync(join(dir, 'checkpoint.odc'));
        gpu().device.destroy();
      },
    });
    await assert.rejects(
      run,
      (err: Error) => err instanceof GpuDeviceLostError && /the GPU device was lost \(destroyed/.test(err.message),
    );
    assert.ok(before, 'the fault was injected after the first checkpoint');
    assert.ok(readFileSync(join(dir, 'checkpoint.odc')).equals(before!), 'the checkpoint changed');
    // The process can open a new device and go on (later test files in the same process need one).
    await initGpu();
    assert.deepEqual([...(await Tensor.from([1, 2, 3], [3]).data())], [1, 2, 3]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a tensor over the adapter's buffer limit: GpuOutOfMemoryError naming its shape, size and the fix", async () => {
  await setupGpu();
  const limit = Math.min(gpu().limits.maxStorageBufferBindingSize, gpu().limits.maxBufferSize);
  const rows = Math.ceil(limit / 4 / 1024) + 1;
  assert.throws(
    () => Tensor.empty([rows, 1024]),
    (err: Error) =>
      err instanceof GpuOutOfMemoryError &&
      err.message.includes(`[${rows}, 1024]`) &&
      /over the .* MiB this adapter allows/.test(err.message) &&
      /optim\.batchSize/.test(err.message),
  );
});

test('a buffer createBuffer refuses is reported by its error scope, with its size, at the next GPU call', async () => {
  await setupGpu();
  const g = gpu();
  const before = g.pool.liveCount;
  const tooBig = g.limits.maxBufferSize * 2; // past the pool's own checks: createBuffer itself fails
  const buffer = g.pool.acquire(tooBig);
  const small = Tensor.from([1, 2, 3], [3]);
  // The scope settles asynchronously; the next read reports the failed allocation, not a garbage result.
  await assert.rejects(
    small.data(),
    (err: Error) =>
      err instanceof GpuOutOfMemoryError &&
      err.message.includes(`allocating a ${(tooBig / 2 ** 20).toFixed(1)} MiB buffer`) &&
      /optim\.batchSize/.test(err.message),
  );
  g.pool.release(buffer);
  small.dispose();
  assert.equal(g.pool.liveCount, before);
  // The device is not lost, but one of its buffers is invalid: start afresh for the tests that follow.
  g.device.destroy();
  await initGpu();
});

test('CLI: a device lost mid-run ends with one message and the checkpoint of the last epoch untouched', () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-lost-cli-'));
  try {
    const first = cli('src/cli/main.ts', ['train', ...TINY, '--epochs', '1', '--out', dir]);
    assert.equal(first.status, 0, first.stderr);
    const before = readFileSync(join(dir, 'checkpoint.odc'));
    // Resumed for two more epochs, the device goes at the 8th submit: inside epoch 2, before its checkpoint.
    const result = cli('test/lose-device-cli.ts', ['8', 'train', ...TINY, '--epochs', '3', '--resume', '--out', dir]);
    assertOneMessage(
      result,
      /the GPU device was lost \(destroyed.*The last checkpoint, .*checkpoint\.odc, is intact: run the same command with --resume to go on/,
    );
    assert.ok(readFileSync(join(dir, 'checkpoint.odc')).equals(before), 'the checkpoint changed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CLI: a batch too large for the adapter ends with one out-of-memory message naming the fix', () => {
  const dir = mkdtempSync(join(tmpdir(), 'odc-oom-cli-'));
  try {
    const result = cli('src/cli/main.ts', [
      'train',
      ...TINY,
      '--limit',
      '2000',
      '--batch-size',
      '2000',
      '--epochs',
      '1',
      '--out',
      dir,
    ]);
    assertOneMessage(
      result,
      /out of GPU memory: A tensor of shape \[2000, .*MiB.*this adapter allows.*Lower optim\.batchSize \(--batch-size\).*No checkpoint had been written/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
