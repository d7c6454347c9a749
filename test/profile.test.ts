/**
 * gpu().profile(fn): per-kernel GPU time from timestamp queries. It must count every dispatch under its
 * kernel's name, give finite non-negative times, leave results unchanged, and refuse to nest.
 */
import { test, before } from 'node:test';
import { assert, randomPair, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { add, relu } from '../src/ops/elementwise.ts';
import { matmul } from '../src/ops/matmul.ts';
import { tidy } from '../src/tensor/scope.ts';

before(async () => {
  await setupGpu();
});

const noTimestamps = (): string | false =>
  gpu().features.timestampQuery ? false : 'this adapter has no timestamp-query';

test('profile: every dispatch counted under family.entry, finite times, same results as without it', async (t) => {
  const why = noTimestamps();
  if (why) return t.skip(why);
  const x = randomPair(1, [33, 20]);
  const y = randomPair(2, [20, 17]);
  const compute = () => tidy(() => relu(add(relu(matmul(x.gpu, y.gpu)), relu(matmul(x.gpu, y.gpu)))));
  const plain = compute();
  const expected = await plain.data();
  let profiled = plain;
  const times = await gpu().profile(() => {
    profiled = compute();
  });
  const byName = new Map(times.map((k) => [k.kernel, k]));
  assert.equal(byName.get('elementwise.relu')?.calls, 3, JSON.stringify(times));
  assert.equal(byName.get('elementwise.axpby')?.calls, 1, JSON.stringify(times));
  assert.ok(
    [...byName.keys()].some((k) => k.startsWith('gemm.gemm_')),
    'the GEMMs are listed',
  );
  for (const k of times) assert.ok(Number.isFinite(k.ms) && k.ms >= 0, `${k.kernel}: ${k.ms} ms`);
  for (let i = 1; i < times.length; i++) assert.ok(times[i - 1].ms >= times[i].ms, 'largest first');
  assert.deepEqual(await profiled.data(), expected, 'profiling does not change results');
  await assert.rejects(
    gpu().profile(() =>
      gpu()
        .profile(() => undefined)
        .then(() => undefined),
    ),
    /cannot nest/,
  );
  for (const v of [plain, profiled, x.gpu, y.gpu]) v.dispose();
});

test('profile: more dispatches than one query set holds', async (t) => {
  const why = noTimestamps();
  if (why) return t.skip(why);
  const x = randomPair(3, [4, 4]);
  const times = await gpu().profile(() => {
    for (let i = 0; i < 2100; i++) relu(x.gpu).dispose();
  });
  assert.deepEqual(
    times.map((k) => [k.kernel, k.calls]),
    [['elementwise.relu', 2100]],
  );
  x.gpu.dispose();
});
