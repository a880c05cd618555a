#!/usr/bin/env bash
# Training speed of this tree next to another tree of lorakit (BASE: an older commit, unpacked with
# `git archive COMMIT | tar -x -C DIR`), on one GPU in one go, so that a change is judged against a
# baseline measured on the same card in the same call. Builds both (once per machine: a tree already
# built is reused), optionally runs the GPU tests on this tree, then runs bench/gpu/train-gpu.ts once
# per argument set, alternating BASE and this tree ROUNDS times, and prints one table at the end.
#   bash bench/gpu/before-after.sh [--tests] [--rounds N] BASE_DIR "train-gpu args" ["train-gpu args" ...]
# Needs node with the npm dependencies, nvcc and Node's N-API headers (LORAKIT_NODE_INCLUDE).
set -uo pipefail
cd "$(dirname "$0")/../.."
LOGDIR=${OUT:-build}
mkdir -p "$LOGDIR"
TESTS=0
ROUNDS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) TESTS=1 ;;
    --rounds) ROUNDS=$2; shift ;;
    *) break ;;
  esac
  shift
done
BASE=$(cd "$1" && pwd)
shift
[ -e "$BASE/node_modules" ] || ln -s "$PWD/node_modules" "$BASE/node_modules"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

build() { # tree log
  if [ -f "$1/build/lorakit_cuda.node" ]; then echo "$1: already built"; return 0; fi
  (cd "$1" && node scripts/build-native.mjs && node scripts/build-cuda.mjs) >"$2" 2>&1 || { tail -30 "$2"; return 1; }
}
t0=$(date +%s)
build "$PWD" "$LOGDIR/build-current.log" &
p1=$!
build "$BASE" "$LOGDIR/build-base.log" &
p2=$!
wait $p1 && wait $p2 || exit 1
echo "built in $(($(date +%s) - t0)) s"

if [ "$TESTS" = 1 ]; then
  t0=$(date +%s)
  node --import tsx --test --test-reporter=spec test/cuda.test.ts >"$LOGDIR/cuda-tests.log" 2>&1
  grep -E "^\s*(✖|ℹ)" "$LOGDIR/cuda-tests.log" | head -40
  echo "GPU tests in $(($(date +%s) - t0)) s"
fi

RESULTS="$LOGDIR/before-after.jsonl"
: >"$RESULTS"
for args in "$@"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for side in base current; do
      tree=$PWD
      [ "$side" = base ] && tree=$BASE
      # shellcheck disable=SC2086
      (cd "$tree" && node --import tsx bench/gpu/train-gpu.ts $args) 2>&1 | tee -a "$LOGDIR/before-after.log" |
        grep '^{' | sed "s/^{/{\"side\":\"$side\",\"round\":$r,/" >>"$RESULTS"
    done
  done
done

node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").filter(Boolean).map(JSON.parse);
const key = (r) => `${r.shape} ${r.mode} ${r.impl}`;
const groups = new Map();
for (const r of rows) {
  const g = groups.get(key(r)) ?? { base: [], current: [], mem: {} };
  g[r.side].push(r.tokens_per_s);
  g.mem[r.side] = r.peak_mem_gib;
  groups.set(key(r), g);
}
console.log("| shape mode impl | base tokens/s (each round) | current tokens/s (each round) | current ÷ base (best) | peak GiB base / current |");
console.log("|---|---|---|---|---|");
for (const [k, g] of groups) {
  const best = (a) => Math.max(...a);
  console.log(`| ${k} | ${g.base.map((x) => x.toFixed(0)).join(", ")} | ${g.current.map((x) => x.toFixed(0)).join(", ")} | ${(best(g.current) / best(g.base)).toFixed(3)} | ${g.mem.base?.toFixed(2)} / ${g.mem.current?.toFixed(2)} |`);
}' "$RESULTS"
