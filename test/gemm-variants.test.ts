/**
 * Every variant of the GEMM family (src/ops/gemm-variants.ts), forced one by one, against the float64
 * reference on odd shapes: matmul with every transpose, linear with its fused bias, conv forward, dgrad
 * (stride 2: several phases) and wgrad (split-K), forward and backward. A variant this adapter cannot run
 * is skipped with its reason (lavapipe: 32 KiB of workgroup memory, subgroup size 8; Deno's own WebGPU:
 * no subgroups). Variants with the same split count must also agree bit for bit (same sums, same order). The
 * accumulating epilogue (C := A·B + C, dgrad into a gradient already collected) must equal C + A·B bit for bit.
 */
import { test, before, after } from 'node:test';
import { assert, randomPair, randomValues, setupGpu } from './helpers.ts';
import { GEMM_VARIANTS, gemmChoice, gemmUnsupported, GPU_VARIANT } from '../src/ops/gemm-variants.ts';
import { linear, matmul, runGemm } from '../src/ops/matmul.ts';
import { conv2d } from '../src/ops/conv.ts';
import { add } from '../src/ops/elementwise.ts';
import { backward } from '../src/tensor/autograd.ts';
import { tidy } from '../src/tensor/scope.ts';
import { Tensor } from '../src/tensor/tensor.ts';
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

/** f32 bits of a + b, correctly rounded (the double sum of two f32 rounds once more without harm: 53 >= 2·24 + 2). */
const f32Sum = (a: Float32Array, b: Float32Array): Float32Array => a.map((v, i) => Math.fround(v + b[i]));

/** Bitwise equality of two f32 arrays. */
function assertBits(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: lengths differ`);
  const ua = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const ue = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ue[i]) assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
}

/** C := op(A)·op(B) + C (the accumulating epilogue, or sum_splits when split) equals C + the product, bit for bit. */
async function checkAccumulateMatmul(name: string, M: number, N: number, K: number, tA: boolean, tB: boolean) {
  const a = randomPair(80, tA ? [K, M] : [M, K]);
  const b = randomPair(81, tB ? [N, K] : [K, N]);
  const old = randomPair(82, [M, N]);
  const product = tidy(() => matmul(a.gpu, b.gpu, { transA: tA, transB: tB }));
  const acc = Tensor.from(await old.gpu.data(), [M, N]);
  runGemm({
    mode: 'matmul',
    M,
    N,
    K,
    transA: tA,
    transB: tB,
    a: a.gpu.buffer,
    b: b.gpu.buffer,
    out: acc.buffer,
    accumulate: true,
  });
  const what = `${name} accumulate M=${M} N=${N} K=${K} tA=${tA} tB=${tB}`;
  assertBits(await acc.data(), f32Sum(await old.gpu.data(), await product.data()), what);
  for (const t of [a.gpu, b.gpu, old.gpu, product, acc]) t.dispose();
}

/**
 * x feeding two convs (a block input feeding conv1 and the shortcut): autograd adds the second dgrad into the
 * first in its GEMM epilogue; x.grad must equal the two separate gradients' f32 sum, bit for bit.
 */
async function checkAccumulateDgrad(name: string, xShape: number[], k: number, Cout: number, stride: number) {
  const opts = { stride, padding: k >> 1 };
  const x = randomPair(90, xShape);
  const w1 = randomPair(91, [k, k, xShape[3], Cout]);
  const w2 = randomPair(92, [1, 1, xShape[3], Cout]);
  const opts2 = { stride, padding: 0 };
  x.gpu.requiresGrad = true;
  const gradOf = async (f: () => Tensor<'f32'>): Promise<Float32Array> => {
    tidy(() => {
      const y = f();
      backward(y, Tensor.from(randomValues(93, y.size), y.shape));
    });
    const d = await x.gpu.grad!.data();
    x.gpu.grad!.dispose();
    x.gpu.grad = null;
    return d;
  };
  const d1 = await gradOf(() => conv2d(x.gpu, w1.gpu, opts));
  const d2 = await gradOf(() => conv2d(x.gpu, w2.gpu, opts2));
  const both = await gradOf(() => add(conv2d(x.gpu, w1.gpu, opts), conv2d(x.gpu, w2.gpu, opts2)));
  assertBits(both, f32Sum(d1, d2), `${name} dgrad accumulated ${JSON.stringify(xShape)} k${k} s${stride} -> ${Cout}`);
  for (const t of [x.gpu, w1.gpu, w2.gpu]) t.dispose();
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
      await checkAccumulateMatmul(name, 67, 45, 37, false, true);
      await checkAccumulateMatmul(name, 33, 20, 19, true, false);
      await checkAccumulateMatmul(name, 3, 5, 700, false, false); // split-K: sum_splits adds
      await checkAccumulateDgrad(name, [2, 9, 7, 5], 3, 6, 2); // phases; 1x1 stride-2 shortcut
      await checkAccumulateDgrad(name, [1, 6, 5, 4], 3, 8, 1); // 1x1 stride 1: a plain matmul dgrad
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

test('a gradient shared with another pending one (views of one buffer) is summed out of place', async () => {
  // y = conv(x) + x: add's backward hands x a view of the gradient it also hands the conv, so the conv's dgrad
  // must not add into it in place.
  const x = randomPair(95, [1, 5, 4, 4]);
  const w = randomPair(96, [3, 3, 4, 4]);
  const g = randomPair(97, [1, 5, 4, 4]);
  x.gpu.requiresGrad = true;
  tidy(() => backward(conv2d(x.gpu, w.gpu, { padding: 1 }), g.gpu));
  const dConv = await x.gpu.grad!.data();
  x.gpu.grad!.dispose();
  x.gpu.grad = null;
  tidy(() => backward(add(conv2d(x.gpu, w.gpu, { padding: 1 }), x.gpu), g.gpu));
  assertBits(await x.gpu.grad!.data(), f32Sum(dConv, await g.gpu.data()), 'x.grad of conv(x) + x');
  for (const t of [x.gpu.grad!, x.gpu, w.gpu, g.gpu]) t.dispose();
});

test('every variant name is unique and every skip reason names a limit or a feature', () => {
  assert.equal(new Set(GEMM_VARIANTS.keys()).size, GEMM_VARIANTS.size);
  for (const [name, v] of GEMM_VARIANTS) {
    const reason = gemmUnsupported(v, gpu());
    if (reason !== null) assert.match(reason, /over this adapter|subgroup|nest|exceed/, name);
  }
});
