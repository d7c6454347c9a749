#!/usr/bin/env bash
# Runs examples/ as a user would, at small sizes (ODC_EXAMPLE_SMALL=1): every example once under Node through
# the compiled dist/ (npm run build first: no tsx at run time), and the property-testing example also under
# Bun and Deno from the TypeScript sources. Outputs go to a temporary folder. `npm run examples`.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=node_modules/.bin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export ODC_EXAMPLE_SMALL=1
[ -f dist/examples/engine-basics.js ] || npm run build
for name in engine-basics property-test-your-kmeans custom-dataset train-mnist; do
  echo "== node dist/examples/$name.js"
  ODC_EXAMPLE_OUT="$out/$name" node "dist/examples/$name.js"
done
echo "== bun examples/property-test-your-kmeans.ts"
"$bin/bun" examples/property-test-your-kmeans.ts
echo "== deno run -A examples/property-test-your-kmeans.ts"
"$bin/deno" run -A examples/property-test-your-kmeans.ts
echo "examples: all passed"
