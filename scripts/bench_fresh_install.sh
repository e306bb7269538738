#!/usr/bin/env bash
# Benchmark: a newcomer's first result. Clones this repository's HEAD (committed files only) into a new
# folder and runs, as a new user on a fresh machine would, with an empty HOME (no pip cache, no t2g or
# Hugging Face cache) and PIP_NO_CACHE_DIR=1:
#   1. bash scripts/setup_env.sh   (timed: downloads, llama-cpp-python's compile, the converter)
#   2. bash scripts/smoke.sh       (timed: the main job, the idempotent setup check first)
#   3. bash scripts/setup_env.sh   (timed again: must decide in seconds that nothing is missing)
# Usage: bash scripts/bench_fresh_install.sh [DIR]   (DIR, default a new mktemp folder, must not exist
# or be empty; it ends with the clone, the fresh HOME and the logs; 4.7 GB here).
# Run it on an otherwise idle machine: both cores compile and train. The machine's pip configuration
# (indexes, find-links, /etc/pip.conf) is used as it is, as a new user's pip would.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$(mktemp -d -t t2g-fresh-XXXXXX)}
mkdir -p "$dir"
[ -z "$(ls -A "$dir")" ] || { echo "bench_fresh_install: $dir is not empty; give a new or empty folder" >&2; exit 2; }
git clone -q "$repo" "$dir/t2g"
mkdir "$dir/home"
cd "$dir/t2g"
echo "bench_fresh_install: $(git log -1 --format='%h %s' | cut -c1-80)"
echo "bench_fresh_install: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), in $dir"
timed() {  # timed NAME LOG COMMAND...: run it with the fresh HOME, print its wall seconds
  local name=$1 log=$2; shift 2
  local start=$SECONDS
  if ! HOME="$dir/home" PIP_NO_CACHE_DIR=1 "$@" > "$log" 2>&1; then
    echo "bench_fresh_install: $name failed after $((SECONDS - start)) s; its log: $log" >&2; tail -n 20 "$log" >&2; exit 1
  fi
  echo "bench_fresh_install: $name $((SECONDS - start)) s (log: $log)"
}
start=$SECONDS
timed "setup_env.sh" "$dir/setup.log" bash scripts/setup_env.sh
grep -h "compiled in" "$dir/setup.log" | sed 's/^/bench_fresh_install: /' || true
timed "smoke.sh" "$dir/smoke.log" bash scripts/smoke.sh
total=$((SECONDS - start))
again_start=$(date +%s%N)
HOME="$dir/home" bash scripts/setup_env.sh
echo "bench_fresh_install: setup_env.sh again $(( ($(date +%s%N) - again_start) / 1000000 )) ms (nothing missing)"
echo "bench_fresh_install: first result after $total s ($((total / 60)) min $((total % 60)) s): $(grep -E '^  evaluate:' "$dir/smoke.log" | sed 's/^ *//')"
