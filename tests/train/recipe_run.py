"""The recipe run as a user runs it, in a subprocess: one place builds its command line and environment.

    run_recipe("--smoke", "--stages=sft")                      # python recipes/grpo_qwen_1_5b.py ...
    run_recipe("--smoke", launcher=accelerate_launch(2))       # accelerate launch ... recipes/...
    run_recipe_ok(...)                                         # the same, asserting exit status 0

and the data the training tests share: texts with nothing to extract (`write_nothing_to_extract`) and the
flags of a tiny CPU run (`tiny_args`), and the adapter a run saved (`lora_tensors`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.py"))
MAIN_RECIPE = REPO / "recipes" / "grpo_qwen_1_5b.py"
ACCELERATE = Path(sys.executable).with_name("accelerate")
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"

# Never install, download or fetch llama.cpp from a test; quiet tokenizers in forked processes.
OFFLINE = dict(UNSLOTH_AUTO_INSTALL="0", UNSLOTH_LLAMA_CPP_OFFLINE="1", HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")


def run_recipe(*args: str, recipe: Path = MAIN_RECIPE, launcher: Sequence[str] = (), env: dict | None = None,
               cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess:
    """The recipe with `args`, under `launcher` (default: this python); the caller checks the outcome."""
    command = [*launcher] if launcher else [sys.executable]
    return subprocess.run([*command, str(recipe), *args], capture_output=True, text=True,
                          env={**os.environ, **OFFLINE, **(env or {})}, timeout=timeout, cwd=cwd)


def run_recipe_ok(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """run_recipe, which must succeed; otherwise the failure shows the ends of its output."""
    proc = run_recipe(*args, **kwargs)
    assert proc.returncode == 0, f"recipe failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def accelerate_launch(processes: int = 2) -> list[str]:
    """accelerate launch with the shipped DDP config (MULTI_GPU: torchrun; without GPUs a gloo group on CPU)."""
    return [str(ACCELERATE), "launch", "--config_file", str(ACCELERATE_CONFIGS / "ddp.yaml"),
            "--num_processes", str(processes), "--dynamo_backend", "no", "--main_process_port", "0"]


TEXTS = ["The weather was mild all week.", "Rain fell on the quiet hills.", "A cat slept near the warm stove.",
         "The river rose after the storm.", "Bread baked slowly in the oven.", "Leaves turned gold in the wind.",
         "The clock ticked in the empty hall.", "Snow covered the long road."]


def write_nothing_to_extract(path: Path) -> Path:
    """Short texts whose graph is empty: the answer is the 9-token empty graph."""
    rows = [{"id": f"e{i}", "text": t, "entity_types": ["person", "organization"], "relation_types": ["works for"],
             "graph": {"entities": [], "relations": []}} for i, t in enumerate(TEXTS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_args(model: Path, data: Path, out: Path | None, *extra: str) -> list[str]:
    """8 SFT steps, 2 GRPO steps of 2 prompts x 4 completions x 16 tokens; no --output_dir when out is None."""
    return ["--smoke", f"--model={model}", f"--dataset={data}", *([f"--output_dir={out}"] if out else []),
            "--sft_max_steps=8", "--sft_learning_rate=2e-2", "--grpo_max_steps=2", "--grpo_learning_rate=1e-3",
            "--max_completion_length=16", "--num_generations=4", "--grpo_batch_size=8", "--grpo_grad_accum=1",
            "--lora_target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head",
            "--save_steps=1", "--sample_every=1", *extra]


def lora_tensors(adapter_dir: Path) -> dict:
    """A saved adapter's tensors by name; it must hold LoRA A and B matrices."""
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in weights) and any("lora_B" in k for k in weights)
    return weights
