#!/usr/bin/env bash
# Regenerates every reference fixture under test/fixtures/ (one line per reference script).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv-ref/bin/python}"
bash scripts/fetch-smollm2.sh >/dev/null || true; "$PY" scripts/reference/io_ref.py
"$PY" scripts/reference/model_ref.py
"$PY" scripts/reference/peft_ref.py
"$PY" scripts/reference/merge_ref.py
"$PY" scripts/reference/rope_ref.py
"$PY" scripts/reference/tokenizer_ref.py
"$PY" scripts/reference/quant_ref.py
"$PY" scripts/reference/smollm2_ref.py
"$PY" scripts/reference/data_ref.py
