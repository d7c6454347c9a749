/**
 * Runs every benchmark module, prints one table and writes JSON.
 *   npx tsx bench/run.ts [--quick] [--only gemm,conv,odc,train,precision] [--out bench/out/results.json]
 * --quick is implied on CPU adapters (lavapipe), where full sizes would take hours.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { initGpu } from '../src/gpu/device.ts';
import { adapterLine, flagValue, printTable, quickSizes, type BenchOptions, type BenchRow } from './common.ts';

const MODULES: Record<string, () => Promise<{ run(o: BenchOptions): Promise<BenchRow[]> }>> = {
  gemm: () => import('./gemm.ts'),
  conv: () => import('./conv.ts'),
  odc: () => import('./odc.ts'),
  train: () => import('./train-step.ts'),
  precision: () => import('./precision.ts'),
};

const gpu = await initGpu();
const quick = quickSizes(gpu);
const only = (flagValue('only') ?? Object.keys(MODULES).join(',')).split(',');
const out = flagValue('out') ?? 'bench/out/results.json';
console.log(adapterLine(gpu, quick));
const rows: BenchRow[] = [];
for (const name of only) {
  const load = MODULES[name];
  if (!load) throw new Error(`unknown bench "${name}" (known: ${Object.keys(MODULES).join(', ')})`);
  const mod = await load();
  rows.push(...(await mod.run({ quick })));
}
printTable(rows);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  JSON.stringify(
    {
      adapter: gpu.adapterName,
      implementation: gpu.implementation,
      runtime: gpu.runtime,
      quick,
      date: new Date().toISOString(),
      rows,
    },
    null,
    2,
  ),
);
console.log(`wrote ${out}`);
