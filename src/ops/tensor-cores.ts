/**
 * The tensor-core GEMM (`chromium-experimental-subgroup-matrix`: f16 in, f32 accumulate) and its
 * self-check.
 *
 * It serves the f16 working precision's plain GEMMs (matmul mode, no transposed A, no fused bias: the
 * matmuls, pointwise convs and the backward GEMMs of linear layers) and conv forwards (im2col, then the
 * GEMM; src/ops/conv.ts), only on an adapter that lists an
 * f16 -> f32 subgroup-matrix config and can pin the subgroup size, and only after it has checked itself:
 * on first use (`checkTensorCores`, which the trainer awaits when a run asks for f16) a small GEMM and a
 * small 3x3 conv (im2col + the GEMM) are computed by it and by the f16 kernels without tensor cores, and
 * compared. If they
 * differ (or the kernel fails to compile) the path disables itself for the process with one warning, and
 * training goes on with the other f16 kernels. lavapipe has no subgroup matrices, so there the state is
 * `unavailable`; the check itself is tested by handing it a deliberately wrong candidate.
 */
import { gpu, grid, type SubgroupMatrixConfig } from '../gpu/device.ts';
import { dispatchKernel } from '../gpu/kernel.ts';
import { gemmSgmat } from '../kernels/gemm_sgmat.ts';
import { precision as precisionKernels } from '../kernels/precision.ts';
import { Tensor } from '../tensor/tensor.ts';
import { tidy } from '../tensor/scope.ts';
import { Rng } from '../util/rng.ts';
import { runGemm, type PlainGemm } from './matmul.ts';
import { setTensorCoreGemm, TENSOR_CORE_DEFAULT, TENSOR_CORE_VARIANTS } from './tensor-core-choice.ts';
import { toF16 } from './precision.ts';
import { im2colGemm } from './conv.ts';

export type { PlainGemm } from './matmul.ts';

/** Where the tensor-core path stands in this process (`odc info` prints it). */
export type TensorCoreStatus =
  | { state: 'unavailable'; reason: string }
  | { state: 'unchecked'; config: SubgroupMatrixConfig; subgroupSize: number }
  | { state: 'passed'; config: SubgroupMatrixConfig; subgroupSize: number; maxError: number }
  | { state: 'failed'; reason: string };

/** Result matrices per subgroup along M and N of the tiling the self-check runs (the default; 2×2 amortises each loaded left/right matrix twice). */
const CHECKED_TILES = TENSOR_CORE_VARIANTS.get(TENSOR_CORE_DEFAULT)!.tiles!;

let decided: TensorCoreStatus | null = null;
let warned = false;

/** The adapter's f16 -> f32 config with the most work per multiply, or why there is none. */
export function tensorCoreConfig(): { config: SubgroupMatrixConfig; subgroupSize: number } | { reason: string } {
  const f = gpu().features;
  if (f.subgroupMatrixConfigs.length === 0)
    return {
      reason: `${gpu().adapterName} does not offer chromium-experimental-subgroup-matrix (no subgroup-matrix configs)`,
    };
  if (!f.f16) return { reason: 'the adapter lists subgroup matrices but not shader-f16' };
  if (!f.subgroupSizeControl || gpu().subgroupSizes.max === 0)
    return {
      reason:
        'the adapter cannot pin the subgroup size (no subgroup-size-control), which the subgroup-matrix GEMM needs',
    };
  const fits = f.subgroupMatrixConfigs.filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32');
  if (fits.length === 0)
    return { reason: `no f16 -> f32 subgroup-matrix config among ${JSON.stringify(f.subgroupMatrixConfigs)}` };
  const config = fits.reduce((best, c) => (c.M * c.N * c.K > best.M * best.N * best.K ? c : best));
  // The matrix configs are defined for the adapter's largest subgroup (Dawn requires workgroup x to be a multiple of it).
  return { config, subgroupSize: gpu().subgroupSizes.max };
}

/** The tensor-core path's state; `unchecked` until `checkTensorCores` has run. */
export function tensorCoreStatus(): TensorCoreStatus {
  if (decided) return decided;
  const found = tensorCoreConfig();
  return 'reason' in found ? { state: 'unavailable', reason: found.reason } : { state: 'unchecked', ...found };
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/** Block sizes a padded GEMM rounds its sides up to: rows of A/C, columns of B/C, and K. */
export interface GemmBlocks {
  rows: number;
  cols: number;
  depth: number;
}

/**
 * `inner` (which needs every side a whole number of blocks) made into a GEMM of any shape: the f16
 * operands are zero-padded to whole blocks (zeros add nothing to the products) and the padded f32 result
 * is cropped back into `out`. Sides that already fit are used in place.
 */
export function paddedGemm(inner: PlainGemm, blocks: GemmBlocks): PlainGemm {
  return (a, b, out, M, N, K) => {
    const pool = gpu().pool;
    const [Mp, Np, Kp] = [roundUp(M, blocks.rows), roundUp(N, blocks.cols), roundUp(K, blocks.depth)];
    const pad = (src: GPUBuffer, rows: number, cols: number, rowsOut: number, colsOut: number): GPUBuffer => {
      if (rows === rowsOut && cols === colsOut) return src;
      const dst = pool.acquire(rowsOut * colsOut * 2);
      dispatchKernel(precisionKernels.pad_float, {
        params: { rows, cols, rows_out: rowsOut, cols_out: colsOut },
        bindings: { src, dst },
        precision: 'f16',
        workgroups: grid(Math.ceil((rowsOut * colsOut) / 256)),
      });
      return dst;
    };
    const ap = pad(a, M, K, Mp, Kp);
    const bp = pad(b, K, N, Kp, Np);
    const cp = Np === N && Mp === M ? out : pool.acquire(Mp * Np * 4);
    inner(ap, bp, cp, Mp, Np, Kp);
    if (cp !== out) {
      dispatchKernel(precisionKernels.crop_f32, {
        params: { rows: M, cols: N, cols_in: Np },
        bindings: { src: cp, dst: out },
        workgroups: grid(Math.ceil((M * N) / 256)),
      });
      pool.release(cp);
    }
    if (ap !== a) pool.release(ap);
    if (bp !== b) pool.release(bp);
  };
}

/** C = A·B on the subgroup-matrix kernel with `tiles` result matrices per subgroup, through paddedGemm (the kernel needs whole blocks). */
function subgroupMatrixGemm(
  config: SubgroupMatrixConfig,
  subgroupSize: number,
  tiles: { TR: number; TC: number },
): PlainGemm {
  const [bm, bn] = [tiles.TR * config.M, tiles.TC * config.N];
  const kernel: PlainGemm = (a, b, out, M, N, K) =>
    dispatchKernel(gemmSgmat.gemm_sgmat, {
      params: { M, N, K },
      bindings: { A: a, B: b, C: out },
      defines: { CM: config.M, CN: config.N, CK: config.K, TR: tiles.TR, TC: tiles.TC, SG: subgroupSize },
      workgroups: [M / bm, N / bn],
    });
  return paddedGemm(kernel, { rows: bm, cols: bn, depth: config.K });
}

/** The tensor-core GEMM of each tiling, made once (the tuner's other tilings are checked against the default's result before they are timed). */
function gemmPerTiling(
  config: SubgroupMatrixConfig,
  subgroupSize: number,
): (tiles: { TR: number; TC: number }) => PlainGemm {
  const made = new Map<string, PlainGemm>();
  return (tiles) => {
    const key = `${tiles.TR}x${tiles.TC}`;
    let gemm = made.get(key);
    if (!gemm) made.set(key, (gemm = subgroupMatrixGemm(config, subgroupSize, tiles)));
    return gemm;
  };
}

/** The self-check's cases: a GEMM with ragged sides (exercises the padding) and a 3x3 stride-2 conv (im2col). */
const CHECKS = [
  { what: 'GEMM 67x45x83', M: 67, N: 45, K: 83, conv: null },
  {
    what: 'conv x [2, 9, 7, 12] * w [3, 3, 12, 20] stride 2 pad 1',
    M: 2 * 5 * 4,
    N: 20,
    K: 3 * 3 * 12,
    conv: { batch: 2, H: 9, W: 7, Cin: 12, OH: 5, OW: 4, Cout: 20, KH: 3, KW: 3, stride: 2, pad: 1 },
  },
] as const;

/**
 * Largest |candidate - reference| allowed, relative to K: the operands are the same f16 values and both
 * accumulate in f32, so honest kernels differ by summation order only (~K·2^-24 per unit term); a wrong
 * layout, lane count or tile misses by O(1).
 */
const CHECK_TOLERANCE_PER_TERM = 2 ** -12;

/** Runs `candidate` and the f16 kernels without tensor cores on the check cases; the worst error, or why it failed. */
async function compareWithF16Gemm(candidate: PlainGemm): Promise<{ maxError: number } | { reason: string }> {
  const rng = new Rng(20240610);
  let maxError = 0;
  for (const c of CHECKS) {
    const random = (n: number) => Float32Array.from({ length: n }, () => rng.range(-1, 1));
    const aSize = c.conv ? c.conv.batch * c.conv.H * c.conv.W * c.conv.Cin : c.M * c.K;
    const [a, b] = [Tensor.from(random(aSize), [aSize]), Tensor.from(random(c.K * c.N), [c.K, c.N])];
    const [expected, got] = tidy(() => {
      const [a16, b16] = [toF16(a), toF16(b)];
      const ref = Tensor.empty([c.M, c.N]);
      const out = Tensor.empty([c.M, c.N]);
      // The reference: the same f16 GEMM without tensor cores.
      runGemm({
        mode: c.conv ? 'conv_forward' : 'matmul',
        M: c.M,
        N: c.N,
        K: c.K,
        a: a16.buffer,
        b: b16.buffer,
        out: ref.buffer,
        conv: c.conv ?? undefined,
        precision: 'f16',
      });
      if (c.conv) im2colGemm(candidate, a16.buffer, b16.buffer, out.buffer, c.conv);
      else candidate(a16.buffer, b16.buffer, out.buffer, c.M, c.N, c.K);
      return [ref, out];
    });
    try {
      const [e, g] = [await expected.data(), await got.data()];
      const tolerance = CHECK_TOLERANCE_PER_TERM * c.K;
      for (let i = 0; i < e.length; i++) {
        const err = Math.abs(g[i] - e[i]);
        if (!(err <= tolerance))
          return {
            reason: `${c.what}: element ${i} is ${g[i]}, the f16 kernel without tensor cores gives ${e[i]} (tolerance ${tolerance.toExponential(1)})`,
          };
        maxError = Math.max(maxError, err);
      }
    } finally {
      for (const t of [a, b, expected, got]) t.dispose();
    }
  }
  return { maxError };
}

/**
 * The self-check, run once per process on first use: compares the tensor-core GEMM with the f16 GEMM
 * without tensor cores and enables it only if they agree; otherwise disables it with one warning. A
 * `candidate` replaces the tensor-core kernel (tests inject a wrong one; benchmarks may re-check).
 */
export async function checkTensorCores(candidate?: PlainGemm): Promise<TensorCoreStatus> {
  if (decided && !candidate) return decided;
  let perTiling: (tiles: { TR: number; TC: number }) => PlainGemm = () => candidate!;
  let found: { config: SubgroupMatrixConfig; subgroupSize: number } | null = null;
  if (!candidate) {
    const status = tensorCoreStatus();
    if (status.state === 'unavailable') {
      setTensorCoreGemm(null, status.reason); // nothing to check, and nothing decided: still unavailable
      return status;
    }
    if (status.state !== 'unchecked') return status;
    found = { config: status.config, subgroupSize: status.subgroupSize };
    perTiling = gemmPerTiling(found.config, found.subgroupSize);
  }
  const runner = perTiling(CHECKED_TILES);
  setTensorCoreGemm(null, 'the tensor-core self-check is running');
  let outcome: { maxError: number } | { reason: string };
  try {
    outcome = await compareWithF16Gemm(runner);
  } catch (err) {
    outcome = { reason: `it failed to run: ${(err as Error).message}` };
  }
  if ('reason' in outcome) {
    decided = { state: 'failed', reason: outcome.reason };
    setTensorCoreGemm(null, `the tensor-core self-check failed (${outcome.reason})`);
    if (!warned) {
      warned = true;
      console.warn(
        `odc: warning: the tensor-core GEMM failed its self-check and is disabled for this run (${outcome.reason}); f16 GEMMs use the kernels without tensor cores.`,
      );
    }
    return decided;
  }
  const shape = found ?? {
    config: { componentType: 'f16', resultComponentType: 'f32', M: 0, N: 0, K: 0 },
    subgroupSize: 0,
  };
  decided = { state: 'passed', ...shape, maxError: outcome.maxError };
  setTensorCoreGemm(perTiling);
  return decided;
}

/** Forgets the self-check's verdict (tests): the next `checkTensorCores` runs it again, and f16 GEMMs stop using the candidate. */
export function resetTensorCores(): void {
  decided = null;
  warned = false;
  setTensorCoreGemm(null);
}
