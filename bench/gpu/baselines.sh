#!/usr/bin/env bash
# PyTorch training baselines for the GPU benchmark: transformers + PEFT (+ bitsandbytes for QLoRA)
# and Unsloth, LoRA and QLoRA, r=16 on all seven linear layers, activation checkpointing, 2048
# tokens per step, on random weights of the Llama-3.2-1B, Qwen2.5-0.5B and Llama-3.1-8B shapes.
# Each run is bench/gpu/train_torch.py in a fresh process; its JSON line goes to
# $OUT/baselines.jsonl (or build/torch-baselines/baselines.jsonl), a table is printed last.
#
#   bash bench/gpu/baselines.sh                 on the GPU machine: install .whl/*.whl into
#                                               /tmp/site (if there), measure the bf16 GEMM rate,
#                                               run the matrix
#   bash bench/gpu/baselines.sh --fetch-wheels  on a machine with pip access: download the wheels
#                                               the GPU machine lacks into .whl and slim them
#
# Environment knobs (all optional):
#   SHAPES="qwen2.5-0.5b llama-3.2-1b llama-3.1-8b"  MODES="lora qlora"  IMPLS="hf unsloth"
#   BUDGET_S=420      no run starts after this many seconds; each run's timeout is cut to fit
#   SEQ=2048 BATCH=1  STEPS_SMALL=10 WARMUP_SMALL=3 (0.5B/1B)  STEPS_8B=5 WARMUP_8B=2
#   UNSLOTH_GC=unsloth  (Unsloth's use_gradient_checkpointing: "unsloth" or "true")
#   MODEL_ROOT=/tmp/lk-models  (random bf16 checkpoints, one per shape, built once, reused)
#   PY=python3  TRAIN_ARGS=""  (extra train_torch.py arguments; local smoke tests only)
set -uo pipefail
cd "$(dirname "$0")/../.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  # Everything unsloth 2026.10.9 / unsloth_zoo 2026.10.9 / bitsandbytes 0.50.2 require (markers
  # for Python 3.12, Linux x86_64) that the GPU image (KINDS.md) lacks, minus xformers (optional
  # there: Unsloth falls back to PyTorch SDPA), diffusers and hf_transfer (never imported on the
  # LoRA path; hf_transfer only speeds downloads, and the machine is offline), and
  # importlib-metadata (a diffusers need). Then, to fit the 64 MiB a device call carries:
  # bitsandbytes keeps only its CUDA 13.0 and CPU libraries (torch there is 2.11.0+cu130),
  # unsloth drops studio/ (the web UI, 82 MB unpacked). RECORD is rewritten to match.
  set -e
  rm -rf .whl && mkdir -p .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
  PLAT=""
  for n in 2_39 2_35 2_34 2_31 2_28 2_27 2_24 2_17; do PLAT="$PLAT --platform manylinux_${n}_x86_64"; done
  PIP_CONSTRAINT= python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $PLAT --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    bitsandbytes==0.50.2 unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.15.0 datasets==4.8.5 \
    dill==0.4.1 multiprocess==0.70.19 torchao==0.18.0 cut_cross_entropy==25.1.1 msgspec==0.22.0 \
    tyro==1.0.17 docstring_parser==0.18.0 typeguard==4.6.1 pydantic==2.14.4 pydantic_core==2.50.5 \
    annotated_types==0.8.0 typing_inspection==0.4.5 json5==0.17.3 nest_asyncio==1.6.0 structlog==26.1.0
  python3 - <<'EOF'
import base64, glob, hashlib, os, re, zipfile
def slim(path, drop):
    src = zipfile.ZipFile(path)
    keep = [i for i in src.infolist() if not drop(i.filename)]
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        record = None
        rows = []
        for i in keep:
            if i.filename.endswith(".dist-info/RECORD"):
                record = i
                continue
            data = src.read(i.filename)
            dst.writestr(i, data, compress_type=zipfile.ZIP_DEFLATED)
            h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{i.filename},sha256={h},{len(data)}")
        rows.append(f"{record.filename},,")
        dst.writestr(record, "\n".join(rows) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    before = os.path.getsize(path)
    os.replace(tmp, path)
    print(f"slimmed {os.path.basename(path)}: {before/2**20:.1f} -> {os.path.getsize(path)/2**20:.1f} MiB")
keep_bnb = re.compile(r"bitsandbytes/libbitsandbytes_(cuda130|cpu)\.so$")
slim(glob.glob(".whl/bitsandbytes-*.whl")[0],
     lambda n: n.startswith("bitsandbytes/libbitsandbytes_") and not keep_bnb.search(n))
slim(glob.glob(".whl/unsloth-*.whl")[0], lambda n: n.startswith("studio/"))
EOF
  ls -la .whl
  du -ch .whl/*.whl | tail -1
  exit 0
fi

export PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export UNSLOTH_DISABLE_STATISTICS=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
export UNSLOTH_COMPILE_LOCATION=/tmp/unsloth_compiled_cache
LOGDIR=${OUT:-build/torch-baselines}
mkdir -p "$LOGDIR"
JSONL="$LOGDIR/baselines.jsonl"
LOG="$LOGDIR/baselines.log"
: >"$JSONL"
: >"$LOG"
T0=$(date +%s)
el() { echo $(($(date +%s) - T0)); }
say() { echo "[$(el)s] $*" | tee -a "$LOG"; }

say "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
python3 --version 2>&1 | tee -a "$LOG"
df -h /tmp 2>/dev/null | tail -1 | tee -a "$LOG"

if ls .whl/*.whl >/dev/null 2>&1; then
  say "== installing $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
  if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$LOG" 2>&1; then
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    say "WHEEL INSTALL FAILED (see $LOG); continuing with what the image has"
    tail -5 "$LOG"
  fi
else
  say "no .whl/*.whl here: bitsandbytes and unsloth must already be installed"
fi
python3 - <<'EOF' 2>&1 | tee -a "$LOG"
import importlib.metadata as md
for n in ("torch", "transformers", "peft", "accelerate", "triton", "bitsandbytes", "unsloth", "unsloth_zoo", "trl", "datasets", "torchao", "cut_cross_entropy"):
    try: v = md.version(n)
    except Exception as e: v = f"MISSING ({type(e).__name__})"
    print(f"  {n:18s} {v}")
EOF

say "== bf16 GEMM rate (8192^3, torch.matmul)"
GEMM=$(timeout 60 python3 - <<'EOF' 2>>"$LOG"
import torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(5): a @ b
torch.cuda.synchronize()
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(20): a @ b
e.record(); torch.cuda.synchronize()
print(f"{2 * n**3 * 20 / (s.elapsed_time(e) / 1e3) / 1e12:.1f}")
EOF
)
GEMM=${GEMM:-0}
say "gemm_tflops=$GEMM"

SHAPES=${SHAPES:-qwen2.5-0.5b llama-3.2-1b llama-3.1-8b}
MODES=${MODES:-lora qlora}
IMPLS=${IMPLS:-hf unsloth}
BUDGET_S=${BUDGET_S:-420}
SEQ=${SEQ:-2048}
BATCH=${BATCH:-1}
MODEL_ROOT=${MODEL_ROOT:-/tmp/lk-models}
UNSLOTH_GC=${UNSLOTH_GC:-unsloth}
mkdir -p "$MODEL_ROOT"

for shape in $SHAPES; do
  if [ "$shape" = llama-3.1-8b ]; then
    steps=${STEPS_8B:-5}; warm=${WARMUP_8B:-2}; cap=200
  else
    steps=${STEPS_SMALL:-10}; warm=${WARMUP_SMALL:-3}; cap=120
  fi
  for mode in $MODES; do
    for impl in $IMPLS; do
      left=$((BUDGET_S - $(el)))
      tag="$impl $mode $shape"
      if [ "$left" -lt 20 ]; then
        say "SKIP $tag (budget: $(el)s of ${BUDGET_S}s used)"
        printf '{"impl":"%s","mode":"%s","shape":"%s","error":"skipped: time budget"}\n' "$impl" "$mode" "$shape" >>"$JSONL"
        continue
      fi
      t=$((left < cap ? left : cap))
      say "RUN $tag (timeout ${t}s)"
      # shellcheck disable=SC2086
      out=$(timeout -k 10 "$t" "${PY:-python3}" bench/gpu/train_torch.py --impl "$impl" --mode "$mode" --shape "$shape" \
        --seq "$SEQ" --batch "$BATCH" --steps "$steps" --warmup "$warm" --gemm-tflops "$GEMM" \
        --model-dir "$MODEL_ROOT/$shape" --unsloth-gc "$UNSLOTH_GC" ${TRAIN_ARGS:-} 2>>"$LOG")
      rc=$?
      line=$(printf '%s\n' "$out" | grep '^{' | tail -1)
      if [ -z "$line" ]; then
        why="exit $rc"
        [ "$rc" = 124 ] || [ "$rc" = 137 ] && why="timed out after ${t}s"
        line=$(printf '{"impl":"%s","mode":"%s","shape":"%s","error":"%s, no JSON (see baselines.log)"}' "$impl" "$mode" "$shape" "$why")
      fi
      echo "$line" >>"$JSONL"
      say "  rc=$rc $line"
    done
  done
  rm -rf "${MODEL_ROOT:?}/$shape"
done

say "== done in $(el)s; log: $LOG"
python3 - "$JSONL" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| shape | mode | impl | tokens/s | step ms | peak alloc GiB | peak reserved GiB | MFU | trainable | loss first→last | note |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
for r in rows:
    if "error" in r:
        print(f"| {r.get('shape')} | {r.get('mode')} | {r.get('impl')} | - | - | - | - | - | - | - | FAIL: {str(r['error'])[:160]} |")
        continue
    mfu = r.get("mfu")
    print(f"| {r['shape']} | {r['mode']} | {r['impl']} | {r['tokens_per_s']:.0f} | {r['step_ms']:.1f} | {f(r.get('peak_mem_gib'),2)} | "
          f"{f(r.get('peak_reserved_gib'),2)} | {'-' if mfu is None else f'{100*mfu:.1f}%'} | {r.get('trainable_params')} | "
          f"{f(r.get('loss_first'),3)}→{f(r.get('loss_last'),3)} | {r.get('note','')} |")
EOF
