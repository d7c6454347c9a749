/**
 * A second stop signal aborts at once and never costs the last good checkpoint: in a child process, two
 * real signals delivered together (the process is stopped while they are sent, so neither can be handled
 * before the other arrives) end it with no new checkpoint and no temporary file; a checkpoint write in
 * flight when the process gives up leaves the previous file intact. And a resume that changes the
 * trajectory is refused by the command line with one message naming each key.
 */
import { test, before, after } from 'node:test';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { abandonPendingWrites, readRecords, writeRecords } from '../src/odc/checkpoint-io.ts';
import { startCli, syntheticDataset, tempFiles, tinyIdxConfig, writeIdxDataset } from './train-fixtures.ts';

const work = mkdtempSync(join(tmpdir(), 'odc-abort-'));
const data = writeIdxDataset(work, syntheticDataset());

before(async () => {
  await setupGpu();
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

test('a checkpoint write abandoned in flight leaves the previous checkpoint intact and no temporary file', async () => {
  const dir = mkdtempSync(join(work, 'inflight-'));
  const path = join(dir, 'checkpoint.odc');
  await writeRecords(path, { a: Float32Array.of(1, 2, 3) }, { version: 'old' });
  const old = readFileSync(path);
  const writing = writeRecords(path, { a: new Float32Array(1 << 22).fill(7) }, { version: 'new' }); // 16 MB, not awaited yet
  assert.equal(tempFiles(dir).length, 1, 'the temporary file exists as soon as the write starts');
  assert.equal(abandonPendingWrites().length, 1);
  assert.deepEqual(tempFiles(dir), []);
  await assert.rejects(writing, /ENOENT/, 'the abandoned write cannot rename its (removed) file over the checkpoint');
  assert.ok(Buffer.compare(old, readFileSync(path)) === 0, 'the previous checkpoint is byte-identical');
  assert.deepEqual((await readRecords(path)).meta, { version: 'old' });
  assert.deepEqual(tempFiles(dir), []);
});

test('a second signal aborts at once: no checkpoint is written, the last good one stays byte-identical and readable, no temporary file is left', async () => {
  const dir = join(work, 'double');
  await train({ config: tinyIdxConfig(data, 1), outDir: dir, quiet: true });
  const good = readFileSync(join(dir, 'checkpoint.odc'));
  // Resume for more epochs, with checkpoints only at the very end: any checkpoint written now would be new.
  const run = startCli([
    'train',
    '--out',
    dir,
    '--resume',
    '--epochs',
    '6',
    '--set',
    'log.checkpointEvery=100',
    '--set',
    'log.checkpointMinutes=0',
  ]);
  await run.line(
    /resumed from .*; changed optim\.epochs \(1 -> 6\), log\.checkpointEvery \(1 -> 100\), log\.checkpointMinutes \(30 -> 0\)/,
  );
  await run.line(/ it \d+\/36 /);
  const pid = run.child.pid!;
  process.kill(pid, 'SIGSTOP');
  process.kill(pid, 'SIGINT');
  process.kill(pid, 'SIGTERM');
  process.kill(pid, 'SIGCONT');
  const ended = await run.exit;
  const output = `stdout:\n${ended.stdout}\nstderr:\n${ended.stderr}`;
  // The two pending signals may be handled in either order (any thread may take a signal): the first one
  // handled asks for a stop, the second aborts with its own exit code.
  const first = /odc: (SIGINT|SIGTERM): stopping after this iteration/.exec(ended.stderr)?.[1];
  const second =
    /odc: a second stop signal \((SIGINT|SIGTERM)\): aborted without writing a checkpoint; the last complete checkpoint is kept; resume with: .* --resume/.exec(
      ended.stderr,
    )?.[1];
  assert.ok(first && second && first !== second, `one message per signal ${output}`);
  assert.equal(
    ended.code,
    second === 'SIGINT' ? 130 : 143,
    `the second signal's exit code (128 + its number) ${output}`,
  );
  assert.doesNotMatch(ended.stdout, /stopped at epoch/, 'the first signal did not get to write its checkpoint');
  assert.ok(
    Buffer.compare(good, readFileSync(join(dir, 'checkpoint.odc'))) === 0,
    'the last good checkpoint is byte-identical',
  );
  await readRecords(join(dir, 'checkpoint.odc'));
  assert.deepEqual(tempFiles(dir), []);
});

test('the command line refuses a resume that changes the seed or K, naming both with their values, and a resume without its config.json', async () => {
  const dir = join(work, 'refused');
  await train({ config: tinyIdxConfig(data, 1), outDir: dir, quiet: true });
  const good = readFileSync(join(dir, 'checkpoint.odc'));
  const refused = await startCli(['train', '--out', dir, '--resume', '--seed', '3', '--k', '10', '--epochs', '2']).exit;
  assert.equal(refused.code, 1, refused.stderr);
  assert.equal(refused.stderr.match(/^odc: /gm)?.length, 1, `one error: ${refused.stderr}`);
  assert.match(
    refused.stderr,
    /\nodc: --resume cannot change seed \(0 -> 3\) or odc\.k \(8 -> 10\): .*start a new run with --out NEWDIR, or drop these flags/,
  );
  assert.doesNotMatch(refused.stderr, /\n\s+at /, 'no stack trace');
  assert.ok(Buffer.compare(good, readFileSync(join(dir, 'checkpoint.odc'))) === 0);
  rmSync(join(dir, 'config.json'));
  writeFileSync(join(dir, 'other.json'), '{}');
  const noConfig = await startCli(['train', '--out', dir, '--resume']).exit;
  assert.equal(noConfig.code, 1);
  assert.match(noConfig.stderr, /odc: --resume needs the run's .*config\.json, which does not exist/);
  assert.ok(existsSync(join(dir, 'checkpoint.odc')));
});
