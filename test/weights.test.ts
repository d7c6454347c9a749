/**
 * Backbone weights both ways (src/io/weights.ts): export -> import restores every parameter and BN
 * statistic bit for bit; a torchvision-layout state dict (classifier fc.*, num_batches_tracked) loads; a
 * mismatched file is one error listing what differs and writes nothing; `train` with initFrom starts from
 * the file's weights. Loading into PyTorch itself: scripts/pytorch-check.py (CI, where torch is installed).
 */
import { test, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assert, setupGpu } from './helpers.ts';
import { gpu } from '../src/gpu/device.ts';
import { ConvNetS, ResNet, type Backbone } from '../src/models/backbones.ts';
import { Rng } from '../src/util/rng.ts';
import { backboneStateDict, exportMetadata, loadWeights, saveWeights } from '../src/io/weights.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { train } from '../src/odc/trainer.ts';
import { loadCheckpoint } from '../src/odc/checkpoint.ts';
import { buildModel } from '../src/odc/build.ts';
import { syntheticDataset, tinyConfig } from './train-fixtures.ts';

before(async () => {
  await setupGpu();
});

/** Every parameter and buffer of a module, by name, as raw bits. */
async function snapshot(m: Backbone): Promise<Map<string, Uint32Array>> {
  const out = new Map<string, Uint32Array>();
  for (const [name, t] of [...m.namedParameters(), ...m.namedBuffers()])
    out.set(name, new Uint32Array((await t.data()).buffer));
  return out;
}

/** Random BN statistics, so the round trip covers buffers with values other than their init. */
function randomizeBuffers(m: Backbone, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, b] of m.namedBuffers())
    gpu().write(
      b.buffer,
      Float32Array.from({ length: b.size }, () => (name.endsWith('running_var') ? 0.5 + rng.uniform() : rng.normal())),
    );
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'odc-weights-'));
}

test('export -> import restores every parameter and BN statistic bit for bit (convnet-s, resnet18)', async () => {
  const dir = tempDir();
  try {
    for (const [make, backbone, stem] of [
      [(r: Rng) => new ConvNetS(1, r), 'convnet-s', 'cifar'],
      [(r: Rng) => new ResNet(18, 3, 'cifar', r), 'resnet18', 'cifar'],
    ] as const) {
      const source = make(new Rng(1));
      randomizeBuffers(source, 2);
      const file = join(dir, `${backbone}-${stem}.safetensors`);
      await saveWeights(source, file, exportMetadata(backbone, stem, 3), 7);
      const target = make(new Rng(99));
      const report = await loadWeights(target, file);
      const [a, b] = [await snapshot(source), await snapshot(target)];
      assert.equal(report.loaded, a.size);
      for (const [name, bits] of a) assert.deepEqual(b.get(name), bits, `${backbone}/${stem} ${name}`);
      const { metadata, tensors } = await readSafetensors(file);
      assert.equal(metadata.backbone, backbone);
      if (backbone !== 'convnet-s') {
        assert.equal(metadata.torchvision, `torchvision.models.${backbone}(weights=None)`);
        const edits = JSON.parse(metadata.torchvision_edits) as string[];
        assert.ok(edits.includes('model.fc = torch.nn.Identity()'));
        assert.equal(edits.includes('model.maxpool = torch.nn.Identity()'), stem === 'cifar');
      }
      const tracked = Object.keys(tensors).filter((k) => k.endsWith('num_batches_tracked'));
      assert.ok(
        tracked.length > 0 &&
          tracked.every((k) => tensors[k].dtype === 'I64' && (tensors[k].data as BigInt64Array)[0] === 7n),
      );
      source.dispose();
      target.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a torchvision-layout resnet18 state dict (fc classifier, num_batches_tracked, module. prefix) loads; fc is skipped', async () => {
  const dir = tempDir();
  try {
    const source = new ResNet(18, 3, 'imagenet', new Rng(3));
    randomizeBuffers(source, 4);
    const sd = await backboneStateDict(source, 0);
    const torchvision = Object.fromEntries(Object.entries(sd).map(([k, v]) => [`module.${k}`, v]));
    torchvision['module.fc.weight'] = { dtype: 'F32', shape: [1000, 512], data: new Float32Array(512_000).fill(0.01) };
    torchvision['module.fc.bias'] = { dtype: 'F32', shape: [1000], data: new Float32Array(1000) };
    const file = join(dir, 'resnet18-torchvision.safetensors');
    await writeSafetensors(file, torchvision);
    const target = new ResNet(18, 3, 'imagenet', new Rng(5));
    const report = await loadWeights(target, file);
    assert.ok(report.skipped.includes('module.fc.weight') && report.skipped.includes('module.fc.bias'));
    const [a, b] = [await snapshot(source), await snapshot(target)];
    for (const [name, bits] of a) assert.deepEqual(b.get(name), bits, name);
    // the same file against the CIFAR stem: one error naming conv1's shapes
    const cifar = new ResNet(18, 3, 'cifar', new Rng(6));
    await assert.rejects(
      loadWeights(cifar, file),
      /resnet18-torchvision\.safetensors: .*conv1\.weight: expected F32 \[64, 3, 3, 3\], found F32 \[64, 3, 7, 7\].*nothing was loaded/,
    );
    for (const m of [source, target, cifar]) m.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file for another backbone, input or dtype is one error listing the differences, and nothing is loaded', async () => {
  const dir = tempDir();
  try {
    const gray = new ConvNetS(1, new Rng(6));
    const file = join(dir, 'convnet-gray.safetensors');
    await saveWeights(gray, file, exportMetadata('convnet-s', 'cifar', 1));
    const rgb = new ConvNetS(3, new Rng(7));
    randomizeBuffers(rgb, 8);
    const before = await snapshot(rgb);
    await assert.rejects(loadWeights(rgb, file), (err: Error) => {
      assert.match(err.message, /convnet-gray\.safetensors: the weights do not match/);
      assert.match(err.message, /features\.0\.weight: expected F32 \[32, 3, 3, 3\], found F32 \[32, 1, 3, 3\]/);
      assert.match(err.message, /backbone convnet-s, stem cifar/);
      assert.match(err.message, /nothing was loaded/);
      return true;
    });
    assert.deepEqual(await snapshot(rgb), before, 'no partial load: the matching tensors were not written either');
    const r18 = new ResNet(18, 1, 'cifar', new Rng(9));
    await assert.rejects(
      loadWeights(r18, file),
      /100 missing \(conv1\.weight; .*\(95 more\)\); 20 unexpected \(features\.0\.weight; .*\(15 more\)\)/,
    );
    const sd = await backboneStateDict(gray);
    sd['features.1.weight'] = { dtype: 'I32', shape: [32], data: new Int32Array(32) };
    await writeSafetensors(file, sd);
    await assert.rejects(loadWeights(gray, file), /features\.1\.weight: expected F32 \[32\], found I32 \[32\]/);
    for (const m of [gray, rgb, r18]) m.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('train with initFrom starts from the file: a run stopped before its first step holds exactly those weights', async () => {
  const dir = tempDir();
  try {
    const config = tinyConfig();
    const source = new ConvNetS(1, new Rng(11));
    randomizeBuffers(source, 12);
    const file = join(dir, 'init.safetensors');
    await saveWeights(source, file, exportMetadata('convnet-s', 'cifar', 1));
    const out = join(dir, 'run');
    await train(config, {
      outDir: out,
      dataset: syntheticDataset(),
      initFrom: file,
      stopAfterIterations: 0,
      quiet: true,
    });
    const ckpt = await loadCheckpoint(out);
    const model = buildModel(config, 1, new Rng(0));
    ckpt.restore(model, null)?.dispose();
    const [a, b] = [await snapshot(source), await snapshot(model.backbone)];
    for (const [name, bits] of a) assert.deepEqual(b.get(name), bits, name);
    model.dispose();
    source.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
