import { initGpu } from './src/gpu/device.ts';
const g = await initGpu();
const d = g.device;
const t0 = performance.now();
const log = (s: string) => console.log(`${(performance.now() - t0).toFixed(0)}ms ${s}`);
d.lost.then((i) => log(`lost: reason=${i.reason} message=${JSON.stringify(i.message)}`));
d.addEventListener('uncapturederror', (e) => log(`uncaptured: ${(e as GPUUncapturedErrorEvent).error.constructor.name}: ${(e as GPUUncapturedErrorEvent).error.message.slice(0, 200)}`));
const b = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const mode = (globalThis as any).Deno ? (globalThis as any).Deno.args[0] : process.argv[2];
if (mode === 'pending') {
  // destroy while a map is pending
  const p = b.mapAsync(GPUMapMode.READ).then(() => log('pending map resolved'), (e) => log(`pending map rejected: ${e?.name}: ${e?.message}`));
  d.destroy();
  log('destroyed');
  await Promise.race([p, new Promise((r) => setTimeout(r, 5000))]);
} else {
  d.destroy();
  log('destroyed');
  await new Promise((r) => setTimeout(r, 100));
}
const b2 = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
log('createBuffer after destroy ok');
const m = b2.mapAsync(GPUMapMode.READ).then(() => log('map after destroy resolved'), (e) => log(`map after destroy rejected: ${e?.name}: ${e?.message}`));
const w = d.queue.onSubmittedWorkDone().then(() => log('workdone resolved'), (e) => log(`workdone rejected: ${e?.message}`));
try { d.queue.submit([d.createCommandEncoder().finish()]); log('submit ok'); } catch (e) { log(`submit threw ${e}`); }
const big = d.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE });
await Promise.race([Promise.all([m, w]), new Promise((r) => setTimeout(() => { log('TIMEOUT waiting for map/workdone'); r(0); }, 5000))]);
log('end');
process.exit(0);
