#!/usr/bin/env bash
# scripts/build.sh — installs what a fresh Debian machine lacks (when run as root),
# configures and builds Kiln into build/ (or $1 with extra CMake flags after it).
# Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# What Kiln builds with; callers add their own (test.sh: test-only tools) in KILN_EXTRA_PKGS.
PKGS="cmake ninja-build gcc pkg-config libprotobuf-c-dev protobuf-c-compiler libopenblas-dev libcmocka-dev libonnx-dev ${KILN_EXTRA_PKGS:-}"
missing=()
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "build.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "build.sh: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
  fi
fi

dir="${1:-build}"
shift || true
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
