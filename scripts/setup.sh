#!/usr/bin/env bash
# Installs what a fresh clone needs, once: npm packages, and on a GPU-less Debian 12 machine (as root)
# Mesa lavapipe 25.x from bookworm-backports. Sourced by scripts/demo.sh and scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
[ -x node_modules/.bin/tsx ] && [ -d node_modules/webgpu ] || npm ci --no-audit --no-fund
if [ "$(id -u)" = 0 ] && command -v dpkg-query >/dev/null && ! dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -Eq '^(2[5-9]|[3-9][0-9])\.'; then
  if ! ls /usr/share/vulkan/icd.d/nvidia* >/dev/null 2>&1; then ODC_SKIP_FASHION=1 bash .ci/setup-system.sh; fi
fi
