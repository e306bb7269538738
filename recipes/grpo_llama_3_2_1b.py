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

os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from t2g.train.config import TrainConfig, cli  # noqa: E402  (light: nothing heavy is imported here)
from t2g.train.pipeline import run_recipe  # noqa: E402


@dataclass
class Config(TrainConfig):
    """Llama-3.2-1B-Instruct, 4-bit LoRA, SFT then GRPO on Text2Graph-Open-R1."""

    model: str = "unsloth/Llama-3.2-1B-Instruct"
    run_name: str = "t2g-llama3.2-1b"
    lora_r: int = 32  # a smaller model: a little more adapter capacity
    lora_alpha: int = 64
    sft_max_steps: int = 300
    sft_learning_rate: float = 2e-4
    grpo_max_steps: int = 500
    grpo_learning_rate: float = 5e-6
    grpo_batch_size: int = 8
    grpo_grad_accum: int = 2
    num_generations: int = 8

    SMOKE_OVERRIDES = dict(
        model="embedded:smollm2", dataset="examples", run_name="t2g-smoke-llama", load_in_4bit=False,
        augment_copies=0, max_seq_length=1024, max_prompt_length=512, max_completion_length=128,
        sft_max_steps=16, sft_batch_size=4, sft_grad_accum=1, sft_learning_rate=5e-4,
        grpo_max_steps=3, grpo_batch_size=4, grpo_grad_accum=1, num_generations=4,
        save_steps=2, sample_every=1, gradient_checkpointing=False,
    )


if __name__ == "__main__":
    cli(Config, run_recipe)
