/**
 * ODC on your own images, without labels: the script first writes a folder of small PNG pictures (three
 * kinds of pattern in random colours, as a stand-in for your photos), then loads it with the `folder:`
 * source, trains, and prints the loss and the range of cluster sizes.
 *
 *   bun examples/custom-dataset.ts  |  deno run -A examples/custom-dataset.ts  |  node dist/examples/custom-dataset.js
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initGpu, closeGpu, Rng } from 'odc-webgpu';
import { train, presetConfig, mergeConfig } from 'odc-webgpu/odc';
import { encodePng, loadDataset } from 'odc-webgpu/data';

const small = process.env.ODC_EXAMPLE_SMALL === '1';
const folder = process.env.ODC_EXAMPLE_OUT ? join(process.env.ODC_EXAMPLE_OUT, 'images') : 'runs/example-custom/images';
const count = small ? 120 : 600;
const side = 16;

// 1. a folder of RGB PNGs: horizontal stripes, vertical stripes or a centred square, in random colours
mkdirSync(folder, { recursive: true });
const rng = new Rng(7);
for (let i = 0; i < count; i++) {
  const kind = i % 3;
  const [r, g, b] = [rng.int(256), rng.int(256), rng.int(256)];
  const pixels = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const on = kind === 0 ? y % 4 < 2 : kind === 1 ? x % 4 < 2 : Math.abs(x - 7.5) < 4 && Math.abs(y - 7.5) < 4;
      pixels.set(on ? [r, g, b] : [255 - r, 255 - g, 255 - b], (y * side + x) * 3);
    }
  }
  writeFileSync(join(folder, `img-${String(i).padStart(4, '0')}.png`), encodePng(side, side, pixels, { colorType: 2 }));
}

// 2. load it (a flat folder has no labels; one sub-folder per class would give labels for evaluation)
await initGpu();
const dataset = await loadDataset(`folder:${folder}`);
console.log(
  `${dataset.name}: ${dataset.n} images ${dataset.height}x${dataset.width}x${dataset.channels}, labels: ${dataset.labels ? 'yes' : 'none'}`,
);

// 3. train ODC on it
const config = mergeConfig(presetConfig('demo'), {
  data: { source: 'folder', path: folder, limit: 0 },
  augment: 'cifar',
  optim: { epochs: small ? 1 : 5, batchSize: 24 },
  odc: { k: 6, minCluster: 3 },
});
const result = await train(config, { outDir: join(folder, '..', 'run'), dataset, quiet: true });
const last = result.epochs[result.epochs.length - 1];
console.log(
  `trained ${result.iterations} iterations: loss ${last.loss.toFixed(3)}, cluster sizes ${last.minCluster}..${last.maxCluster}`,
);
await closeGpu();
