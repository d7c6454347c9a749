/**
 * Writes what scripts/pytorch/check.py loads into PyTorch: for convnet-s and ResNet-18/50 with either stem,
 * the backbone's weights as `odc export` writes them (random weights and BN statistics), and a fixed input
 * with this engine's eval-mode features of it.
 *   npx tsx scripts/pytorch-fixture.ts OUT_DIR
 * With --verify, the other way: loads OUT_DIR/torchvision-resnet18.safetensors (a torchvision state dict that
 * check.py wrote) with loadWeights and compares the features of its input with PyTorch's.
 *   npx tsx scripts/pytorch-fixture.ts --verify OUT_DIR
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  initGpu,
  closeGpu,
  gpu,
  noGrad,
  tidy,
  Tensor,
  Rng,
  createBackbone,
  saveWeights,
  loadWeights,
  exportMetadata,
  readSafetensors,
  writeSafetensors,
  type BackboneName,
  type Stem,
} from '../src/index.ts';

const verify = process.argv[2] === '--verify';
const out = process.argv[verify ? 3 : 2];
if (!out) throw new Error('usage: scripts/pytorch-fixture.ts [--verify] OUT_DIR');
mkdirSync(out, { recursive: true });
await initGpu();
if (verify) {
  const backbone = createBackbone('resnet18', 3, 'imagenet', new Rng(5));
  const report = await loadWeights(backbone, join(out, 'torchvision-resnet18.safetensors'));
  const { tensors } = await readSafetensors(join(out, 'torchvision-resnet18.io.safetensors'));
  const [n, channels, side] = tensors.input.shape;
  const nchw = tensors.input.data as Float32Array;
  const nhwc = new Float32Array(nchw.length);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++)
        for (let c = 0; c < channels; c++) {
          nhwc[((i * side + y) * side + x) * channels + c] = nchw[((i * channels + c) * side + y) * side + x];
        }
  backbone.eval();
  const input = Tensor.from(nhwc, [n, side, side, channels]);
  const features = await noGrad(() => tidy(() => backbone.forward(input))).data();
  const want = tensors.features.data as Float32Array;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    diff += (features[i] - want[i]) ** 2;
    norm += want[i] ** 2;
  }
  const relative = Math.sqrt(diff / norm);
  console.log(
    `torchvision resnet18 -> loadWeights: ${report.loaded} tensors, skipped ${report.skipped.filter((s) => s.startsWith('fc.')).join(', ')}; ||difference|| / ||features|| = ${relative.toExponential(2)}`,
  );
  if (!(relative < 1e-4))
    throw new Error("the engine's features of the loaded torchvision weights differ from PyTorch's");
  await closeGpu();
  process.exit(0);
}
const cases: Array<[BackboneName, Stem, number, number]> = [
  ['convnet-s', 'cifar', 1, 16],
  ['resnet18', 'cifar', 3, 8],
  ['resnet18', 'imagenet', 3, 32],
  ['resnet50', 'cifar', 3, 8],
];
for (const [name, stem, channels, side] of cases) {
  const rng = new Rng(1);
  const backbone = createBackbone(name, channels, stem, rng);
  for (const [buffer, b] of backbone.namedBuffers()) {
    gpu().write(
      b.buffer,
      Float32Array.from({ length: b.size }, () =>
        buffer.endsWith('running_var') ? 0.5 + rng.uniform() : 0.1 * rng.normal(),
      ),
    );
  }
  const id = `${name}-${stem}`;
  await saveWeights(backbone, join(out, `${id}.safetensors`), exportMetadata(name, stem, channels), 1);
  const n = 2;
  const nhwc = Float32Array.from({ length: n * side * side * channels }, () => rng.uniform());
  const nchw = new Float32Array(nhwc.length);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < side; y++)
      for (let x = 0; x < side; x++)
        for (let c = 0; c < channels; c++) {
          nchw[((i * channels + c) * side + y) * side + x] = nhwc[((i * side + y) * side + x) * channels + c];
        }
  backbone.eval();
  const input = Tensor.from(nhwc, [n, side, side, channels]);
  const features = noGrad(() => tidy(() => backbone.forward(input)));
  await writeSafetensors(
    join(out, `${id}.io.safetensors`),
    {
      input: { dtype: 'F32', shape: [n, channels, side, side], data: nchw },
      features: { dtype: 'F32', shape: [...features.shape], data: await features.data() },
    },
    { backbone: name, stem, in_channels: String(channels) },
  );
  for (const t of [input, features]) t.dispose();
  backbone.dispose();
  console.log(`wrote ${id}`);
}
await closeGpu();
