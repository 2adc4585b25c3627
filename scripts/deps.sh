#!/usr/bin/env bash
# Installs what building and testing ivy needs, from Debian's packages, only when missing.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail
need=(gcc make cmake pkg-config liburing-dev libjemalloc-dev libcmocka-dev libssl-dev curl "$@")
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "ivy: missing Debian packages: ${missing[*]}" >&2
  echo "ivy: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "ivy: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
