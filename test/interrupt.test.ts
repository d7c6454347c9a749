/**
 * Real signals sent to `odc train` in a child process at random moments: the first SIGINT or SIGTERM
 * finishes the iteration, writes a checkpoint and exits with the command that resumes; `--resume` with no
 * other flag then finishes the run, whose parameters, memory and log equal those of an uninterrupted run,
 * bit for bit. The moments are drawn from a seed (SIGNAL_SEED=... replays one; fixed under CI=true).
 */
import { test, before, after } from 'node:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { train } from '../src/odc/trainer.ts';
import { Rng } from '../src/util/rng.ts';
import {
  assertSameCheckpoint,
  loggedResults,
  startCli,
  syntheticDataset,
  tempFiles,
  TINY_FLAGS,
  tinyIdxConfig,
  writeIdxDataset,
} from './train-fixtures.ts';

const env = process.env;
const seed = Number(env.SIGNAL_SEED ?? (env.CI === 'true' ? 1 : Math.floor(Math.random() * 1e6)));
const EPOCHS = 5; // 30 iterations of the tiny configuration (6 per epoch)
const work = mkdtempSync(join(tmpdir(), 'odc-interrupt-'));
const data = writeIdxDataset(work, syntheticDataset());
const reference = join(work, 'reference');

before(async () => {
  await setupGpu();
  await train({ config: tinyIdxConfig(data, EPOCHS), outDir: reference, quiet: true });
});

after(() => {
  rmSync(work, { recursive: true, force: true });
});

test(`SIGINT, then SIGTERM in the resumed run, at random moments: each stops with a checkpoint, and --resume alone finishes bit-exactly (seed ${seed})`, async () => {
  const dir = join(work, 'run');
  const rng = new Rng(seed);
  const trainFlags = ['train', '--data', data, ...TINY_FLAGS, '--epochs', String(EPOCHS), '--out', dir];
  const resumeFlags = ['train', '--out', dir, '--resume'];
  const stops: string[] = [];
  for (const [args, signal, ready] of [
    [trainFlags, 'SIGINT', /initial clustering/],
    [resumeFlags, 'SIGTERM', /resumed from/],
  ] as const) {
    const run = startCli([...args]);
    const started = await run.line(ready);
    const firstLog = await run.line(/ it \d+\/30 /);
    // The time to the first log record (4 iterations, or fewer after a resume) scales the delay, so the
    // signal lands in the iterations that follow, before the end of the run.
    const delay = rng.range(0, 1) * (firstLog - started);
    await new Promise((resolve) => setTimeout(resolve, delay));
    process.kill(run.child.pid!, signal); // not child.kill(): Deno then reports any exit as death by that signal
    const stopped = await run.exit;
    const where = `(seed ${seed}, ${signal} ${delay.toFixed(0)} ms after the first log record; exit code ${stopped.code}, signal ${stopped.signal})\nstdout:\n${stopped.stdout}\nstderr:\n${stopped.stderr}`;
    if (/\ndone: /.test(stopped.stdout)) break; // training ended before the signal arrived: the run must still equal the reference
    assert.equal(stopped.code, signal === 'SIGINT' ? 130 : 143, `exit code 128 + signal number ${where}`);
    assert.match(
      stopped.stderr,
      new RegExp(`odc: ${signal}: stopping after this iteration to write a checkpoint`),
      where,
    );
    assert.ok(
      /resume with: (.*)/.exec(stopped.stdout)?.[1]?.endsWith(`src/cli/main.ts train --out ${dir} --resume`),
      `the exact resume command ${where}`,
    );
    assert.deepEqual(tempFiles(dir), [], `no temporary file ${where}`);
    stops.push(/stopped at (.*);/.exec(stopped.stdout)?.[1] ?? '?');
  }
  if (stops.length === 2) {
    const resumed = await startCli(resumeFlags).exit;
    assert.equal(
      resumed.code,
      0,
      `the last resume finishes (seed ${seed}, stopped at ${stops.join(', then ')})\n${resumed.stdout}\n${resumed.stderr}`,
    );
  }
  await assertSameCheckpoint(reference, dir);
  assert.deepEqual(
    loggedResults(dir),
    loggedResults(reference),
    `the same log records and epoch summaries (seed ${seed}, stopped at ${stops.join(', then ')})`,
  );
  assert.deepEqual(
    JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')),
    JSON.parse(readFileSync(join(reference, 'config.json'), 'utf8')),
  );
});
