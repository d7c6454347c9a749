#!/usr/bin/env bash
# Runs the test suite (or the given test files, or a plain script) N times in a row under one runtime and
# counts passes, test failures and crashes, naming each crash's signal or abort message. For flakes that
# show once in tens of runs, e.g. a crash at process exit:
#   bash scripts/stress.sh deno-builtin 30                 # the files test-all.sh gives that runtime
#   bash scripts/stress.sh node 5 test/train.test.ts
#   bash scripts/stress.sh deno 20 bench/some-script.ts   # one file not named *.test.ts runs as a plain script
# RUNTIME: node | bun | deno | deno-builtin (Deno's own WebGPU). Logs of failed and crashed runs are kept
# in a folder named at the end. Exit status 0 only when every run passed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: bash scripts/stress.sh node|bun|deno|deno-builtin N [FILE...]" >&2
  exit 2
fi
runtime=$1 runs=$2
shift 2
source scripts/test-lib.sh
files=("$@")
[ ${#files[@]} -gt 0 ] || read -r -a files <<<"$(suite_files "$runtime")"
script=0
[ ${#files[@]} = 1 ] && [[ ${files[0]} != *.test.ts ]] && script=1
keep=$(mktemp -d "${TMPDIR:-/tmp}/odc-stress.XXXXXX")
passes=0 failures=0 crashes=0
declare -A why=()
for ((i = 1; i <= runs; i++)); do
  log="$keep/run-$i.log"
  start=$SECONDS
  if [ $script = 1 ]; then
    run_script "$runtime" "${files[0]}" >"$log" 2>&1
  else
    run_tests "$runtime" "${files[@]}" >"$log" 2>&1
  fi
  rc=$?
  crash=$(crash_reason "$rc" "$log")
  if [ -n "$crash" ]; then
    crashes=$((crashes + 1))
    why[$crash]=$((${why[$crash]:-0} + 1))
    verdict="CRASH ($crash)"
  elif [ $rc != 0 ]; then
    failures=$((failures + 1))
    verdict="FAILED (exit $rc)"
  else
    passes=$((passes + 1))
    verdict=ok
    rm -f "$log"
  fi
  echo "run $i/$runs: $verdict ($((SECONDS - start)) s)"
done
for reason in "${!why[@]}"; do echo "crash x${why[$reason]}: $reason"; done
echo "stress $runtime x$runs (${files[*]}): $passes passed, $failures failed, $crashes crashed"
if [ $((failures + crashes)) = 0 ]; then
  rmdir "$keep"
  exit 0
fi
echo "logs of the failed runs: $keep"
exit 1
