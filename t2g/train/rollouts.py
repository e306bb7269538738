"""Which engine samples GRPO's completions (`--rollout`), and which settings each one cannot take.

- `trainer`: the policy's own `model.generate` (transformers; unsloth's kernels on CUDA).
- `llama.cpp`: a GGUF of the base weights in the dtype the trainer holds them in (`--rollout_base`)
  plus the current LoRA as a llama.cpp adapter, synced
  after every optimizer step, decoded in batches (`t2g.train.llama_rollout`). On CPUs and Apple
  machines it samples several times faster than `generate`, from the same policy.
- `vllm`: vLLM on CUDA, in the training process or a `trl vllm-serve` server (`--vllm_mode`).

`auto` picks, and GRPO prints what it picked and why: vllm when `--vllm_mode` is on; else trainer
on CUDA (unsloth's kernels) or where llama.cpp cannot sample the policy (a 4-bit base, fully trained
embeddings, several processes, llama-cpp-python absent); else llama.cpp. An explicit `--rollout`
that cannot work is refused in validation, before any model loads. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

FULLY_TRAINED = ("embed_tokens", "lm_head")  # trained in full (modules_to_save): no LoRA adapter carries them


def _llama_cpp_obstacles(cfg: Any) -> list[str]:
    """Why llama.cpp cannot sample this run's policy exactly, each with the fix."""
    from t2g.train import distributed

    out = []
    if importlib.util.find_spec("llama_cpp") is None:
        out.append("it needs llama-cpp-python: pip install 't2g[llama]'")
    if cfg.load_in_4bit:
        out.append("it samples from the 16/32-bit base weights, which a --load_in_4bit=True policy does not have: "
                   "pass --load_in_4bit=False (on a CPU 4-bit only costs time)")
    full = [m for m in cfg.lora_target_modules if m in FULLY_TRAINED]
    if full:
        out.append(f"{', '.join(full)} in --lora_target_modules are trained in full, which a llama.cpp LoRA adapter "
                   f"cannot carry: drop them from --lora_target_modules")
    if distributed.world_size() > 1:
        out.append("it runs in one process, and this is a multi-process launch")
    if cfg.lora_dropout > 0:  # llama.cpp has no dropout: its samples would come from another policy
        out.append(f"the trained policy applies --lora_dropout={cfg.lora_dropout} and llama.cpp has no dropout: "
                   f"pass --lora_dropout=0")
    return out


def resolve(cfg: Any, cuda: bool) -> tuple[str, str]:
    """(engine, why) for this run's --rollout on a machine with or without CUDA."""
    if cfg.rollout != "auto":
        return cfg.rollout, "--rollout=" + cfg.rollout
    if cfg.vllm_mode != "off":
        return "vllm", f"--vllm_mode={cfg.vllm_mode}"
    if cuda:
        return "trainer", "a CUDA GPU is visible (the trainer's own kernels)"
    obstacles = _llama_cpp_obstacles(cfg)
    if obstacles:
        return "trainer", "llama.cpp cannot sample this policy: " + "; ".join(obstacles)
    return "llama.cpp", "no CUDA GPU: llama.cpp samples faster than model.generate on CPUs"


def problems(cfg: Any, cuda_available: Callable[[], bool]) -> list[str]:
    """Every setting of the rollout flags that cannot work, as one message each (empty: all fine).
    `cuda_available` is called only where the answer depends on it (it imports torch)."""
    out = []
    if cfg.rollout in ("trainer", "llama.cpp") and cfg.vllm_mode != "off":
        out.append(f"--rollout={cfg.rollout} contradicts --vllm_mode={cfg.vllm_mode} (vLLM generation); drop one of them")
    if cfg.rollout == "vllm" and cfg.vllm_mode == "off":
        out.append("--rollout=vllm needs --vllm_mode=colocate (vLLM in the training process) or --vllm_mode=server "
                   "(trl vllm-serve), and a CUDA GPU with vllm installed")
    if cfg.rollout == "llama.cpp" and "grpo" in cfg.stages:
        out += [f"--rollout=llama.cpp: {why}, or use --rollout=trainer" for why in _llama_cpp_obstacles(cfg)]
    if cfg.rollout in ("trainer", "vllm") and cfg.rollout_base != "auto":
        out.append(f"--rollout_base={cfg.rollout_base} sets llama.cpp's base GGUF, and --rollout={cfg.rollout} does not "
                   "sample through llama.cpp; drop it or use --rollout=llama.cpp")
    if cfg.rollout_threads < 0:
        out.append(f"--rollout_threads={cfg.rollout_threads} must be >= 0 (0 = every core this process may use)")
    if cfg.dynamic_sampling < 0:
        out.append(f"--dynamic_sampling={cfg.dynamic_sampling} must be >= 0 (0 = keep every group)")
    if cfg.dynamic_sampling_spares < 0:
        out.append(f"--dynamic_sampling_spares={cfg.dynamic_sampling_spares} must be >= 0 (0 = no spare groups)")
    if cfg.top_k < 0:
        out.append(f"--top_k={cfg.top_k} must be >= 0 (0 = all tokens)")
    if not 0.0 <= cfg.min_p < 1.0:
        out.append(f"--min_p={cfg.min_p} must be within [0, 1) (0 = off)")
    if not 0.0 < cfg.top_p <= 1.0:
        out.append(f"--top_p={cfg.top_p} must be within (0, 1]")
    if cfg.epsilon_high < 0 or cfg.grpo_weight_decay < 0:
        out.append("--epsilon_high and --grpo_weight_decay must be >= 0")
    if cfg.shared_prefix == "on":
        if cfg.num_generations > 0 and cfg.grpo_batch_size % cfg.num_generations:
            out.append(f"--shared_prefix=on needs whole groups in every forward pass: --grpo_batch_size="
                       f"{cfg.grpo_batch_size} is not a multiple of --num_generations={cfg.num_generations}")
        if cfg.backend == "unsloth" and cuda_available():
            out.append("--shared_prefix=on: unsloth's CUDA trainer replaces TRL's loss computation; use "
                       "--shared_prefix=auto (off there) or --backend=hf")
    return out


def shared_prefix_on(cfg: Any, cuda: bool) -> bool:
    """Whether the loss computes each group's prompt once (`t2g.train.shared_prefix`)."""
    if cfg.shared_prefix != "auto":
        return cfg.shared_prefix == "on"
    return not (cfg.backend == "unsloth" and cuda) and cfg.num_generations > 0 and cfg.grpo_batch_size % cfg.num_generations == 0
