/**
 * The engine on its own: a two-layer MLP learns XOR. Parameters are tensors with requiresGrad; each step
 * runs inside tidy() (every temporary is freed when it returns), backward() fills the gradients and SGD
 * updates the weights in one WGSL kernel per parameter. Data leaves the GPU only through `await t.data()`.
 *
 *   bun examples/engine-basics.ts  |  deno run -A examples/engine-basics.ts  |  node dist/examples/engine-basics.js
 */
import {
  initGpu,
  closeGpu,
  Tensor,
  tidy,
  backward,
  linear,
  relu,
  weightedCrossEntropy,
  argmaxRows,
  SGD,
  Rng,
} from 'odc-webgpu';

await initGpu(); // Dawn (npm "webgpu") under Node and Bun, Deno's navigator.gpu with ODC_WEBGPU=builtin
const rng = new Rng(0);
const param = (shape: number[], std: number): Tensor<'f32'> => {
  const t = Tensor.from(
    Float32Array.from({ length: shape[0] * (shape[1] ?? 1) }, () => std * rng.normal()),
    shape,
  );
  t.requiresGrad = true; // a parameter: lives until t.dispose()
  return t;
};
const w1 = param([8, 2], 1);
const b1 = param([8], 0.1);
const w2 = param([2, 8], 0.5);
const b2 = param([2], 0);
const opt = new SGD([{ params: [w1, b1, w2, b2] }], { lr: 0.1, momentum: 0.9 });

const x = Tensor.from([0, 0, 0, 1, 1, 0, 1, 1], [4, 2]);
const y = Tensor.from([0, 1, 1, 0], [4], 'u32');
const steps = Number(process.env.ODC_EXAMPLE_STEPS ?? 150);
for (let step = 1; step <= steps; step++) {
  const loss = tidy(() => {
    const logits = linear(relu(linear(x, w1, b1)), w2, b2);
    const l = weightedCrossEntropy(logits, y, null); // mean cross-entropy (null: every class weighs 1)
    backward(l); // reverse topological order; gradients accumulate in w.grad
    opt.step();
    return l; // returned from tidy, so it survives it
  });
  opt.zeroGrad();
  if (step === 1 || step % 25 === 0 || step === steps)
    console.log(`step ${step}: loss ${(await loss.data())[0].toFixed(4)}`);
  loss.dispose();
}
const predicted = tidy(() => argmaxRows(linear(relu(linear(x, w1, b1)), w2, b2)));
console.log(`XOR of (0,0) (0,1) (1,0) (1,1): ${Array.from(await predicted.data()).join(' ')} (expected 0 1 1 0)`);
for (const t of [predicted, x, y, w1, b1, w2, b2]) t.dispose();
opt.dispose();
await closeGpu();
