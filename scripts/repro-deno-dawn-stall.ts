/**
 * Minimal reproduction of the Deno + Dawn stall (issue 7), with nothing but the npm package `webgpu`.
 *
 * While a mapAsync is pending, dawn.node polls its instance through globalThis.setImmediate, a new native
 * function per poll, back to back. This script makes GPU waits of a few seconds each (a heavy kernel,
 * lavapipe, one core) and prints, per read, the wait, the polls made during it and the process's RSS.
 * Run inside `deno test` (scripts/repro-deno-dawn-stall-test.ts), memory grows by about 1.2 KB a poll and
 * the second or third wait takes minutes (172.6 s, 100% CPU, GPU idle); the same script under `deno run`,
 * Node or Bun does not stall (about 50 bytes a poll). Measured 2026-12-02, deno 2.9.6, webgpu 0.6.2:
 *
 *   taskset -c 0 node_modules/.bin/deno test -A --no-check scripts/repro-deno-dawn-stall-test.ts             # stalls
 *   THROTTLE=1 taskset -c 0 node_modules/.bin/deno test -A --no-check scripts/repro-deno-dawn-stall-test.ts  # does not
 *   taskset -c 0 node_modules/.bin/deno run -A --no-check scripts/repro-deno-dawn-stall.ts                    # does not
 *
 * THROTTLE=1 turns Dawn's polls into 1 ms timers; PROJECT=1 opens Dawn through the project's findGpu()
 * (src/gpu/runtime.ts, which throttles them under Deno) instead, and counts only its unthrottled polls.
 * Environment: READS (default 8), DISPATCHES per read (default 400).
 */
import { create, globals } from 'webgpu';

type Schedule = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
const g = globalThis as unknown as Record<string, unknown> & { setImmediate: Schedule };
for (const [name, value] of Object.entries(globals)) if (!(name in g)) g[name] = value;
const env = (name: string, fallback: number) =>
  Number(
    (g.Deno as { env: { get(n: string): string | undefined } } | undefined)?.env.get(name) ??
      process.env[name] ??
      fallback,
  );
const rssMb = () =>
  ((g.Deno as { memoryUsage(): { rss: number } } | undefined)?.memoryUsage().rss ?? process.memoryUsage().rss) / 1e6;

let polls = 0;
const immediate = g.setImmediate;
const throttle = env('THROTTLE', 0) === 1;
g.setImmediate = (callback, ...args) => {
  polls++;
  return throttle ? setTimeout(callback, 1, ...args) : immediate(callback, ...args);
};

const instance =
  env('PROJECT', 0) === 1 ? (await import('../src/gpu/runtime.ts')).findGpu().then((entry) => entry.gpu) : create([]);
g.keepDawnInstance = instance; // Dawn destroys its instance when this object is garbage-collected
const adapter = await (await instance).requestAdapter();
if (!adapter) throw new Error('no WebGPU adapter');
const device = await adapter.requestDevice();
const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3u) {
  var x = a[i.x];
  for (var k = 0u; k < 256u; k++) { x = x * 0.999 + 1.0; }
  a[i.x] = x;
}`;
const pipeline = device.createComputePipeline({
  layout: 'auto',
  compute: { module: device.createShaderModule({ code }), entryPoint: 'main' },
});
const elements = 1 << 16;
const data = device.createBuffer({ size: elements * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
const staging = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const bindGroup = device.createBindGroup({
  layout: pipeline.getBindGroupLayout(0),
  entries: [{ binding: 0, resource: { buffer: data } }],
});
const reads = env('READS', 8);
const dispatches = env('DISPATCHES', 400);
console.log(
  `${env('PROJECT', 0) === 1 ? 'project' : throttle ? 'throttled' : 'setImmediate'} polling; ${reads} reads of ${dispatches} dispatches each`,
);
const start = performance.now();
for (let r = 0; r < reads; r++) {
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  for (let d = 0; d < dispatches; d++) pass.dispatchWorkgroups(elements / 64);
  pass.end();
  encoder.copyBufferToBuffer(data, 0, staging, 0, 16);
  device.queue.submit([encoder.finish()]);
  const t0 = performance.now();
  const p0 = polls;
  await staging.mapAsync(GPUMapMode.READ);
  staging.unmap();
  console.log(
    `read ${r + 1}: waited ${((performance.now() - t0) / 1000).toFixed(1)} s, ${polls - p0} polls, RSS ${rssMb().toFixed(0)} MB`,
  );
}
console.log(`total ${((performance.now() - start) / 1000).toFixed(1)} s, ${polls} polls`);
device.destroy();
