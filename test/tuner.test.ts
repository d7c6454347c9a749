/**
 * The autotuner and the one variant choice: the decision rule under forced timings (medians, the margin
 * before leaving the default), the check that rejects a wrong candidate, the per-adapter cache, ODC_TUNE,
 * a real tuning pass on this adapter, and the reproducibility of a tuned run (its variants.json pins the
 * variants, so a resume continues bit for bit even when the tuned table is gone).
 */
import { test, before, after } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { VariantChoice, setTunedTable, unforceAll, usedVariants, resetUsedVariants } from '../src/gpu/variants.ts';
import {
  cacheFile,
  decideVariant,
  loadCachedTable,
  saveCachedTable,
  tuneCase,
  tuneMode,
  type TuneCase,
} from '../src/gpu/tuner.ts';
import { GEMM_VARIANTS, gemmDefault, gemmShapeClass } from '../src/ops/gemm-variants.ts';
import { gemmVariant } from '../src/ops/matmul.ts';
import { tuneCases, VARIANTS_FILE } from '../src/odc/tuning.ts';
import { train } from '../src/odc/trainer.ts';
import { commandFromArgv } from '../src/cli/args.ts';
import { applyOverride } from '../src/config/settings.ts';
import { assertSameCheckpoint, syntheticDataset, tinyConfig } from './train-fixtures.ts';

const cacheRoot = mkdtempSync(join(tmpdir(), 'odc-tune-cache-'));
const savedEnv = { dir: process.env.ODC_CACHE_DIR, tune: process.env.ODC_TUNE };

before(async () => {
  process.env.ODC_CACHE_DIR = cacheRoot;
  await setupGpu();
});

after(() => {
  unforceAll();
  setTunedTable({});
  for (const [key, value] of [
    ['ODC_CACHE_DIR', savedEnv.dir],
    ['ODC_TUNE', savedEnv.tune],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  rmSync(cacheRoot, { recursive: true, force: true });
});

test('decision rule: lowest median wins, but the default stays unless beaten by the margin', () => {
  // The default is fastest.
  assert.equal(decideVariant('a', { a: [10, 11, 9], b: [12, 12, 13] }).choice, 'a');
  // 3% faster is inside the 5% margin: the default stays.
  assert.equal(decideVariant('a', { a: [10, 10, 10], b: [9.7, 9.7, 9.7] }).choice, 'a');
  // 20% faster leaves the default.
  const won = decideVariant('a', { a: [10, 10, 10], b: [8, 8, 8], c: [9, 9, 9] });
  assert.equal(won.choice, 'b');
  assert.match(won.reason, /20% faster/);
  // Medians, not means: one slow outlier of the default does not make b look 20% faster.
  assert.equal(decideVariant('a', { a: [10, 10, 100, 10, 10], b: [9.8, 9.8, 9.8, 9.8, 9.8] }).choice, 'a');
  // ... and one lucky sample of b does not either.
  assert.equal(decideVariant('a', { a: [10, 10, 10], b: [1, 10, 10] }).choice, 'a');
  // A default that could not be timed loses to the fastest candidate; no samples at all keep the default.
  assert.equal(decideVariant('a', { b: [5, 5], c: [4, 4] }).choice, 'c');
  assert.equal(decideVariant('a', { b: [] }).choice, 'a');
  // The margin is a parameter: 0 takes any win.
  assert.equal(decideVariant('a', { a: [10], b: [9.9] }, 0).choice, 'b');
});

test('tuneCase with forced timings: unsupported and wrong candidates are skipped with reasons, the rule decides', async () => {
  type Fake = { ms: number; value: number; cannot?: string };
  const fakes = new Map<string, Fake>([
    ['plain', { ms: 10, value: 1 }],
    ['quick', { ms: 7, value: 1 }],
    ['wrong', { ms: 1, value: 2 }],
    ['absent', { ms: 0.5, value: 1, cannot: 'needs a feature this adapter lacks' }],
    ['near', { ms: 9.8, value: 1 }],
  ]);
  const choice = new VariantChoice<Fake>({
    kernel: 'test-fake',
    variants: fakes,
    unsupported: (v) => v.cannot ?? null,
  });
  let last: Fake | null = null;
  const fakeCase: TuneCase = {
    kernel: 'test-fake',
    shapeClass: 'any',
    fallback: 'plain',
    record: () => {
      last = choice.choose(gpu(), 'any', 'plain');
    },
    result: async () => Float32Array.of(last!.value),
    agrees: (c, r) => c[0] === r[0],
    dispose: () => {},
  };
  const forcedTimer = async (record: () => void): Promise<number> => {
    record();
    return last!.ms;
  };
  const report = await tuneCase(gpu(), fakeCase, 3, 0.05, forcedTimer);
  assert.equal(report.choice, 'quick');
  assert.equal(report.key, 'test-fake/any');
  assert.deepEqual(Object.keys(report.medians).sort(), ['near', 'plain', 'quick']);
  assert.match(report.skipped.wrong, /differs from the default/);
  assert.match(report.skipped.absent, /needs a feature/);
  assert.equal(choice.isForced, false, 'the tuner ends its forcing');
  fakes.get('quick')!.ms = 9.9; // now within the margin of the default
  assert.equal((await tuneCase(gpu(), fakeCase, 3, 0.05, forcedTimer)).choice, 'plain');
});

test('ODC_TUNE: off on CPU adapters and cached on GPUs when unset; a bad value names the variable and the choices', () => {
  assert.equal(tuneMode({ isCpuAdapter: true }, undefined), 'off');
  assert.equal(tuneMode({ isCpuAdapter: false }, undefined), 'cached');
  assert.equal(tuneMode({ isCpuAdapter: true }, 'full'), 'full');
  assert.throws(
    () => tuneMode({ isCpuAdapter: false }, 'fast'),
    /ODC_TUNE=fast is not a tuning mode: use off .*, cached .* or full/,
  );
});

test('odc tune takes --repeats N (a positive integer), nothing else', () => {
  assert.deepEqual(commandFromArgv(['tune']), { command: 'tune', repeats: 5 });
  assert.deepEqual(commandFromArgv(['tune', '--repeats', '3']), { command: 'tune', repeats: 3 });
  assert.throws(() => commandFromArgv(['tune', '--repeats', '0']), /--repeats/);
  assert.throws(() => commandFromArgv(['tune', '--repeat', '3']), /repeats/);
});

test('the cache is one file per adapter and driver; a damaged or foreign file is ignored', () => {
  const a = { adapterName: 'Some GPU driver 1.2', implementation: 'dawn' as const };
  const b = { adapterName: 'Some GPU driver 1.3', implementation: 'dawn' as const };
  assert.notEqual(cacheFile(a), cacheFile(b));
  assert.ok(cacheFile(a).startsWith(cacheRoot));
  assert.equal(loadCachedTable(a), null);
  saveCachedTable(a, { 'gemm/matmul/large': 'tiled-128x128-8x8-cf' }, []);
  assert.deepEqual(loadCachedTable(a)?.table, { 'gemm/matmul/large': 'tiled-128x128-8x8-cf' });
  assert.equal(loadCachedTable(b), null);
  writeFileSync(cacheFile(b), '{"version": 1, "adapter": "Some GPU dri');
  assert.equal(loadCachedTable(b), null);
});

test('a real tuning pass on this adapter: every candidate is timed or skipped with a reason, the choice is a known variant', async () => {
  const cases = tuneCases(gpu(), 'small')
    .filter((c) => c.shapeClass.endsWith('small'))
    .slice(0, 2);
  try {
    for (const c of cases) {
      const report = await tuneCase(gpu(), c, 2);
      const names = c.kernel === 'gemm' ? [...GEMM_VARIANTS.keys()] : ['regs', 'tiled'];
      assert.deepEqual(
        [...Object.keys(report.medians), ...Object.keys(report.skipped)].sort(),
        names.sort(),
        `${report.key}: each candidate accounted for`,
      );
      assert.ok(names.includes(report.choice), report.choice);
      for (const ms of Object.values(report.medians)) assert.ok(ms >= 0 && Number.isFinite(ms));
      for (const [name, reason] of Object.entries(report.skipped))
        assert.match(reason, /over this adapter|subgroup|differs|feature/, name);
    }
  } finally {
    for (const c of cases) c.dispose();
  }
});

test('the tuned table is used only where its variant runs, and every choice is remembered for the run record', () => {
  resetUsedVariants();
  const cls = gemmShapeClass('matmul', 64, 64, 64);
  setTunedTable({ [`gemm/${cls}`]: 'tiled-64x64-4x4-cf', 'gemm/conv-fwd/small': 'no-such-variant' });
  try {
    assert.equal(gemmVariant('matmul', 64, 64, 64), GEMM_VARIANTS.get('tiled-64x64-4x4-cf'));
    gemmVariant('conv_forward', 16, 8, 9); // an unknown name falls back to the default
    const used = usedVariants();
    assert.equal(used[`gemm/${cls}`], 'tiled-64x64-4x4-cf');
    assert.equal(used['gemm/conv-fwd/small'], gemmDefault(gpu(), 8, 16));
  } finally {
    setTunedTable({});
  }
});

test('a tuned run records its variants and resumes bit-exactly from them after the tuned table is gone', async () => {
  const straightDefault = mkdtempSync(join(tmpdir(), 'odc-tuned-default-'));
  const straightTuned = mkdtempSync(join(tmpdir(), 'odc-tuned-straight-'));
  const resumed = mkdtempSync(join(tmpdir(), 'odc-tuned-resumed-'));
  // A table as a tuner might leave it: the GPU tiles (their split-K targets differ from lavapipe's) everywhere.
  const table: Record<string, string> = {};
  for (const op of ['matmul', 'conv-fwd', 'conv-dgrad', 'conv-wgrad'])
    for (const size of ['small', 'medium', 'large']) table[`gemm/${op}/${size}`] = 'tiled-64x64-4x4-cf';
  for (const size of ['small', 'medium', 'large']) table[`nearest/${size}`] = 'tiled';
  try {
    const ds = syntheticDataset();
    process.env.ODC_TUNE = 'off';
    await train({ config: tinyConfig(), outDir: straightDefault, dataset: ds, quiet: true });
    process.env.ODC_TUNE = 'cached';
    saveCachedTable(gpu(), table, []);
    await train({ config: tinyConfig(), outDir: straightTuned, dataset: ds, quiet: true });
    await train({ config: applyOverride(tinyConfig(), 'optim.epochs=1'), outDir: resumed, dataset: ds, quiet: true });
    rmSync(cacheFile(gpu())); // the machine's tuned table is gone (or retuned): the run's own record must decide
    await train({ config: tinyConfig(), outDir: resumed, dataset: ds, quiet: true, resume: true });
    await assertSameCheckpoint(straightTuned, resumed);
    const recorded = JSON.parse(readFileSync(join(resumed, VARIANTS_FILE), 'utf8')) as {
      table: Record<string, string>;
    };
    assert.ok(Object.values(recorded.table).includes('tiled-64x64-4x4-cf'), 'the record names the tuned variants');
    const defaults = JSON.parse(readFileSync(join(straightDefault, VARIANTS_FILE), 'utf8')) as {
      table: Record<string, string>;
    };
    assert.ok(!Object.values(defaults.table).includes('tiled-64x64-4x4-cf'), 'ODC_TUNE=off ran the defaults');
    await assert.rejects(
      assertSameCheckpoint(straightDefault, straightTuned),
      'the tuned variants change the order of sums (split-K), so the runs differ',
    );
  } finally {
    process.env.ODC_TUNE = 'off';
    for (const dir of [straightDefault, straightTuned, resumed]) rmSync(dir, { recursive: true, force: true });
  }
});
