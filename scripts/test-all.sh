#!/usr/bin/env bash
# The test suite under every runtime: Node (Dawn) runs every test file; Bun (Dawn), Deno (Dawn) and Deno's
# built-in WebGPU run the core files (scripts/test-lib.sh lists them and says why). Installs what is
# missing first (npm packages; Mesa lavapipe when running as root on a GPU-less box). Prints each
# runtime's wall time and always ends with one line "total: N passed, M failed" summed over the runs; a
# runtime that crashes (a signal, an abort message, or no summary line) counts as failed, and the crash is
# named above the total line. Exit status 0 only when every runtime passed.
#   ODC_RUNTIMES='node deno-builtin'  runs only those runtimes (default: node bun deno deno-builtin)
#   ODC_TEST_FILES='test/a.test.ts'   runs only those files, under every runtime
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
set +e # from here on every outcome must reach the total line
source scripts/test-lib.sh
runtimes=${ODC_RUNTIMES:-node bun deno deno-builtin}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
crashes=()
times=()

# count LOG SED-EXPRESSION: the sum of the numbers the runner printed in its summaries (0 if none)
count() { sed 's/\x1b\[[0-9;]*m//g' "$1" | sed -n "$2" | awk '{ s += $1 } END { print s + 0 }'; }
# The sed expressions that pick the numbers of passed (WHAT=pass) and failed (WHAT=fail) tests out of
# RUNTIME's summary lines.
summary_pattern() {
  case $1 in
    node) echo "s/^# $2 \([0-9]*\)\$/\1/p" ;;
    bun) echo "s/^ *\([0-9]*\) $2\$/\1/p" ;;
    *) echo "s/.*| \([0-9]*\) ${2}ed.*/\1/p" ;;
  esac
}

passed=0 failed=0
for runtime in $runtimes; do
  log="$logs/$runtime"
  read -r -a files <<<"$(suite_files "$runtime")"
  echo "=== $runtime (${#files[@]} files) ==="
  start=$SECONDS
  run_tests "$runtime" "${files[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  seconds=$((SECONDS - start))
  pass_expr=$(summary_pattern "$runtime" pass)
  fail_expr=$(summary_pattern "$runtime" fail)
  passed=$((passed + $(count "$log" "$pass_expr")))
  failed_here=$(count "$log" "$fail_expr")
  failed=$((failed + failed_here))
  crash=$(crash_reason "$rc" "$log")
  if [ -z "$crash" ] && [ "$rc" != 0 ] && [ -z "$(sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n "$pass_expr")" ]; then
    crash="exit status $rc without a summary line"
  fi
  if [ -n "$crash" ]; then
    verdict="CRASHED: $crash"
    crashes+=("[$runtime] crashed: $crash")
    # each file whose process crashed is a failure (its summary never came); a runtime that crashed as a
    # whole counts at least one, even where its runner counted none
    crashed_files=$(grep -c '^odc-test: ' "$log")
    if [ "$crashed_files" != 0 ]; then
      failed=$((failed + crashed_files))
    elif [ "$failed_here" = 0 ]; then
      failed=$((failed + 1))
    fi
    status=1
  elif [ "$rc" != 0 ]; then
    verdict=FAILED
    status=1
  else
    verdict=ok
  fi
  echo "=== $runtime: $verdict ($seconds s)"
  times+=("$runtime $seconds s")
done

if [ "$status" != 0 ] || [ "$failed" != 0 ]; then
  status=1
  # The failures again, just above the total line, so a log cut to its tail still says what failed and with
  # which fast-check seed (rerun one with FC_SEED=<seed> and the runner's name filter).
  echo "=== failures"
  for runtime in $runtimes; do
    sed 's/\x1b\[[0-9;]*m//g' "$logs/$runtime" |
      grep -E '^not ok |^\(fail\) | \.\.\. FAILED|Property failed after|^ *\{ seed: |Counterexample:|AssertionError|^ *error: ' |
      grep -v '^ *error: Test failed' | head -40 | cut -c1-300 | sed "s/^/[$runtime] /"
  done
  for line in "${crashes[@]}"; do echo "$line"; done
fi
echo "wall time: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g')"
echo "total: $passed passed, $failed failed"
exit $status
