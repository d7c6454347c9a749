#!/usr/bin/env bash
# The test suite under every runtime: Node (Dawn), Bun (Dawn), Deno (Dawn) and Deno's built-in WebGPU.
# Installs what is missing first (npm packages; Mesa lavapipe when running as root on a GPU-less box).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
bin=node_modules/.bin
files=$(ls test/*.test.ts)
status=0
run() {
  local name=$1; shift
  echo "=== $name ==="
  local start=$SECONDS
  if "$@"; then echo "=== $name: ok ($((SECONDS - start)) s)"; else echo "=== $name: FAILED ($((SECONDS - start)) s)"; status=1; fi
}
run "node (Dawn)" node --import tsx --test --test-concurrency=1 $files
run "bun (Dawn)" "$bin/bun" test --timeout 900000 $files
run "deno (Dawn)" "$bin/deno" test -A --no-check $files
ODC_WEBGPU=builtin run "deno (built-in WebGPU)" "$bin/deno" test -A --no-check $files
exit $status
