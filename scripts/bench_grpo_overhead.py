"""GRPO step time: the kit's GRPO stage against a plain TRL script, same model, settings, run.

    python scripts/bench_grpo_overhead.py                       # tiny model, CPU, a few minutes
    python scripts/bench_grpo_overhead.py --model=embedded:smollm2 --steps=6 --max_completion_length=64

CPU section: the recipe's GRPO stage (recipes/grpo_qwen_1_5b.py through t2g.train, backend hf:
SampleLog reward wrappers, diagnostics callback, checkpoint-at-end, TensorBoard, run directory)
and a plain TRL script (AutoModelForCausalLM + peft + GRPOTrainer with the same rewards, weights,
data, seed and GRPOConfig numbers) alternate for --rounds rounds in one process. Each step's wall
time is taken between consecutive on_step_end callbacks (so logging and callbacks count); the
first --warmup steps of each run are dropped. Prints the ratio kit / plain twice: from the pooled
medians, and from the best of the rounds per step (robust to other processes on a shared machine).
Both sides route TRL's Triton-only fused LM head to torch on CPU (t2g.train.trl_without_gpu): plain TRL 1.15
cannot train on CPU without it.

GPU section (only when CUDA is present): the recipe's GRPO stage with --backend=unsloth and with
--backend=hf, each in its own process (unsloth must be imported first), 4-bit: median step time
and peak GPU memory.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from t2g.flags import flag, run  # noqa: E402  (light)


@dataclass
class Flags:
    """GRPO step time: the kit's GRPO stage against a plain TRL script, same model, settings, run."""

    model: str = flag("embedded:tiny", "the model of the CPU section")
    steps: int = flag(8, "GRPO steps per run")
    rounds: int = flag(3, "CPU section: kit and plain TRL runs, alternating")
    warmup: int = flag(2, "first steps of each run left out of the timing")
    max_completion_length: int = flag(32, "tokens per sampled completion at most")
    num_generations: int = flag(4, "completions per prompt")
    batch_size: int = flag(4, "completions per step")
    gpu_model: str = flag("embedded:smollm2", "the model of the GPU section (unsloth vs hf, 4-bit)")


def step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

        def durations(self) -> list[float]:
            return [b - a for a, b in zip(self.ends, self.ends[1:])]

    return StepTimer()


def recipe_config(args: dict, out: Path):
    from t2g.train.config import from_flags
    from recipes_loader import load_recipe_config

    cls = load_recipe_config()
    flags = {"smoke": True, "stages": "grpo", "output_dir": str(out), "sample_every": 1, "save_steps": 10_000,
             "report_to": "tensorboard", **args}
    return from_flags(cls, flags)


def run_kit(cfg) -> list[float]:
    from t2g.train import pipeline as train

    timer = step_timer()
    session = train.start(cfg)
    session.callbacks.append(timer)
    train.grpo(session)
    return timer.durations()


def run_plain(cfg) -> list[float]:
    """What a user would write with TRL alone: same model, LoRA, data, rewards and GRPO numbers."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    import rewards
    from t2g.train.config import resolved_weights
    from t2g.train.trl_without_gpu import patch_trl_fused_lm_head
    from t2g.models.names import resolve_model_name
    from t2g.train.session import grpo_rows, load_data

    if not torch.cuda.is_available():
        patch_trl_fused_lm_head()
    name = resolve_model_name(cfg.model)
    tok = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    torch.manual_seed(cfg.seed)
    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                             target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM"))
    funcs, weights = rewards.build(resolved_weights(cfg), max_completion_length=cfg.max_completion_length,
                                   eos_token_id=tok.eos_token_id)
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="plain-trl-"), report_to="none", save_strategy="no", logging_steps=1,
        max_steps=cfg.grpo_max_steps, learning_rate=cfg.grpo_learning_rate, per_device_train_batch_size=cfg.grpo_batch_size,
        gradient_accumulation_steps=cfg.grpo_grad_accum, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, top_p=cfg.top_p, beta=cfg.beta,
        epsilon=cfg.epsilon, num_iterations=cfg.num_iterations, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards,
        mask_truncated_completions=cfg.mask_truncated_completions, reward_weights=weights, seed=cfg.seed,
        data_seed=cfg.seed, optim=cfg.optim, bf16=False, fp16=False, gradient_checkpointing=cfg.gradient_checkpointing,
        lr_scheduler_type="constant_with_warmup", warmup_steps=0.05,
    )
    timer = step_timer()
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=args, processing_class=tok, callbacks=[timer],
                          train_dataset=Dataset.from_list(grpo_rows(load_data(cfg), cfg)))
    trainer.train()
    return timer.durations()


def best_of(runs: list[list[float]]) -> list[float]:
    """Per step index, the fastest of the rounds: both sides sample the same completions (same seed),
    so step i is the same work in every run, and the minimum is the time least inflated by other
    processes on a shared machine."""
    return [min(times) for times in zip(*runs)]


def cpu_section(opts: dict) -> None:
    rounds, warmup = opts.pop("rounds"), opts.pop("warmup")
    kit_runs, plain_runs = [], []
    print(f"GRPO step time on CPU, model {opts['model']}, {opts['grpo_max_steps']} steps x {rounds} rounds, "
          f"{opts['grpo_batch_size']} completions of <= {opts['max_completion_length']} tokens per step")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            cfg = recipe_config({**opts, "backend": "hf"}, Path(tmp) / f"kit-{r}")
            plain_runs.append(run_plain(cfg)[warmup:])
            kit_runs.append(run_kit(cfg)[warmup:])
            print(f"  round {r}: plain TRL median {statistics.median(plain_runs[-1]):.3f} s/step, "
                  f"kit median {statistics.median(kit_runs[-1]):.3f} s/step")
    p = statistics.median([t for run in plain_runs for t in run])
    k = statistics.median([t for run in kit_runs for t in run])
    pb, kb = sum(best_of(plain_runs)), sum(best_of(kit_runs))
    print(f"pooled medians:  plain TRL {p:.3f} s/step, kit {k:.3f} s/step, ratio kit/plain = {k / p:.3f}")
    print(f"best of rounds:  plain TRL {pb:.3f} s, kit {kb:.3f} s for the same steps, ratio kit/plain = {kb / pb:.3f}")


GPU_WORKER = r"""
import json, sys, torch
sys.path.insert(0, {repo!r}); sys.path.insert(0, {scripts!r})
import bench_grpo_overhead as b
cfg = b.recipe_config({opts!r}, __import__('pathlib').Path({out!r}))
d = b.run_kit(cfg)[{warmup}:]
print("RESULT " + json.dumps({{"step_s": sorted(d)[len(d) // 2], "peak_gib": torch.cuda.max_memory_allocated() / 2**30}}))
"""


def gpu_section(opts: dict) -> None:
    import torch

    if not torch.cuda.is_available():
        print("GPU section skipped: no CUDA device")
        return
    print(f"GRPO on GPU ({torch.cuda.get_device_name(0)}), model {opts['model']}, 4-bit")
    results = {}
    for backend in ("unsloth", "hf"):
        with tempfile.TemporaryDirectory() as tmp:
            code = GPU_WORKER.format(repo=str(REPO), scripts=str(REPO / "scripts"), out=str(Path(tmp) / "run"),
                                     warmup=opts["warmup"], opts={**{k: v for k, v in opts.items() if k not in ("rounds", "warmup")},
                                                                  "backend": backend, "load_in_4bit": True})
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode or not line:
                print(f"  {backend}: failed (rc {proc.returncode}): {proc.stderr[-1500:]}")
                continue
            results[backend] = json.loads(line[0][len("RESULT "):])
            print(f"  {backend}: {results[backend]['step_s']:.3f} s/step, peak {results[backend]['peak_gib']:.2f} GiB")
    if len(results) == 2:
        print(f"unsloth/hf: step time {results['unsloth']['step_s'] / results['hf']['step_s']:.3f}, "
              f"peak memory {results['unsloth']['peak_gib'] / results['hf']['peak_gib']:.3f}")


def bench(flags: Flags) -> None:
    opts = dict(model=flags.model, grpo_max_steps=flags.steps, max_completion_length=flags.max_completion_length,
                num_generations=flags.num_generations, grpo_batch_size=flags.batch_size, grpo_grad_accum=1,
                rounds=flags.rounds, warmup=flags.warmup)
    cpu_section(dict(opts))
    gpu_section({**opts, "model": flags.gpu_model})


def main(argv: list[str] | None = None) -> None:
    run(Flags, bench, argv)


if __name__ == "__main__":
    main()
