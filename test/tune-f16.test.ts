/**
 * The autotuner's f16 and tensor-core candidates (issue 10): f16 GEMMs are shape classes of their own whose
 * GEMM variants are checked and timed like the f32 ones; the tensor-core choice of f16 plain matmuls and conv
 * forwards times its subgroup-matrix tilings only once the self-check passed (elsewhere each is skipped with
 * the reason, and `odc info` says it), and a tuned `off` keeps a shape on the f16 kernels without tensor cores.
 */
import { test, before, afterEach } from 'node:test';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { setTunedTable, unforceAll } from '../src/gpu/variants.ts';
import { tuneCase } from '../src/gpu/tuner.ts';
import { GEMM_VARIANTS, gemmShapeClass } from '../src/ops/gemm-variants.ts';
import { gemmVariant, matmul, runGemm, type PlainGemm } from '../src/ops/matmul.ts';
import { setWorkingPrecision } from '../src/ops/precision.ts';
import { TENSOR_CORE_VARIANTS } from '../src/ops/tensor-core-choice.ts';
import { checkTensorCores, resetTensorCores } from '../src/ops/tensor-cores.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import { tuneCases, variantsInfo } from '../src/odc/tuning.ts';

let hasF16 = false;
before(async () => {
  hasF16 = (await setupGpu()).features.f16;
});
afterEach(() => {
  setTunedTable({});
  unforceAll();
  resetTensorCores();
  if (hasF16) setWorkingPrecision('f32');
});

const NO_F16 = 'the adapter has no shader-f16';

/** A tensor-core stand-in that is right by construction (the f16 GEMM without tensor cores), counting its calls. */
function countingCandidate(): { run: PlainGemm; calls: () => number } {
  let calls = 0;
  return {
    run: (a, b, out, M, N, K) => {
      calls++;
      runGemm({ mode: 'matmul', M, N, K, a, b, out, precision: 'f16', splits: 1 }); // splits: not routed back here
    },
    calls: () => calls,
  };
}

test('f16 GEMMs are shape classes of their own: every GEMM variant is checked and timed or skipped with a reason', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  assert.equal(gemmShapeClass('matmul', 64, 64, 64, 'f16'), 'matmul/small/f16');
  assert.equal(
    gemmShapeClass('matmul', 64, 64, 64),
    'matmul/small',
    'f32 classes keep their names (cached tables stay valid)',
  );
  const cases = tuneCases(gpu(), 'small');
  const f16 = cases.filter((c) => c.kernel === 'gemm' && c.shapeClass.endsWith('/f16'));
  // The conv passes' f16 classes are tuned on GPUs only ('full'), as their timings on a CPU adapter mean little.
  assert.deepEqual(
    f16.map((c) => c.shapeClass),
    ['matmul/small/f16', 'matmul/medium/f16'],
  );
  try {
    const report = await tuneCase(gpu(), f16[0], 1);
    assert.deepEqual(
      [...Object.keys(report.medians), ...Object.keys(report.skipped)].sort(),
      [...GEMM_VARIANTS.keys()].sort(),
      'each candidate accounted for',
    );
    assert.ok(Object.keys(report.medians).length > 1, 'several f16 variants were timed');
    assert.ok(GEMM_VARIANTS.has(report.choice), report.choice);
  } finally {
    for (const c of cases) c.dispose();
  }
  // A tuned f16 entry moves only f16 GEMMs of that class.
  setTunedTable({ 'gemm/matmul/small/f16': 'cpu-narrow-64x8' });
  assert.equal(gemmVariant('matmul', 64, 64, 64, 'f16'), GEMM_VARIANTS.get('cpu-narrow-64x8'));
  assert.notEqual(gemmVariant('matmul', 64, 64, 64), GEMM_VARIANTS.get('cpu-narrow-64x8'));
});

test('tensor-core candidates are skipped with the reason until the self-check passed; then they are timed', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  const native = await checkTensorCores();
  const sgmat = [...TENSOR_CORE_VARIANTS.keys()].filter((n) => n !== 'off');
  if (native.state !== 'passed') {
    const [matmulCase, ...rest] = tuneCases(gpu(), 'smoke').filter((c) => c.kernel === 'tensor-cores');
    try {
      assert.equal(matmulCase.shapeClass, 'matmul/small/f16');
      assert.equal(matmulCase.fallback, 'off');
      const report = await tuneCase(gpu(), matmulCase, 1);
      assert.deepEqual(Object.keys(report.medians), ['off']);
      assert.deepEqual(Object.keys(report.skipped).sort(), [...sgmat].sort());
      const reason = 'reason' in native ? native.reason : 'self-check';
      for (const why of Object.values(report.skipped)) assert.ok(why.includes(reason), why);
      t.diagnostic(`skipped here: ${Object.values(report.skipped)[0]}`);
      assert.match(
        variantsInfo(gpu()),
        /tensor-cores: 6 variants, 1 run here\n {4}cannot run sgmat-2x2, sgmat-1x1, .*: /,
      );
    } finally {
      for (const c of [matmulCase, ...rest]) c.dispose();
    }
  }
  // A candidate that passes the self-check (the f16 kernel itself) makes every tiling a timed candidate.
  resetTensorCores();
  const good = countingCandidate();
  assert.equal((await checkTensorCores(good.run)).state, 'passed');
  const cases = tuneCases(gpu(), 'smoke').filter((c) => c.kernel === 'tensor-cores');
  try {
    assert.deepEqual(
      cases.map((c) => [c.shapeClass, c.fallback]),
      [
        ['matmul/small/f16', 'sgmat-2x2'],
        ['conv-fwd/small/f16', 'sgmat-2x2'],
      ],
    );
    for (const c of cases) {
      const before = good.calls();
      const report = await tuneCase(gpu(), c, 1);
      assert.deepEqual(Object.keys(report.skipped), [], JSON.stringify(report.skipped));
      assert.deepEqual(Object.keys(report.medians).sort(), [...TENSOR_CORE_VARIANTS.keys()].sort());
      assert.ok(good.calls() - before >= sgmat.length * 2, `${c.shapeClass}: each tiling was checked and timed`);
    }
  } finally {
    for (const c of cases) c.dispose();
  }
});

test('a tuned `off` keeps that f16 shape class on the kernels without tensor cores; other classes still use them', async (t) => {
  if (!hasF16) return t.skip(NO_F16);
  const good = countingCandidate();
  assert.equal((await checkTensorCores(good.run)).state, 'passed');
  setWorkingPrecision('f16');
  const small = [
    Tensor.from(new Float32Array(64 * 64).fill(0.5), [64, 64]),
    Tensor.from(new Float32Array(64 * 64).fill(2), [64, 64]),
  ];
  const medium = [
    Tensor.from(new Float32Array(512 * 512).fill(0.5), [512, 512]),
    Tensor.from(new Float32Array(512 * 512).fill(2), [512, 512]),
  ];
  try {
    setTunedTable({ 'tensor-cores/matmul/small/f16': 'off' });
    const before = good.calls();
    const [s, m] = tidy(() => [matmul(small[0], small[1]), matmul(medium[0], medium[1])]);
    assert.equal(good.calls() - before, 1, 'only the medium GEMM went through the tensor cores');
    assert.ok(
      (await s.data()).every((v) => v === 64),
      'the small one is exact on the f16 kernels',
    );
    assert.ok(
      (await m.data()).every((v) => v === 512),
      'and the medium one on the tensor-core stand-in',
    );
    for (const x of [s, m]) x.dispose();
  } finally {
    for (const x of [...small, ...medium]) x.dispose();
  }
});
