/**
 * Backbone weights to and from PyTorch, as safetensors files with PyTorch's names and layouts.
 *
 * Out (`saveWeights`, `odc export`): conv weights transposed to OIHW, BN weight/bias/running_mean/running_var
 * plus num_batches_tracked (int64), and metadata naming the torchvision constructor and the edits that make
 * its module match (`fc = nn.Identity()`; for the CIFAR stem a 3x3 stride-1 conv1 and `maxpool = nn.Identity()`).
 *
 * In (`loadWeights`, `odc train --init-from`): this project's exports and torchvision ResNet state dicts
 * (converted from .pth with the one Python line in the README). The classifier `fc.*` and
 * `num_batches_tracked` are skipped, a `module.` or `backbone.` prefix is dropped; every other name must
 * match, with the same shape (OIHW for convs) and dtype F32. Any difference is one error listing what
 * differs, before anything is written: never a partial load.
 */
import { gpu } from '../gpu/device.ts';
import type { Module } from '../nn/module.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { Backbone, type BackboneName, type Stem } from '../models/backbones.ts';
import {
  fromOIHW,
  readSafetensors,
  toOIHW,
  writeSafetensors,
  type ReadTensor,
  type SafeTensor,
} from './safetensors.ts';

/** The torchvision constructor of each backbone (convnet-s has none: its module is in the README). */
const TORCHVISION: Record<BackboneName, string | null> = {
  'convnet-s': null,
  resnet18: 'torchvision.models.resnet18',
  resnet50: 'torchvision.models.resnet50',
};

/** What makes a torchvision module load an export with strict=True and compute the same features. */
export function torchvisionEdits(backbone: BackboneName, stem: Stem): string[] {
  if (backbone === 'convnet-s') return [];
  const edits = ['model.fc = torch.nn.Identity()'];
  if (stem === 'cifar')
    edits.unshift(
      'model.conv1 = torch.nn.Conv2d(IN_CHANNELS, 64, 3, 1, 1, bias=False)',
      'model.maxpool = torch.nn.Identity()',
    );
  else
    edits.unshift('model.conv1 = torch.nn.Conv2d(IN_CHANNELS, 64, 7, 2, 3, bias=False)  # only when IN_CHANNELS != 3');
  return edits;
}

/** The metadata an export carries: format, backbone, stem, input channels, torchvision constructor and edits. */
export function exportMetadata(backbone: BackboneName, stem: Stem, inChannels: number): Record<string, string> {
  const constructor = TORCHVISION[backbone];
  return {
    format: 'pt',
    source: 'odc-webgpu',
    backbone,
    stem,
    in_channels: String(inChannels),
    torchvision: constructor
      ? `${constructor}(weights=None)`
      : 'none (convnet-s: see the README for its PyTorch module)',
    torchvision_edits: JSON.stringify(
      torchvisionEdits(backbone, stem).map((e) => e.replace('IN_CHANNELS', String(inChannels))),
    ),
  };
}

/** The backbone of `model`: an OdcModel's `backbone`, or the module itself. */
function backboneOf(model: Module): Module {
  const inner = (model as { backbone?: unknown }).backbone;
  return inner instanceof Backbone ? inner : model;
}

/** The PyTorch state dict of a backbone (names, OIHW conv weights, BN statistics, num_batches_tracked = `steps`). */
export async function backboneStateDict(model: Module, steps = 0): Promise<Record<string, SafeTensor>> {
  const backbone = backboneOf(model);
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, p] of backbone.namedParameters()) {
    const data = await p.data();
    const converted = p.rank === 4 ? toOIHW(data, p.shape) : { data, shape: [...p.shape] };
    tensors[name] = { dtype: 'F32', shape: converted.shape, data: converted.data };
  }
  for (const [name, b] of backbone.namedBuffers()) {
    tensors[name] = { dtype: 'F32', shape: [...b.shape], data: await b.data() };
    if (name.endsWith('running_var'))
      tensors[name.replace(/running_var$/, 'num_batches_tracked')] = {
        dtype: 'I64',
        shape: [],
        data: BigInt64Array.of(BigInt(steps)),
      };
  }
  return tensors;
}

/** Writes the backbone of `model` to `file` (safetensors, PyTorch names and layouts) with `metadata`. */
export async function saveWeights(
  model: Module,
  file: string,
  metadata: Record<string, string> = {},
  steps = 0,
): Promise<number> {
  const tensors = await backboneStateDict(model, steps);
  await writeSafetensors(file, tensors, metadata);
  return Object.keys(tensors).length;
}

/** Names a PyTorch state dict has that a backbone does not hold: the classifier and BN's step counter. */
function skipped(name: string): boolean {
  return name === 'fc.weight' || name === 'fc.bias' || name.endsWith('.num_batches_tracked');
}

function describe(dtype: string, shape: readonly number[]): string {
  return `${dtype} [${shape.join(', ')}]`;
}

function firstFew(items: string[], count = 5): string {
  return items.slice(0, count).join('; ') + (items.length > count ? `; ... (${items.length - count} more)` : '');
}

export interface LoadWeightsReport {
  /** Tensors written into the model. */
  loaded: number;
  /** File tensors deliberately not used (fc.*, num_batches_tracked). */
  skipped: string[];
  metadata: Record<string, string>;
}

/**
 * Loads a backbone's weights from a safetensors file with PyTorch names and layouts into `model` (an OdcModel's
 * backbone, or a backbone). Throws one error naming the file and listing the missing, unexpected and
 * mismatched tensors (expected vs found) when the file does not match; nothing is written then.
 */
export async function loadWeights(model: Module, file: string): Promise<LoadWeightsReport> {
  const { tensors, metadata } = await readSafetensors(file);
  const backbone = backboneOf(model);
  const expected = new Map<string, { tensor: Tensor<'f32'>; torchShape: number[]; conv: boolean }>();
  for (const [name, p] of [...backbone.namedParameters(), ...backbone.namedBuffers()]) {
    const conv = p.rank === 4;
    const torchShape = conv ? [p.shape[3], p.shape[2], p.shape[0], p.shape[1]] : [...p.shape];
    expected.set(name, { tensor: p, torchShape, conv });
  }
  const found = new Map<string, ReadTensor>();
  const skippedNames: string[] = [];
  for (const [raw, t] of Object.entries(tensors)) {
    const name = raw.replace(/^module\./, '').replace(/^backbone\./, '');
    if (!expected.has(name) && skipped(name)) skippedNames.push(raw);
    else found.set(name, t);
  }
  const missing = [...expected.keys()].filter((name) => !found.has(name));
  const unexpected = [...found.keys()].filter((name) => !expected.has(name));
  const mismatched: string[] = [];
  for (const [name, want] of expected) {
    const t = found.get(name);
    if (!t) continue;
    if (
      t.dtype !== 'F32' ||
      t.shape.length !== want.torchShape.length ||
      t.shape.some((v, i) => v !== want.torchShape[i])
    ) {
      mismatched.push(`${name}: expected ${describe('F32', want.torchShape)}, found ${describe(t.dtype, t.shape)}`);
    }
  }
  if (missing.length + unexpected.length + mismatched.length > 0) {
    const parts: string[] = [];
    if (mismatched.length) parts.push(`${mismatched.length} with another shape or dtype (${firstFew(mismatched)})`);
    if (missing.length) parts.push(`${missing.length} missing (${firstFew(missing)})`);
    if (unexpected.length) parts.push(`${unexpected.length} unexpected (${firstFew(unexpected)})`);
    const fileModel = metadata.backbone
      ? ` The file says backbone ${metadata.backbone}${metadata.stem ? `, stem ${metadata.stem}` : ''}.`
      : '';
    throw new Error(
      `${file}: the weights do not match the model's ${backbone.constructor.name} backbone: ${parts.join('; ')}.${fileModel} ` +
        'Pick the backbone, stem and input channels the weights were trained with (model.backbone, model.stem; conv1 holds the input channels); nothing was loaded.',
    );
  }
  for (const [name, want] of expected) {
    const t = found.get(name)!;
    const data = want.conv ? fromOIHW(t.data as Float32Array, t.shape).data : (t.data as Float32Array);
    gpu().write(want.tensor.buffer, data);
  }
  return { loaded: expected.size, skipped: skippedNames, metadata };
}
