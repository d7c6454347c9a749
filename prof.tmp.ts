import { initGpu } from './src/gpu/device.ts';
import { prepareStep } from './bench/train-step.ts';
import { Tape } from './src/gpu/tape.ts';
const g = await initGpu();
const big = process.argv[2] === 'resnet18';
const c = big
  ? { name: 'resnet18', preset: 'cifar', size: 32, channels: 3 as const, batch: 512, k: 1000, n: 10000 }
  : { name: 'convnet-s 28x28 b256', preset: 'demo', size: 28, channels: 1 as const, batch: 256, k: 40, n: 2048 };
const { step, replay, memory } = await prepareStep(c, { replay: true });
const hist = memory.histogram();
const h = await hist.data();
const answer = (bytes: number) => {
  const out = new Uint32Array(bytes / 4);
  if (bytes === 4 * memory.k) out.set(h);
  else if (bytes === 16 + 4 * memory.k) out.set(h, 4);
  return out.buffer;
};
for (let i = 0; i < 5; i++) await g.recordOnly(step, answer);
const tape = (replay as unknown as { adopted: { tape: Tape } }).adopted.tape;
type E = { kind: string; kernel: { pipeline: GPUComputePipeline }; buffers: GPUBuffer[]; words: Uint32Array | null; x: number; y: number; z: number };
const entries = (tape as unknown as { entries: E[] }).entries.filter((e) => e.kind === 'launch');
const gg = g as unknown as { bindGroupFor: (p: GPUComputePipeline, u: GPUBuffer | null, b: GPUBuffer[], n: number) => { group: GPUBindGroup } };
const ubuf = g.device.createBuffer({ size: 65536, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
const groups = entries.map((e) => gg.bindGroupFor.call(g, e.kernel.pipeline, e.words ? ubuf : null, e.buffers, e.buffers.length).group);
const x = g.pool.acquire(c.batch * c.size * c.size * c.channels * 4), y = g.pool.acquire(c.batch * 4);
const R = 300;
const tReplay: number[] = [], tRaw: number[] = [];
const off = [0];
await g.recordOnly(async () => {
  for (let i = 0; i < R; i++) {
    let t = performance.now();
    tape.replay([x, y]);
    g.flush();
    tReplay.push(performance.now() - t);
    t = performance.now();
    let enc = g.device.createCommandEncoder();
    let pass = enc.beginComputePass();
    let last: GPUComputePipeline | null = null;
    for (let j = 0; j < entries.length; j++) {
      const e = entries[j];
      if (e.kernel.pipeline !== last) { pass.setPipeline(e.kernel.pipeline); last = e.kernel.pipeline; }
      if (e.words) { off[0] = (j % 200) * 256; pass.setBindGroup(0, groups[j], off); } else pass.setBindGroup(0, groups[j]);
      pass.dispatchWorkgroups(e.x, e.y, e.z);
      if (j % 64 === 63) { pass.end(); enc.finish(); enc = g.device.createCommandEncoder(); pass = enc.beginComputePass(); last = null; }
    }
    pass.end();
    enc.finish();
    tRaw.push(performance.now() - t);
  }
}, () => new ArrayBuffer(0));
const med = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
console.log(c.name, entries.length, 'launches; replay ms', med(tReplay).toFixed(3), 'µs/launch', (1000 * med(tReplay) / entries.length).toFixed(2),
  '| raw Dawn same launches ms', med(tRaw).toFixed(3), 'µs/launch', (1000 * med(tRaw) / entries.length).toFixed(2));
process.exit(0);
