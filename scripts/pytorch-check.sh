#!/usr/bin/env bash
# Weights both ways with real PyTorch: exports of every backbone load into torch/torchvision with the README's
# lines (strict=True) and give the engine's eval-mode features; a torchvision resnet18 state dict loads with
# loadWeights and gives PyTorch's features. Needs a python3 with torch and torchvision (Debian 12:
# python3-torch, python3-torchvision; with ODC_INSTALL_TORCH=1 and root, installed here); skipped with a
# message otherwise. Where the safetensors package is missing, a minimal stand-in module is used.
set -euo pipefail
cd "$(dirname "$0")/.."
has_torch() { "$1" -c 'import torch, torchvision' 2>/dev/null; }
python=''
for candidate in /usr/bin/python3 python3; do
  if has_torch "$candidate"; then python=$candidate; break; fi
done
if [ -z "$python" ] && [ "${ODC_INSTALL_TORCH:-}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch python3-torchvision >/dev/null || true
  if has_torch /usr/bin/python3; then python=/usr/bin/python3; fi
fi
if [ -z "$python" ]; then
  echo "pytorch check: SKIPPED (no python3 with torch and torchvision; on Debian 12: apt-get install python3-torch python3-torchvision)"
  exit 0
fi
pythonpath=''
"$python" -c 'import safetensors.torch' 2>/dev/null || pythonpath=scripts/pytorch/standin
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
node --import tsx scripts/pytorch-fixture.ts "$out"
PYTHONPATH=$pythonpath "$python" scripts/pytorch/check.py "$out"
node --import tsx scripts/pytorch-fixture.ts --verify "$out"
