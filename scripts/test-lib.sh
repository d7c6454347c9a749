# How the suite runs under each runtime, shared by scripts/test-all.sh and scripts/stress.sh (sourced).
# Runtimes: node (Dawn), bun (Dawn), deno (Dawn), deno-builtin (Deno's own WebGPU, wgpu).

bin=node_modules/.bin

# Which test files each runtime runs (item 9 of issue 7: test time stays bounded as variants multiply).
# Node with Dawn runs every file: the full sweep. Bun, Deno with Dawn and Deno's own WebGPU run the core
# files, enough to cover each runtime/WebGPU pair end to end: device creation and the no-adapter path,
# matmul, conv and the loss forward and backward against the float64 reference, a conv-bn-relu-pool-linear
# network trained step by step against it, the ODC memory, and a short training run with checkpoints and a
# bit-exact resume; and the reliability paths whose behaviour is the runtime's or the WebGPU implementation's
# own (signals, native stderr, device loss, out-of-memory reports, named pipes and other bad inputs).
# ODC_TEST_FILES (space-separated paths) replaces the list for every runtime.
CORE_TEST_FILES='test/no-adapter.test.ts test/kernels.test.ts test/matmul.test.ts test/conv.test.ts test/loss.test.ts test/composed.test.ts
  test/odc_memory.test.ts test/train.test.ts test/interrupt.test.ts test/quiet.test.ts test/device-faults.test.ts
  test/bad-inputs.test.ts test/host-cost.test.ts test/streaming.test.ts test/replay.test.ts'

# suite_files RUNTIME: the test files RUNTIME runs, space-separated.
suite_files() {
  if [ -n "${ODC_TEST_FILES:-}" ]; then
    echo $ODC_TEST_FILES
  elif [ "$1" = node ]; then
    echo test/*.test.ts
  else
    echo $CORE_TEST_FILES
  fi
}

# run_tests RUNTIME FILE...: runs the files under RUNTIME's test runner; the exit status is the runner's.
run_tests() {
  local runtime=$1
  shift
  case $runtime in
    node) node --import tsx --test --test-concurrency=1 "$@" ;;
    bun) "$bin/bun" test --timeout 900000 "$@" ;;
    # Deno with Dawn gets a process per file, as Node's runner gives itself. Inside `deno test` such a
    # process stalled for minutes after long GPU waits (Dawn's back-to-back setImmediate polls; worked
    # around in src/gpu/runtime.ts, reproduced by scripts/repro-deno-dawn-stall.ts); one process for all
    # files passed 3 of 3 runs with the workaround, too few to give up the isolation. A file whose process
    # dies by a signal says so in the log, for crash_reason.
    deno)
      local f rc=0 code
      for f in "$@"; do
        ODC_WEBGPU='' "$bin/deno" test -A --no-check "$f"
        code=$?
        if [ $code -gt 128 ]; then echo "odc-test: $f: signal SIG$(kill -l $((code - 128)) 2>/dev/null || echo $((code - 128)))"; fi
        [ $code = 0 ] || rc=1
      done
      return $rc
      ;;
    deno-builtin) ODC_WEBGPU=builtin "$bin/deno" test -A --no-check "$@" ;;
    *)
      echo "unknown runtime \"$runtime\" (node, bun, deno or deno-builtin)" >&2
      return 2
      ;;
  esac
}

# run_script RUNTIME FILE: runs a plain .ts script (not a test file) under RUNTIME.
run_script() {
  case $1 in
    node) node --import tsx "$2" ;;
    bun) "$bin/bun" "$2" ;;
    deno) "$bin/deno" run -A --no-check "$2" ;;
    deno-builtin) ODC_WEBGPU=builtin "$bin/deno" run -A --no-check "$2" ;;
    *)
      echo "unknown runtime \"$1\" (node, bun, deno or deno-builtin)" >&2
      return 2
      ;;
  esac
}

# Messages a native crash leaves in a log: glibc's heap checks, runtime panics, fatal V8 errors, and Node's
# test runner reporting a file whose process died by a signal.
CRASH_PATTERN="corrupted size|corrupted double-linked|malloc_consolidate|double free|free\\(\\): invalid|malloc\\(\\): |munmap_chunk|\
Segmentation fault|core dumped|panicked at|FATAL ERROR|Fatal error in|Illegal instruction|Bus error|^ *signal: 'SIG"

# crash_reason EXIT-STATUS LOG: prints why a run crashed (the file and signal, and the first crash message
# of its log), or nothing when it ended normally (passing or with failing tests).
crash_reason() {
  local rc=$1 log=$2 text where message
  [ "$rc" = 0 ] && return
  text=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
  where=$(grep -m1 '^odc-test: ' <<<"$text" | sed 's/^odc-test: //') # a file of a per-file run: "FILE: signal SIGX"
  if [ -z "$where" ] && [ "$rc" -gt 128 ]; then where="signal SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"; fi
  message=$(grep -E -m1 "$CRASH_PATTERN" <<<"$text" | sed 's/^ *//' | cut -c1-200)
  if [ -n "$where" ] && [ -n "$message" ]; then
    echo "$where: $message"
  elif [ -n "$where$message" ]; then
    echo "$where$message"
  fi
}
