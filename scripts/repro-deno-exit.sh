#!/usr/bin/env bash
# Minimal reproduction of a heap corruption at exit under `deno test` with Deno's built-in WebGPU (wgpu,
# here on Mesa lavapipe, Deno 2.9.6): plain WebGPU, nothing from this project. Test files open a device and
# run a few compute passes; sometimes the process aborts at exit, after printing "ok | N passed", with
# `corrupted size vs. prev_size in fastbins` or `double free or corruption (fasttop)` (SIGABRT).
# Core dumps show the main thread in exit() -> _dl_fini, running the destructors of Mesa's GL libraries
# (libGLdispatch, libEGL_mesa, libgallium: wgpu loads them for its OpenGL backend beside the Vulkan one),
# while a Rust thread that is ending finds its malloc arena corrupted. Measured with this test body (2
# cores, shared with other jobs):
# MODE files 2 crashes in 15 runs, teardown 1 in 20, one-file 1 in 31. With DENO_WEBGPU_BACKEND=vulkan
# wgpu loads no GL library and the crash has not been seen (the project sets it: src/gpu/runtime.ts).
#   bash scripts/repro-deno-exit.sh [RUNS] [MODE]                            # counts the runs that crashed
#   DENO_WEBGPU_BACKEND=vulkan bash scripts/repro-deno-exit.sh [RUNS] [MODE]
# MODE: files (default: 20 files, each in a runtime and wgpu instance of its own, leaving its last work in
# flight and destroying nothing), teardown (the same, but each file waits for its queue and destroys its
# buffers and its device: still crashes), one-file (a single such file: crashes less often).
set -uo pipefail
runs=${1:-20} mode=${2:-files}
deno=$(cd "$(dirname "$0")/.." && pwd)/node_modules/.bin/deno
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/work.ts" <<'TS'
export async function gpuWork(teardown: boolean): Promise<void> {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter');
  const device = await adapter.requestDevice();
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3u) { if (id.x < arrayLength(&a)) { a[id.x] = a[id.x] * 1.5 + 1.0; } }`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const n = 1 << 16;
  const buffers: GPUBuffer[] = [];
  const run = (buffer: GPUBuffer, dispatches: number) => {
    const bindGroup = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < dispatches; i++) pass.dispatchWorkgroups(n / 64);
    pass.end();
    device.queue.submit([encoder.finish()]);
  };
  for (let round = 0; round < 10; round++) {
    const buffer = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
    buffers.push(buffer);
    run(buffer, 16);
    const staging = device.createBuffer({ size: 256, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, 256);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    staging.unmap();
    if (round % 2) staging.destroy();
  }
  run(buffers[0], 64);
  if (teardown) {
    await device.queue.onSubmittedWorkDone();
    for (const buffer of buffers) buffer.destroy();
    device.destroy();
  }
}
TS
case $mode in
  files | teardown)
    for i in $(seq -w 1 20); do
      printf "import { test } from 'node:test';\nimport { gpuWork } from './work.ts';\ntest('gpu work', () => gpuWork(%s));\n" "$([ "$mode" = teardown ] && echo true || echo false)" >"$dir/t$i.test.ts"
    done
    ;;
  one-file) printf "import { test } from 'node:test';\nimport { gpuWork } from './work.ts';\ntest('gpu work', () => gpuWork(false));\n" >"$dir/t.test.ts" ;;
  *) echo "MODE is files, teardown or one-file" >&2; exit 2 ;;
esac
crashed=0
for ((i = 1; i <= runs; i++)); do
  out=$(cd "$dir" && "$deno" test -A --no-check . 2>&1)
  rc=$?
  if [ $rc != 0 ]; then
    crashed=$((crashed + 1))
    echo "run $i: exit $rc: $(grep -E -m1 'corrupt|double free|malloc|free\(\)|panicked|Segmentation' <<<"$out")"
  else
    echo "run $i: ok"
  fi
done
echo "$mode: $crashed of $runs runs crashed"
[ $crashed = 0 ]
