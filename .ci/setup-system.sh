#!/usr/bin/env bash
# Installs the system pieces WebGPU needs on a CPU-only Debian 12 machine: Mesa's lavapipe Vulkan
# driver from bookworm-backports (Debian 12's own 22.x does not work with Dawn; 25.x does).
# Idempotent; needs root. Skips everything when a lavapipe ICD of 25.x is already installed.
set -euo pipefail
need_mesa=1
if dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -Eq '^(2[5-9]|[3-9][0-9])\.'; then need_mesa=0; fi
if [ "$need_mesa" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
  fi
  apt-get update -qq
  apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "${ODC_SKIP_FASHION:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || echo "setup: dataset-fashion-mnist not installed (optional)" >&2
fi
# Debian's chromium for the report's browser test (test/report-browser.test.ts skips, saying so, without it).
if ! command -v chromium >/dev/null 2>&1 && [ "${ODC_SKIP_CHROMIUM:-0}" != 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || apt-get update -qq
  apt-get install -y -qq chromium >/dev/null 2>&1 || echo "setup: chromium not installed (the report's browser test will be skipped)" >&2
fi
