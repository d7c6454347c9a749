/**
 * Bit-identity probe for engine changes that must not move a seeded run: 3 ODC iterations each of resnet18
 * (CIFAR preset, 16x16, batch 16) and convnet-s (demo preset, 28x28, batch 32) through bench/train-step.ts's
 * prepareStep, then a sha-256 of the memory's features, labels and centroids per case.
 *   npx tsx scripts/step-hash.ts [TREE]
 * TREE (default: this checkout) is the root of the tree whose src/ and bench/ run, so a base worktree is probed
 * by the same script: equal hashes in both trees mean the same numbers.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Device from '../src/gpu/device.ts';
import type * as TrainStep from '../bench/train-step.ts';

const root = pathToFileURL(resolve(process.argv[2] ?? resolve(import.meta.dirname ?? '.', '..'))).href;
const { initGpu } = (await import(`${root}/src/gpu/device.ts`)) as typeof Device;
const { prepareStep } = (await import(`${root}/bench/train-step.ts`)) as typeof TrainStep;
await initGpu();
const cases = [
  { name: 'resnet18', preset: 'cifar', size: 16, channels: 3 as const, batch: 16, k: 4, n: 128 },
  { name: 'convnet-s', preset: 'demo', size: 28, channels: 1 as const, batch: 32, k: 4, n: 128 },
];
for (const c of cases) {
  const { step, settle, dispose, memory } = await prepareStep(c);
  for (let i = 0; i < 3; i++) await step();
  await settle();
  const hash = createHash('sha256');
  hash.update(Buffer.from((await memory.featuresData()).buffer));
  hash.update(Buffer.from((await memory.labels.data()).buffer));
  hash.update(Buffer.from((await memory.centroids.data()).buffer));
  console.log(c.name, hash.digest('hex').slice(0, 16));
  dispose();
}
process.exit(0);
