/**
 * Every variant of the GEMM family (src/ops/gemm-variants.ts), forced one by one, against the float64
 * reference on odd shapes: matmul with every transpose, linear with its fused bias, conv forward, dgrad
 * (stride 2: several phases) and wgrad (split-K), forward and backward. A variant this adapter cannot run
 * is skipped with its reason (lavapipe: 32 KiB of workgroup memory, subgroup size 8; Deno's own WebGPU:
 * no subgroups). Variants with the same split count must also agree bit for bit (same sums, same order).
 */
import { test, before, after } from 'node:test';
import { assert, randomPair, setupGpu } from './helpers.ts';
import { GEMM_VARIANTS, gemmChoice, gemmUnsupported, GPU_VARIANT } from '../src/ops/gemm-variants.ts';
import { linear, matmul } from '../src/ops/matmul.ts';
import { tidy } from '../src/tensor/scope.ts';
import { gpu } from '../src/gpu/device.ts';
import { refLinear, refMatmul } from '../src/ref/matmul.ts';
import { refConv2d, refConv2dBackward } from '../src/ref/conv.ts';
import { absOf, assertWithinSumBound, convWithGrads } from './gemm-bound.ts';

before(async () => {
  await setupGpu();
});

after(() => gemmChoice.force(null));

/** C = op(A)·op(B) forward only: matmul's backward is the same kernel with other transposes, which the four combinations cover. */
async function checkMatmul(
  name: string,
  M: number,
  N: number,
  K: number,
  tA: boolean,
  tB: boolean,
  seed: number,
): Promise<void> {
  const a = randomPair(seed, tA ? [K, M] : [M, K]);
  const b = randomPair(seed + 1, tB ? [N, K] : [K, N]);
  const c = tidy(() => matmul(a.gpu, b.gpu, { transA: tA, transB: tB }));
  const what = `${name} matmul M=${M} N=${N} K=${K} tA=${tA} tB=${tB}`;
  assertWithinSumBound(
    await c.data(),
    refMatmul(a.ref, b.ref, tA, tB),
    refMatmul(absOf(a.ref), absOf(b.ref), tA, tB),
    K,
    `${what} C`,
  );
  for (const t of [c, a.gpu, b.gpu]) t.dispose();
}

async function checkLinear(name: string, rows: number, inF: number, outF: number, seed: number): Promise<void> {
  const x = randomPair(seed, [rows, inF]);
  const w = randomPair(seed + 1, [outF, inF]);
  const bias = randomPair(seed + 2, [outF]);
  const y = tidy(() => linear(x.gpu, w.gpu, bias.gpu));
  const what = `${name} linear ${rows}x${inF} -> ${outF}`;
  assertWithinSumBound(
    await y.data(),
    refLinear(x.ref, w.ref, bias.ref),
    refLinear(absOf(x.ref), absOf(w.ref), absOf(bias.ref)),
    inF + 1,
    what,
  );
  for (const t of [y, x.gpu, w.gpu, bias.gpu]) t.dispose();
}

async function checkConv(
  name: string,
  batch: number,
  H: number,
  W: number,
  Cin: number,
  Cout: number,
  k: number,
  stride: number,
  pad: number,
  seed: number,
): Promise<void> {
  const opts = { stride, padding: pad };
  const { x, w, g, y } = convWithGrads(seed, [batch, H, W, Cin], [k, k, Cin, Cout], opts);
  const expected = refConv2d(x.ref, w.ref, opts);
  const what = `${name} conv ${batch}x${H}x${W}x${Cin} -> ${Cout} k${k} s${stride} p${pad}`;
  const positions = batch * expected.shape[1] * expected.shape[2];
  assertWithinSumBound(await y.data(), expected, refConv2d(absOf(x.ref), absOf(w.ref), opts), k * k * Cin, `${what} y`);
  const exp = refConv2dBackward(g.ref, x.ref, w.ref, opts);
  const bound = refConv2dBackward(absOf(g.ref), absOf(x.ref), absOf(w.ref), opts);
  assertWithinSumBound(await x.gpu.grad!.data(), exp.dx, bound.dx, k * k * Cout, `${what} dx`);
  assertWithinSumBound(await w.gpu.grad!.data(), exp.dw, bound.dw, positions, `${what} dw`);
  for (const t of [y, x.gpu.grad!, w.gpu.grad!, x.gpu, w.gpu, g.gpu]) t.dispose();
}

for (const [name, variant] of GEMM_VARIANTS) {
  test(`GEMM variant ${name} matches the f64 reference (matmul all transposes, linear + bias, conv fwd/dgrad/wgrad; odd shapes)`, async (t) => {
    const reason = gemmUnsupported(variant, gpu());
    if (reason !== null) {
      t.skip(`${name} cannot run on ${gpu().adapterName}: ${reason}`);
      return;
    }
    gemmChoice.force(variant);
    try {
      // Shapes straddle the 64- and 128-wide tiles; N % 4 != 0 takes the scalar B path, N % 4 == 0 the vec4 one.
      for (const [tA, tB] of [
        [false, false],
        [true, false],
        [false, true],
        [true, true],
      ] as const) {
        await checkMatmul(name, 67, 45, 37, tA, tB, 10);
      }
      await checkMatmul(name, 130, 132, 19, false, false, 20);
      await checkMatmul(name, 3, 5, 700, false, false, 30); // few tiles, long K: split-K
      await checkLinear(name, 33, 19, 70, 40);
      await checkConv(name, 2, 9, 7, 5, 6, 3, 2, 1, 50); // stride 2: four dgrad phases
      await checkConv(name, 1, 11, 10, 4, 8, 3, 1, 1, 60); // Cout % 4 == 0: vec4 B rows
    } finally {
      gemmChoice.force(null);
    }
  });
}

test('tiled variants with the same split count give bit-identical results (same sums in the same order)', async () => {
  const a = randomPair(71, [5, 700]);
  const b = randomPair(72, [700, 12]);
  gemmChoice.force(GPU_VARIANT);
  const base = tidy(() => matmul(a.gpu, b.gpu));
  const expected = await base.data();
  base.dispose();
  let compared = 0;
  for (const [name, v] of GEMM_VARIANTS) {
    if (v.body !== 'tiled' || gemmUnsupported(v, gpu()) !== null) continue;
    gemmChoice.force(v);
    const c = tidy(() => matmul(a.gpu, b.gpu));
    assert.deepEqual([...(await c.data())], [...expected], `${name} differs from tiled-64x64-4x4`);
    c.dispose();
    compared++;
  }
  gemmChoice.force(null);
  assert.ok(compared >= 2, `only ${compared} tiled variants ran`);
  a.gpu.dispose();
  b.gpu.dispose();
});

test('every variant name is unique and every skip reason names a limit or a feature', () => {
  assert.equal(new Set(GEMM_VARIANTS.keys()).size, GEMM_VARIANTS.size);
  for (const [name, v] of GEMM_VARIANTS) {
    const reason = gemmUnsupported(v, gpu());
    if (reason !== null) assert.match(reason, /over this adapter|subgroup|nest|exceed/, name);
  }
});
