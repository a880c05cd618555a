#!/usr/bin/env bash
# The TypeScript side on a GPU machine, in one go: builds the CPU and CUDA addons, then runs the GPU
# tests (test/cuda.test.ts: every op against the CPU backend, PEFT and PEFT + bitsandbytes parity in
# bf16, training, memory, generation) and the training benchmark (bench/gpu/train-gpu.ts). Needs node
# with the npm dependencies installed, nvcc, and Node's N-API headers (LORAKIT_NODE_INCLUDE when Node's
# own include folder is absent). Output goes to $OUT (or build/) as well as the terminal.
#   bash bench/gpu/lorakit-gpu.sh [--no-tests] [--shapes a,b] [--modes lora,qlora] [--baselines file.jsonl]
set -uo pipefail
cd "$(dirname "$0")/../.."
LOGDIR=${OUT:-build}
mkdir -p "$LOGDIR"
TESTS=1
BENCH_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-tests) TESTS=0 ;;
    *) BENCH_ARGS+=("$1") ;;
  esac
  shift
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "node $(node --version), $(nproc) cpus"
t0=$(date +%s)
node scripts/build-native.mjs >"$LOGDIR/build.log" 2>&1 && node scripts/build-cuda.mjs >>"$LOGDIR/build.log" 2>&1 ||
  { tail -30 "$LOGDIR/build.log"; exit 1; }
echo "built in $(($(date +%s) - t0)) s"
if [ "$TESTS" = 1 ]; then
  t0=$(date +%s)
  node --import tsx --test --test-reporter=spec test/cuda.test.ts 2>&1 | tee "$LOGDIR/cuda-tests.log" | grep -E "^\s*(✔|✖|ℹ|﹣)|Error|error|expected|actual" | head -80
  echo "GPU tests in $(($(date +%s) - t0)) s"
fi
if [ ${#BENCH_ARGS[@]} -gt 0 ]; then
  node --import tsx bench/gpu/train-gpu.ts "${BENCH_ARGS[@]}" 2>&1 | tee "$LOGDIR/train-gpu.log"
fi
