/**
 * Where one ODC training step spends its GPU time: every kernel of a convnet-s step (the demo's shape)
 * timed with timestamp queries, largest first.
 *   npx tsx bench/profile-step.ts [--batch 256]
 * Profiling gives each dispatch a compute pass of its own, so the total is a little above a real step's.
 */
import { initGpu } from '../src/gpu/device.ts';
import { adapterLine } from './common.ts';
import { convnetCase, prepareStep } from './train-step.ts';

const at = process.argv.indexOf('--batch');
const batch = at > 0 ? Number(process.argv[at + 1]) : 64;
const g = await initGpu();
console.log(adapterLine(g, false));
const { step, dispose } = await prepareStep(convnetCase(batch));
for (let i = 0; i < 2; i++) await step(); // compile every kernel and settle the pools first
await g.sync();
const start = performance.now();
const times = await g.profile(step);
const wall = performance.now() - start;
dispose();
const total = times.reduce((s, t) => s + t.ms, 0);
console.log(
  `batch ${batch}: ${wall.toFixed(1)} ms wall, ${total.toFixed(1)} ms in ${times.reduce((s, t) => s + t.calls, 0)} dispatches`,
);
console.log(`${'kernel'.padEnd(36)} ${'calls'.padStart(5)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`);
for (const t of times)
  console.log(
    `${t.kernel.padEnd(36)} ${String(t.calls).padStart(5)} ${t.ms.toFixed(2).padStart(9)} ${((100 * t.ms) / total).toFixed(1).padStart(5)}%`,
  );
process.exit(0);
