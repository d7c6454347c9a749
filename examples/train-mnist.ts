/**
 * A training script as a user writes one: load the embedded MNIST digits, start from the "demo" preset,
 * override a few values, train ODC with a per-epoch callback that prints the NMI of the memory labels
 * against the digits, evaluate the frozen backbone, and export it for PyTorch as safetensors.
 * Ctrl-C stops after the current iteration with a checkpoint (the AbortSignal given to train).
 *
 *   bun examples/train-mnist.ts  |  deno run -A examples/train-mnist.ts  |  node dist/examples/train-mnist.js
 *   ODC_EXAMPLE_SMALL=1 ...      (a few hundred digits, one epoch: what CI runs on a CPU)
 */
import { initGpu, closeGpu } from 'odc-webgpu';
import { train, evaluate, exportBackbone, presetConfig, mergeConfig } from 'odc-webgpu/odc';
import { loadTrainingData } from 'odc-webgpu/data';

const small = process.env.ODC_EXAMPLE_SMALL === '1';
const outDir = process.env.ODC_EXAMPLE_OUT ?? 'runs/example-mnist';

const gpu = await initGpu();
console.log(`GPU: ${gpu.adapterName} (${gpu.implementation})`);

// the demo preset, with a few values changed; a wrong key or value is an error naming it
const config = mergeConfig(presetConfig('demo'), {
  data: { limit: small ? 320 : 4000 },
  optim: { epochs: small ? 1 : 3, batchSize: small ? 32 : 64 },
  odc: { k: small ? 10 : 40, minCluster: small ? 4 : 10 },
});
const dataset = await loadTrainingData(config); // the configured source and the seeded data.limit subset
console.log(`data: ${dataset.name}, ${dataset.n} images of ${dataset.height}x${dataset.width}`);

const stop = new AbortController();
process.once('SIGINT', () => stop.abort('SIGINT'));
const result = await train(config, {
  outDir,
  dataset,
  signal: stop.signal,
  quiet: true,
  onEpoch: (e) =>
    console.log(
      `epoch ${e.epoch + 1}: loss ${e.loss.toFixed(3)}, memory NMI ${e.nmi?.toFixed(3)}, clusters of ${e.minCluster}..${e.maxCluster}`,
    ),
});
console.log(
  `initial NMI ${result.initialNmi?.toFixed(3)}; ${result.iterations} iterations in ${result.seconds.toFixed(1)} s${result.interrupted ? ' (interrupted)' : ''}`,
);

if (!result.interrupted) {
  await evaluate(outDir, { baseline: !small, probeEpochs: small ? 2 : 30 }); // prints the table
  await exportBackbone({ runDir: outDir, out: `${outDir}/backbone.safetensors` });
}
await closeGpu();
