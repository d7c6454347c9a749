#!/usr/bin/env bash
# The test suite under every runtime: Node (Dawn), Bun (Dawn), Deno (Dawn) and Deno's built-in WebGPU.
# Installs what is missing first (npm packages; Mesa lavapipe when running as root on a GPU-less box).
# Ends with one line "total: N passed, M failed" summed over the four runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bin=node_modules/.bin
files=$(ls test/*.test.ts)
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
run() {
  local name=$1 log=$2; shift 2
  echo "=== $name ==="
  local start=$SECONDS
  if "$@" 2>&1 | tee "$logs/$log"; then echo "=== $name: ok ($((SECONDS - start)) s)"; else echo "=== $name: FAILED ($((SECONDS - start)) s)"; status=1; fi
}
run "node (Dawn)" node node --import tsx --test --test-concurrency=1 $files
run "bun (Dawn)" bun "$bin/bun" test --timeout 900000 $files
# Deno with Dawn gets a process per file, as Node's runner gives itself: one such process that had run
# many training runs stalled for minutes (Node, Bun and Deno's own WebGPU do not); each file alone runs
# in seconds. Deno's own WebGPU keeps one process: its teardown has crashed (rarely) at exit.
deno_each() {
  local rc=0
  for f in $files; do "$bin/deno" test -A --no-check "$f" || rc=1; done
  return $rc
}
run "deno (Dawn)" deno deno_each
ODC_WEBGPU=builtin run "deno (built-in WebGPU)" deno-builtin "$bin/deno" test -A --no-check $files
# count LOG SED-EXPRESSION: the sum of the numbers the runner printed in its summaries (0 if none)
count() { sed 's/\x1b\[[0-9;]*m//g' "$logs/$1" | sed -n "$2" | awk '{ s += $1 } END { print s + 0 }'; }
passed=$(( $(count node 's/^# pass \([0-9]*\)$/\1/p') + $(count bun 's/^ *\([0-9]*\) pass$/\1/p') \
  + $(count deno 's/.*| \([0-9]*\) passed |.*/\1/p') + $(count deno-builtin 's/.*| \([0-9]*\) passed |.*/\1/p') ))
failed=$(( $(count node 's/^# fail \([0-9]*\)$/\1/p') + $(count bun 's/^ *\([0-9]*\) fail$/\1/p') \
  + $(count deno 's/.*| \([0-9]*\) failed.*/\1/p') + $(count deno-builtin 's/.*| \([0-9]*\) failed.*/\1/p') ))
if [ "$failed" != 0 ] || [ "$status" != 0 ]; then
  # The failures again, just above the total line, so a log cut to its tail still says what failed and with
  # which fast-check seed (rerun one with FC_SEED=<seed> and the runner's name filter).
  echo "=== failures"
  for log in node bun deno deno-builtin; do
    sed 's/\x1b\[[0-9;]*m//g' "$logs/$log" | grep -E '^not ok |^\(fail\) | \.\.\. FAILED|Property failed after|^ *\{ seed: |Counterexample:|AssertionError|^ *error: ' \
      | grep -v '^ *error: Test failed' | head -40 | cut -c1-300 | sed "s/^/[$log] /"
  done
fi
echo "total: $passed passed, $failed failed"
exit $status
