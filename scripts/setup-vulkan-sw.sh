#!/usr/bin/env bash
# Installs Mesa's software Vulkan driver (lavapipe) so the WebGPU backend (Dawn) gets an adapter on
# machines without a GPU. Debian bookworm's own Mesa 22.3 lavapipe is rejected by Dawn; the 25.x
# build from bookworm-backports works. The backports suite is derived from the machine's existing
# Debian apt source entry (same mirror, same keyring). Needs root (apt-get). Idempotent.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q libvulkan_lvp && [ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] \
  && dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^2[5-9]'; then
  echo "software Vulkan driver already installed: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup:vulkan-sw: needs a Debian/Ubuntu system with apt-get" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
src=/etc/apt/sources.list.d/debian.sources
if [ -f "$src" ] && ! grep -q 'bookworm-backports' "$src" /etc/apt/sources.list.d/*.sources 2>/dev/null; then
  # A deb822 stanza with the same URIs and keyring as the bookworm entry.
  uri=$(awk '/^URIs:/ && !seen {print $2; seen=1}' "$src")
  key=$(awk '/^Signed-By:/ && !seen {print $2; seen=1}' "$src")
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' "$uri" "$key" | $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
elif [ -f /etc/apt/sources.list ] && ! grep -rq 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
  line=$(grep -m1 -E '^deb .* bookworm main' /etc/apt/sources.list)
  echo "${line/ bookworm / bookworm-backports }" | $sudo tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
echo "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) (software Vulkan)"
