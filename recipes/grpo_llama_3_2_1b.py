"""Llama-3.2-1B-Instruct -> type-conditioned text-to-graph extractor: SFT, then GRPO, with LoRA.

    python recipes/grpo_llama_3_2_1b.py                       # 4-bit, one 8-12 GB GPU
    python recipes/grpo_llama_3_2_1b.py --w_relation_f1=2 --grpo_max_steps=300
    python recipes/grpo_llama_3_2_1b.py --dataset=conll04-train.jsonl --stages=grpo
    python recipes/grpo_llama_3_2_1b.py --smoke               # CPU, offline, a few minutes
    python recipes/grpo_llama_3_2_1b.py --help

The same pipeline as recipes/grpo_qwen_1_5b.py for another model family; only the defaults
differ. unsloth/Llama-3.2-1B-Instruct is an ungated copy of Meta's weights (Llama 3.2 licence).
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
    """Llama-3.2-1B-Instruct, 4-bit LoRA, SFT then GRPO on Text2Graph-Open-R1."""

    model: str = "unsloth/Llama-3.2-1B-Instruct"
    run_name: str = "t2g-llama3.2-1b"
    lora_r: int = 32  # a smaller model: a little more adapter capacity
    lora_alpha: int = 64
    sft_max_steps: int = 300  # the rest (learning rates, GRPO's 8 x 512-token groups) as TrainConfig: see --help

    # --smoke: SmolLM2-135M on CPU and the shipped examples (GPU_RECIPE_SMOKE says why these sizes).
    SMOKE_OVERRIDES = dict(GPU_RECIPE_SMOKE, run_name="t2g-smoke-llama")


if __name__ == "__main__":
    cli(Config, run_recipe)
