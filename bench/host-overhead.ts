/**
 * The host's cost of recording a training step (issue 9): each step is recorded into command buffers that are
 * never submitted (Gpu.recordOnly), so lavapipe's execution on the same cores stays out of the timing, and the
 * GPU's state does not move. Reads still count, and are answered at once with what the same read returns on
 * the real state (the status word 0, the memory's real histogram: a common-path iteration, nothing small).
 *   npx tsx bench/host-overhead.ts [--steps 7] [--warmup 3] [--only convnet|resnet18]
 * Each case is measured twice in one process, its steps alternating: eager (every op's JavaScript runs) and
 * replayed (optim.replay: the model part re-issued from its tape, src/gpu/tape.ts; the rest of the step eager).
 * Prints per step, after warm-up (medians over the timed steps): dispatches, bind groups created, buffers
 * created, uniform bytes (the parameter blocks packed), blocking reads, host ms per step (wall; the process's CPU
 * time, all threads; the main thread's CPU time, Linux only), µs per dispatch (main thread where known, else
 * process), and the JavaScript heap bytes allocated per step (steps during which no garbage collection ran); then
 * the cost of the smallest dispatch (a one-binding fill) through the project's path against raw Dawn calls
 * (median of 7 rounds of 2,000).
 *   npx tsx bench/host-overhead.ts --by-kernel [--only resnet18]
 * instead records one step per case after warm-up and prints its dispatches per kernel (family.entry and template
 * values), most first: where fusion would cut dispatches.
 *   npx tsx bench/host-overhead.ts --run-ahead [--rounds 3] [--steps 4]
 * instead runs real convnet-s b256 steps (executed) in interleaved rounds, deciding each iteration at once
 * (keepOpen 0) or leaving its decision open while the next is recorded (keepOpen 1, the training loop), and
 * prints wall ms per step for each round.
 */
import { readFileSync } from 'node:fs';
import { gpu, initGpu, type Gpu } from '../src/gpu/device.ts';
import { entryModule } from '../src/gpu/shaders.ts';
import { elementwise } from '../src/kernels/elementwise.ts';
import { fillInPlace } from '../src/tensor/kernels.ts';
import { Tensor } from '../src/tensor/tensor.ts';
import type { OdcMemory } from '../src/odc/memory.ts';
import { adapterLine } from './common.ts';
import { prepareStep, type Case } from './train-step.ts';
import type { StepReplay } from '../src/odc/step.ts';
import type { Tape } from '../src/gpu/tape.ts';

const argValue = (name: string, fallback: string): string => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : fallback;
};

const CASES: Case[] = [
  { name: 'convnet-s 28x28 b256', preset: 'demo', size: 28, channels: 1, batch: 256, k: 40, n: 2048 },
  // N is scaled down from CIFAR's 50,000 to keep the set-up short: recording cost does not depend on N.
  { name: 'resnet18 cifar 32x32 b512', preset: 'cifar', size: 32, channels: 3, batch: 512, k: 1000, n: 10000 },
];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * CPU time of the calling (main) thread in ms, from Linux's /proc/thread-self/schedstat (nanoseconds on the CPU):
 * unlike the process's CPU time, it leaves out Dawn's and the garbage collector's helper threads, and unlike wall
 * time, the time other jobs hold the cores. The kernel adds a running thread's time to that file only at its ticks
 * and switches, so a bare read lags by up to a tick (4 ms at 250 Hz: a step that starts right after a sleep read
 * about 1 ms low on average); `process.cpuUsage()` (getrusage) brings the calling thread's time up to date first.
 * Null where there is no such file.
 */
function mainThreadCpuMs(): number | null {
  try {
    process.cpuUsage();
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return null;
  }
}

/** The main-thread CPU ms that a pair of `mainThreadCpuMs` reads costs by itself (median of 200 empty brackets). */
function mainThreadBracketMs(): number {
  const spans: number[] = [];
  for (let i = 0; i < 200; i++) {
    const a = mainThreadCpuMs();
    const b = mainThreadCpuMs();
    if (a === null || b === null) return 0;
    spans.push(b - a);
  }
  return median(spans);
}

/**
 * Counts garbage collections while it is on, where the runtime reports them as `gc` performance entries (Node);
 * null elsewhere (Bun's and Deno's heapUsed does not follow each allocation either), and then no heap column.
 */
function gcCounter(): { count: () => number; stop: () => void } | null {
  // a static property Node has and the DOM typings lack
  const supported = (PerformanceObserver as { supportedEntryTypes?: readonly string[] }).supportedEntryTypes;
  if (!supported?.includes('gc')) return null;
  let count = 0;
  const observer = new PerformanceObserver((list) => (count += list.getEntries().length));
  observer.observe({ entryTypes: ['gc'] });
  return { count: () => count, stop: () => observer.disconnect() };
}

/** Answers a read by its size: a [4] status word is 0 (no error), anything else is the memory's real histogram (and status) bytes. */
async function readAnswers(memory: OdcMemory): Promise<(bytes: number) => ArrayBuffer> {
  const hist = memory.histogram();
  const h = await hist.data();
  hist.dispose();
  return (bytes) => {
    const out = new Uint32Array(bytes / 4);
    if (bytes === 4 * memory.k) out.set(h);
    else if (bytes === 16 + 4 * memory.k) out.set(h, 4);
    else if (bytes !== 16) throw new Error(`host-overhead: no answer for a read of ${bytes} bytes`);
    return out.buffer;
  };
}

export interface StepCost {
  name: string;
  dispatches: number;
  bindGroups: number;
  buffersCreated: number;
  uniformBytes: number;
  blockingReads: number;
  /** Late reads (Gpu.readLater): the host records on while the GPU gets there. */
  lateReads: number;
  /** Wall milliseconds of recording one step. */
  hostMs: number;
  /** Process CPU milliseconds (user + system, all threads) of recording one step: unlike wall time, not inflated while other jobs hold the cores. */
  cpuMs: number;
  /** The main thread's CPU milliseconds of recording one step (null where unknown). */
  mainCpuMs: number | null;
  /** mainCpuMs (else cpuMs) per dispatch, in µs. */
  usPerDispatch: number;
  /** JavaScript heap bytes allocated per step (median over the steps with no garbage collection; null if none). */
  heapBytes: number | null;
}

/** What one recorded step cost (before the medians). */
type StepRow = Omit<StepCost, 'name' | 'usPerDispatch' | 'heapBytes'> & { heapBytes: number };

/** Records `step` once under recordOnly and measures it. */
async function measureStep(
  g: Gpu,
  step: () => Promise<void>,
  answer: (bytes: number) => ArrayBuffer,
  gcs: ReturnType<typeof gcCounter>,
): Promise<StepRow> {
  const before = { ...g.stats };
  // Let pending collections run first: the steps then start from the same place (a step waits on no timer).
  await new Promise((resolve) => setTimeout(resolve, 0));
  const gcBefore = gcs?.count();
  const heapBefore = process.memoryUsage().heapUsed;
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  const mainStart = mainThreadCpuMs();
  await g.recordOnly(step, answer);
  const mainEnd = mainThreadCpuMs();
  const hostMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuStart);
  const heapBytes = process.memoryUsage().heapUsed - heapBefore;
  // The gc entries of this step arrive asynchronously: wait for them before asking.
  await new Promise((resolve) => setTimeout(resolve, 0));
  const s = g.stats;
  return {
    dispatches: s.dispatches - before.dispatches,
    bindGroups: s.bindGroups - before.bindGroups,
    buffersCreated: s.buffersCreated - before.buffersCreated,
    uniformBytes: s.uniformBytes - before.uniformBytes,
    blockingReads: s.reads - before.reads,
    lateReads: s.lateReads - before.lateReads,
    hostMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    mainCpuMs: mainStart === null || mainEnd === null ? null : mainEnd - mainStart - bracketMs,
    heapBytes: gcs && gcs.count() === gcBefore ? heapBytes : -1,
  };
}

/** The medians of a case's measured steps. */
function summarize(name: string, rows: StepRow[]): StepCost {
  const pick = (f: (r: StepRow) => number) => median(rows.map(f));
  const cpuMs = pick((r) => r.cpuMs);
  const mainCpuMs = rows[0].mainCpuMs === null ? null : pick((r) => r.mainCpuMs!);
  const dispatches = pick((r) => r.dispatches);
  const collectionFree = rows.filter((r) => r.heapBytes >= 0).map((r) => r.heapBytes);
  return {
    name,
    dispatches,
    bindGroups: pick((r) => r.bindGroups),
    buffersCreated: pick((r) => r.buffersCreated),
    uniformBytes: pick((r) => r.uniformBytes),
    blockingReads: pick((r) => r.blockingReads),
    lateReads: pick((r) => r.lateReads),
    hostMs: pick((r) => r.hostMs),
    cpuMs,
    mainCpuMs,
    usPerDispatch: (1000 * (mainCpuMs ?? cpuMs)) / dispatches,
    heapBytes: collectionFree.length > 0 ? median(collectionFree) : null,
  };
}

/**
 * One case, its steps recorded alternately without and with replay (optim.replay: the model part replayed from its
 * tape) in one process, so both see the same machine: a row for each.
 */
async function measureCase(g: Gpu, c: Case, warmup: number, steps: number): Promise<StepCost[]> {
  const { step, dispose, memory, replay, parts } = await prepareStep(c, { replay: true });
  const modes = [
    { name: `${c.name} (eager)`, replay: null, rows: [] as StepRow[] },
    { name: `${c.name} (replayed)`, replay, rows: [] as StepRow[] },
  ];
  try {
    const answer = await readAnswers(memory);
    parts.replay = null;
    for (let i = 0; i < warmup; i++) await g.recordOnly(step, answer);
    // then replayed steps: the tape is adopted after two equal consecutive captures
    parts.replay = replay;
    for (let i = 0; i < warmup + 3 && replay!.counts.replayed < warmup; i++) await g.recordOnly(step, answer);
    if (replay!.counts.replayed === 0) throw new Error(`${c.name}: the step never replayed (run with ODC_DEBUG=1)`);
    // the replay itself (the model part's launches re-issued), timed by wrapping StepReplay.run
    const run = replay!.run;
    const replayMs: number[] = [];
    replay!.run = function (this: StepReplay, ...args) {
      const start = performance.now();
      const out = run.apply(this, args);
      replayMs.push(performance.now() - start);
      return out;
    };
    const gcs = gcCounter();
    const launchesBefore = g.stats.dispatches;
    try {
      for (let i = 0; i < steps; i++) {
        for (const m of modes) {
          parts.replay = m.replay;
          m.rows.push(await measureStep(g, step, answer, gcs));
        }
      }
    } finally {
      gcs?.stop();
      replay!.run = run;
    }
    const results = modes.map((m) => summarize(m.name, m.rows));
    const launches = replay!.tape!.launches;
    const floor = rawLaunchesMs(g, replay!.tape!, steps);
    const perLaunch = (ms: number) => ((1000 * ms) / launches).toFixed(1);
    console.log(
      `${c.name}: the replay of the model part (${launches} launches, ${replay!.counts.replayed} replays, ` +
        `${g.stats.dispatches - launchesBefore} dispatches in all measured steps) takes ${median(replayMs).toFixed(2)} ms ` +
        `wall per step (median), ${perLaunch(median(replayMs))} µs per launch; the same launches as raw Dawn calls ` +
        `(bind groups made once): ${floor.toFixed(2)} ms, ${perLaunch(floor)} µs per launch`,
    );
    return results;
  } finally {
    parts.replay = replay;
    dispose();
  }
}

/**
 * Wall ms (median of `rounds`) of issuing a tape's launches as raw WebGPU calls (setPipeline when it changes,
 * setBindGroup with groups made beforehand, dispatchWorkgroups, a new encoder every 64 launches, never submitted):
 * the floor for replaying them.
 */
function rawLaunchesMs(g: Gpu, tape: Tape, rounds: number): number {
  const device = g.device;
  const uniform = device.createBuffer({ size: 65536, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const launches = tape.launchList().map((l) => ({
    ...l,
    group: device.createBindGroup({
      layout: l.pipeline.getBindGroupLayout(0),
      entries: [
        ...(l.uniforms ? [{ binding: 0, resource: { buffer: uniform, offset: 0, size: 256 } }] : []),
        ...l.buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
      ],
    }),
  }));
  const offsets = [0];
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    let encoder = device.createCommandEncoder();
    let pass = encoder.beginComputePass();
    let pipeline: GPUComputePipeline | null = null;
    for (let i = 0; i < launches.length; i++) {
      const l = launches[i];
      if (l.pipeline !== pipeline) pass.setPipeline((pipeline = l.pipeline));
      if (l.uniforms) {
        offsets[0] = (i % 256) * 256;
        pass.setBindGroup(0, l.group, offsets);
      } else {
        pass.setBindGroup(0, l.group);
      }
      pass.dispatchWorkgroups(...l.workgroups);
      if (i % 64 === 63) {
        pass.end();
        encoder.finish();
        encoder = device.createCommandEncoder();
        pass = encoder.beginComputePass();
        pipeline = null;
      }
    }
    pass.end();
    encoder.finish();
    times.push(performance.now() - start);
  }
  uniform.destroy();
  return median(times);
}

/** µs per dispatch of the smallest kernel: the project's path, raw Dawn calls with one bind group, and with a bind group per dispatch. */
async function smallestDispatch(g: Gpu): Promise<{ project: number; rawOnce: number; rawEach: number }> {
  const ROUNDS = 7;
  const PER_ROUND = 2000;
  const target = Tensor.empty([1], 'f32');
  const device = g.device;
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: {
      module: device.createShaderModule({ code: entryModule('elementwise', 'fill', elementwise.fill.header) }),
      entryPoint: 'fill',
    },
  });
  const uniform = device.createBuffer({ size: 256, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const group = () =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: uniform, size: 16 } },
        { binding: 1, resource: { buffer: target.buffer } },
      ],
    });
  const once = group();
  const raw = (fresh: boolean): number => {
    const start = performance.now();
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    for (let i = 0; i < PER_ROUND; i++) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, fresh ? group() : once);
      pass.dispatchWorkgroups(1);
    }
    pass.end();
    encoder.finish();
    return (1000 * (performance.now() - start)) / PER_ROUND;
  };
  const project = async (): Promise<number> => {
    const start = performance.now();
    await g.recordOnly(
      async () => {
        for (let i = 0; i < PER_ROUND; i++) fillInPlace(target, i);
      },
      () => new ArrayBuffer(0),
    );
    return (1000 * (performance.now() - start)) / PER_ROUND;
  };
  await project(); // compiles the pipeline, warms the caches
  raw(false);
  const times = { project: [] as number[], rawOnce: [] as number[], rawEach: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    times.project.push(await project());
    times.rawOnce.push(raw(false));
    times.rawEach.push(raw(true));
  }
  target.dispose();
  uniform.destroy();
  return { project: median(times.project), rawOnce: median(times.rawOnce), rawEach: median(times.rawEach) };
}

/** Wall ms per executed step, rounds of `steps` alternating between deciding at once and running ahead. */
async function runAhead(g: Gpu, rounds: number, steps: number): Promise<void> {
  const { step, settle, dispose } = await prepareStep(CASES[0]);
  try {
    for (let i = 0; i < 2; i++) await step(); // compile, fill the pool
    await g.sync();
    const times: Record<string, number[]> = { 'at once (keepOpen 0)': [], 'run-ahead (keepOpen 1)': [] };
    for (let r = 0; r < rounds; r++) {
      for (const [name, keepOpen] of [
        ['at once (keepOpen 0)', 0],
        ['run-ahead (keepOpen 1)', 1],
      ] as const) {
        const start = performance.now();
        for (let i = 0; i < steps; i++) await step(keepOpen);
        await settle();
        await g.sync();
        times[name].push((performance.now() - start) / steps);
      }
    }
    console.log(`${CASES[0].name}, executed, wall ms per step in ${rounds} interleaved rounds of ${steps} steps:`);
    for (const [name, ms] of Object.entries(times))
      console.log(`  ${name}: ${ms.map((m) => m.toFixed(0)).join(', ')} (median ${median(ms).toFixed(0)})`);
  } finally {
    dispose();
  }
}

/** Dispatches of one recorded step per kernel label, counted by wrapping the recorder's one launch call. */
async function dispatchesByKernel(g: Gpu, c: Case, warmup: number): Promise<Map<string, number>> {
  const { step, dispose, memory } = await prepareStep(c);
  const counts = new Map<string, number>();
  const launch = g.dispatchResolved;
  try {
    const answer = await readAnswers(memory);
    for (let i = 0; i < warmup; i++) await g.recordOnly(step, answer);
    g.dispatchResolved = function (this: Gpu, kernel, ...rest) {
      counts.set(kernel.label, (counts.get(kernel.label) ?? 0) + 1);
      return launch.call(this, kernel, ...rest);
    };
    await g.recordOnly(step, answer);
  } finally {
    g.dispatchResolved = launch;
    dispose();
  }
  return counts;
}

const g = await initGpu();
/** What the main-thread clock's own reads cost, taken off every step's reading. */
const bracketMs = mainThreadBracketMs();
console.log(adapterLine(g, false));
if (process.argv.includes('--by-kernel')) {
  const only = argValue('--only', '');
  for (const c of CASES) {
    if (only && !c.name.startsWith(only)) continue;
    const counts = await dispatchesByKernel(g, c, Number(argValue('--warmup', '2')));
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    console.log(`${c.name}: ${total} dispatches in one recorded step`);
    for (const [label, n] of [...counts].sort((a, b) => b[1] - a[1]))
      console.log(`  ${String(n).padStart(4)}  ${label}`);
  }
  process.exit(0);
}
if (process.argv.includes('--run-ahead')) {
  await runAhead(g, Number(argValue('--rounds', '3')), Number(argValue('--steps', '4')));
  process.exit(0);
}
const steps = Number(argValue('--steps', '7'));
const warmup = Number(argValue('--warmup', '3'));
const only = argValue('--only', '');
const results: StepCost[] = [];
for (const c of CASES) if (!only || c.name.startsWith(only)) results.push(...(await measureCase(g, c, warmup, steps)));
console.log(
  `per step, recorded and not submitted; medians of ${steps} steps of each kind, eager and replayed alternately, after ${warmup} warm-up steps of each`,
);
console.log(
  '| step | dispatches | bind groups created | buffers created | uniform bytes | blocking reads | late reads | host ms/step (wall) | host ms/step (CPU) | host ms/step (main thread CPU) | µs/dispatch (CPU) | heap KB/step |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of results) {
  console.log(
    `| ${r.name} | ${r.dispatches} | ${r.bindGroups} | ${r.buffersCreated} | ${r.uniformBytes} | ${r.blockingReads} | ${r.lateReads} | ${r.hostMs.toFixed(2)} | ${r.cpuMs.toFixed(2)} | ${r.mainCpuMs?.toFixed(2) ?? 'n/a'} | ${r.usPerDispatch.toFixed(1)} | ${r.heapBytes === null ? 'n/a' : (r.heapBytes / 1024).toFixed(0)} |`,
  );
}
const small = await smallestDispatch(gpu());
console.log(
  `smallest dispatch (one-binding fill), µs: project path ${small.project.toFixed(1)}, raw Dawn with one bind group ${small.rawOnce.toFixed(1)}, ` +
    `raw Dawn with a bind group per dispatch ${small.rawEach.toFixed(1)} (median of 7 rounds of 2,000)`,
);
process.exit(0);
