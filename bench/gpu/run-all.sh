#!/usr/bin/env bash
# GPU check-and-time run for the CUDA backend: builds native/cuda and every harness
# (native/cuda/harness/*_check.cu) for sm_90 with nvcc, checks the cuBLASLt declarations against the
# real header when one exists, runs each harness (correctness against CPU references, then timings),
# optionally again under compute-sanitizer, and prints a summary last. Needs only nvcc and a GPU
# (no Node). Full output goes to $OUT/run-all.log (or build/cuda-bench/run-all.log).
#   bash bench/gpu/run-all.sh              build, check, time
#   bash bench/gpu/run-all.sh --sanitize   also memcheck + racecheck the kernels on the small cases
#   LORAKIT_HARNESSES="dropout sgd" bash bench/gpu/run-all.sh   only these harnesses
set -uo pipefail
cd "$(dirname "$0")/../.."
SANITIZE=0
for a in "$@"; do [ "$a" = "--sanitize" ] && SANITIZE=1; done
NVCC=${LORAKIT_NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
ARCH=${LORAKIT_CUDA_ARCH:-arch=compute_90,code=sm_90}
LOGDIR=${OUT:-build/cuda-bench}
mkdir -p "$LOGDIR" build/obj-cuda build/cuda-harness
LOG="$LOGDIR/run-all.log"
: >"$LOG"
say() { echo "$@" | tee -a "$LOG"; }

say "== machine"
{
  date -u +"date: %Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  "$NVCC" --version | tail -1 | sed 's/^/nvcc: /'
  echo "cpus: $(nproc)"
} | tee -a "$LOG"

# cuBLASLt: the toolkit's or the one PyTorch's nvidia-cublas wheel installed.
if [ -z "${LORAKIT_CUBLASLT:-}" ]; then
  LORAKIT_CUBLASLT=$(find /usr/local/cuda*/ /usr/lib /opt /usr/local/lib -name 'libcublasLt.so*' 2>/dev/null | sort | head -1)
  export LORAKIT_CUBLASLT
fi
CUBLAS_H=$(find /usr/local/cuda*/ /opt /usr/lib /usr/local/lib /usr/include -name cublasLt.h 2>/dev/null | head -1)
say "cublasLt: ${LORAKIT_CUBLASLT:-not found}; header: ${CUBLAS_H:-not found}"

say "== build (sm_90)"
FLAGS=(-std=c++17 -O3 -gencode "$ARCH" -lineinfo -Xcompiler -fPIC)
t0=$(date +%s)
export NVCC FLAGS_STR="${FLAGS[*]}"
ls native/cuda/*.cu | xargs -P "$(nproc)" -I{} sh -c 'f={}; o=build/obj-cuda/$(basename "${f%.cu}").o; $NVCC $FLAGS_STR -c "$f" -o "$o" || { echo "BUILD FAIL $f"; exit 255; }' >>"$LOG" 2>&1
rm -f build/liblorakit_cuda.a && ar rcs build/liblorakit_cuda.a build/obj-cuda/*.o
ls native/cuda/harness/*_check.cu | xargs -P "$(nproc)" -I{} sh -c 'f={}; b=build/cuda-harness/$(basename "${f%.cu}"); $NVCC $FLAGS_STR "$f" -o "$b" build/liblorakit_cuda.a -ldl || echo "BUILD FAIL $f"' >>"$LOG" 2>&1
if [ -n "$CUBLAS_H" ]; then
  "$NVCC" -std=c++17 -I"$(dirname "$CUBLAS_H")" native/cuda/harness/cublaslt_abi.cu -o build/cuda-harness/cublaslt_abi >>"$LOG" 2>&1 &&
    build/cuda-harness/cublaslt_abi >>"$LOG" 2>&1 || echo "RESULT abi: FAIL" >>"$LOG"
fi
say "built in $(($(date +%s) - t0)) s"
grep "BUILD FAIL" "$LOG" && say "(see $LOG)"

say "== harnesses"
for h in ${LORAKIT_HARNESSES:-memory offload elementwise broadcast sum_rows rmsnorm rope swiglu embedding adamw sgd dropout dequant4 dequant_int8 \
  quant_gemv cross_entropy cross_entropy_backward attention gemm}; do
  bin=build/cuda-harness/${h}_check
  if [ ! -x "$bin" ]; then
    echo "RESULT $h: FAIL (not built)" | tee -a "$LOG"
    continue
  fi
  t=$(date +%s)
  timeout 300 "$bin" >>"$LOG" 2>&1 || grep -q "^RESULT $h:" "$LOG" || echo "RESULT $h: FAIL (crashed or timed out)" >>"$LOG"
  say "$h done in $(($(date +%s) - t)) s"
done

if [ "$SANITIZE" = 1 ] && command -v compute-sanitizer >/dev/null; then
  say "== compute-sanitizer (small cases)"
  for h in offload elementwise broadcast sum_rows rmsnorm rope swiglu embedding adamw sgd dropout dequant4 dequant_int8 \
    quant_gemv cross_entropy cross_entropy_backward attention; do
    for tool in memcheck racecheck; do
      [ "$tool" = racecheck ] && [ "$h" != attention ] && [ "$h" != rmsnorm ] && [ "$h" != cross_entropy ] &&
        [ "$h" != sum_rows ] && [ "$h" != dequant4 ] && [ "$h" != quant_gemv ] && continue
      r=$(HX_QUICK=1 timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 9 build/cuda-harness/${h}_check 2>&1 | tee -a "$LOG" | grep -E "ERROR SUMMARY|RACECHECK SUMMARY" | tail -1)
      say "sanitize $h $tool: ${r:-no summary (timed out?)}"
    done
  done
fi

echo
echo "== summary (full log: $LOG)"
grep -E "^\| check .*FAIL" "$LOG" || true
grep -E "^RESULT" "$LOG"
echo
echo "| kind | op | case | µs | rate |"
echo "| --- | --- | --- | --- | --- |"
grep -E "^\| time " "$LOG"
echo
grep -E "^\| (model|---|Llama|Qwen)" "$LOG"
! grep -qE "^RESULT .*FAIL" "$LOG"
