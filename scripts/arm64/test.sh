#!/usr/bin/env bash
# The arm64 CPU kernels, checked for correctness on an x86-64 machine: cross-builds the addon for every
# arm64 kernel path of native/cpu/isa/isas.json (neon, portable) into build-arm64/, then runs the
# kernel tests under qemu-user with an arm64 Node, once per path. Their speed is not measured here.
# Needs scripts/arm64/setup.sh first.   bash scripts/arm64/test.sh [path...]
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== arm64 cross build (build-arm64/)"
# The arm64 Node's own headers: N-API is the same on every architecture, and these match the runtime.
CXX=aarch64-linux-gnu-g++ LORAKIT_NODE_INCLUDE="$PWD/.cache/arm64/node/include/node" \
  node scripts/build-native.mjs --out build-arm64

echo "== arm64 kernel tests under qemu-user"
node scripts/arm64/run-tests.mjs --build build-arm64 "$@"
