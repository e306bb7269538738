"""Settings that cannot work together, found before anything heavy runs.

`validate(cfg)` raises `ConfigError` for the first setting of a `TrainConfig` that cannot work: a
value outside a flag's choices, an unknown reward, a batch that does not divide into groups, a
GPU-only option on a CPU machine, a run directory that would be overwritten. It imports torch only
to ask whether CUDA is there, and only when a GPU-only option is asked for, so a wrong setting fails
in a second instead of after a model download.

Rewards are named by the registry (`rewards.REGISTRY`), never by a hand-kept list; the weights GRPO
trains with are `resolved_weights(cfg)`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from t2g.flags import FlagError, check_choice, flag_fields, nearest
from t2g.train import distributed

WEIGHT_PREFIX = "w_"  # --w_<reward>: one weight flag per registered reward


class ConfigError(FlagError):
    """A flag or a combination of flags that cannot work; raised before anything heavy runs."""


# ----------------------------------------------------------------------------------------------
# Rewards by name


def reward_names() -> list[str]:
    import rewards  # light: plain functions over t2g's scorer

    return list(rewards.REGISTRY)


def default_weights() -> dict[str, float]:
    import rewards

    return dict(rewards.DEFAULT_WEIGHTS)


def resolved_weights(cfg: Any) -> dict[str, float]:
    """The registry's default weights, overridden by the config's (recipe's, then flags')."""
    return {**default_weights(), **{k: float(v) for k, v in cfg.reward_weights.items()}}


# ----------------------------------------------------------------------------------------------
# What this machine has


def cuda_available() -> bool:
    import torch  # only imported when a GPU-only option is asked for

    return bool(torch.cuda.is_available())


def warn_emulated_bf16() -> None:
    """--dtype=bf16 works on any CPU, but without AMX or AVX512-BF16 torch emulates it, many times slower
    than fp32 (28.7x on an AVX2 EPYC, scripts/bench_sft_cpu.py): say so before a run crawls for hours."""
    from t2g.train import cpu_features as cpu

    if cpu.native_bf16() is False and not cuda_available():
        print(f"t2g: warning: --dtype=bf16 on a CPU without AMX or AVX512-BF16 ({cpu.model_name()}): torch emulates "
              f"bf16 there, many times slower than --dtype=fp32 (the CPU default)", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Validation


def validate(cfg: Any) -> None:
    """Raise ConfigError for the first setting of `cfg` (a TrainConfig) that cannot work."""
    if not cfg.stages:
        raise ConfigError(f"--stages is empty; give some of {','.join(_choices(cfg, 'stages'))}")
    _validate_choices(cfg)
    from t2g.models.names import ModelNameError, check_model_name

    try:
        check_model_name(cfg.model)
    except ModelNameError as exc:
        raise ConfigError(str(exc)) from None
    if "export" in cfg.stages and not cfg.export_quants:
        raise ConfigError("--export_quants is empty; give at least one GGUF type, e.g. --export_quants=q8_0")
    if cfg.parity_limit < 0 or cfg.eval_limit < 0:
        raise ConfigError("--parity_limit and --eval_limit must be >= 0")
    if cfg.dtype == "fp16" and not cuda_available():
        raise ConfigError("--dtype=fp16 needs a CUDA GPU (CPU has no fp16 autocast); use --dtype=bf16 or --dtype=fp32")
    if cfg.dtype == "bf16":
        warn_emulated_bf16()
    if "wandb" in cfg.report_to and importlib.util.find_spec("wandb") is None:
        raise ConfigError("--report_to=wandb needs the wandb package: pip install wandb (then wandb login)")
    _validate_rewards(cfg)
    _validate_sizes(cfg)
    _validate_processes(cfg)
    _validate_gpu_options(cfg)
    _validate_output(cfg)
    unsupported = [s for s in cfg.stages if s not in cfg.RECIPE_STAGES]
    if unsupported:
        raise ConfigError(f"--stages: this recipe runs {','.join(cfg.RECIPE_STAGES)}; it has no {','.join(unsupported)} "
                          f"stage (yet)")


def _choices(cfg: Any, name: str) -> tuple[str, ...]:
    return next(f.metadata.get("choices") or () for f in flag_fields(type(cfg)) if f.name == name)


def _validate_choices(cfg: Any) -> None:
    """Every value against its flag's choices: a recipe's defaults and SMOKE_OVERRIDES too, not only
    the flags given on the command line."""
    for field in flag_fields(type(cfg)):
        if field.metadata.get("choices"):
            try:
                check_choice(type(cfg), field.name, getattr(cfg, field.name))
            except FlagError as exc:
                raise ConfigError(str(exc)) from None


def _validate_rewards(cfg: Any) -> None:
    names = reward_names()
    for name, weight in cfg.reward_weights.items():
        if name not in names:
            raise ConfigError(f"unknown reward {name!r} in reward_weights: "
                              f"{nearest(WEIGHT_PREFIX + name, [WEIGHT_PREFIX + n for n in names])} "
                              f"(rewards: {', '.join(names)})")
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"--{WEIGHT_PREFIX}{name}={weight!r}: weights must be numbers >= 0")
    if "grpo" in cfg.stages:
        import rewards

        try:  # the same selection GRPO will make (zero weights and reasoning-only rewards dropped)
            rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning)
        except ValueError as exc:
            raise ConfigError(f"reward weights: {exc}; set some --w_<name> above 0") from None


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name}={getattr(cfg, name)!r} must be > 0")


def _validate_sizes(cfg: Any) -> None:
    _positive(cfg, "max_seq_length", "max_prompt_length", "lora_r", "lora_alpha", "sft_batch_size",
              "sft_grad_accum", "grpo_batch_size", "grpo_grad_accum", "num_generations",
              "max_completion_length", "save_steps", "logging_steps", "sft_learning_rate",
              "grpo_learning_rate", "num_iterations")
    if cfg.num_generations < 2:
        raise ConfigError("--num_generations must be >= 2: GRPO's advantage compares completions of one prompt")
    if cfg.temperature <= 0:
        raise ConfigError("--temperature must be > 0 for GRPO sampling")
    generation_batch = cfg.grpo_batch_size * cfg.grpo_grad_accum
    if "grpo" in cfg.stages and generation_batch % cfg.num_generations:
        raise ConfigError(
            f"the generation batch (--grpo_batch_size={cfg.grpo_batch_size} x --grpo_grad_accum={cfg.grpo_grad_accum} "
            f"= {generation_batch} completions) is not divisible by --num_generations={cfg.num_generations}; "
            f"make it a multiple, e.g. --grpo_batch_size={cfg.num_generations}")
    if cfg.max_prompt_length + cfg.max_completion_length > cfg.max_seq_length:
        raise ConfigError(
            f"--max_prompt_length={cfg.max_prompt_length} + --max_completion_length={cfg.max_completion_length} "
            f"exceeds --max_seq_length={cfg.max_seq_length}; raise --max_seq_length or lower one of them")
    if cfg.sft_max_steps <= 0 and cfg.sft_epochs <= 0:
        raise ConfigError("give --sft_max_steps > 0 or --sft_epochs > 0")
    if cfg.grpo_max_steps <= 0:
        raise ConfigError("--grpo_max_steps must be > 0")
    if cfg.max_examples < 0 or cfg.augment_copies < 0 or cfg.sample_every < 0:
        raise ConfigError("--max_examples, --augment_copies and --sample_every must be >= 0")


def _validate_processes(cfg: Any) -> None:
    processes = distributed.world_size()
    if processes > 1 and cfg.backend == "unsloth":
        raise ConfigError(
            f"--backend=unsloth trains on one GPU in one process, and this is a {processes}-process launch "
            f"(WORLD_SIZE={processes}); for several GPUs or nodes use --backend=hf under accelerate launch "
            f"(DDP, DeepSpeed or FSDP: see docs/scaling.md), or run unsloth with plain python")


def _validate_gpu_options(cfg: Any) -> None:
    """One vLLM switch: --fast_inference is unsloth's spelling of --vllm_mode=colocate."""
    if cfg.fast_inference:
        if cfg.vllm_mode == "server":
            raise ConfigError("--fast_inference (vLLM inside the training process) contradicts --vllm_mode=server; "
                              "give one of them")
        if cfg.backend != "unsloth":
            raise ConfigError("--fast_inference is unsloth's built-in vLLM; with --backend=hf use --vllm_mode=colocate "
                              "(or --vllm_mode=server with trl vllm-serve)")
        cfg.vllm_mode = "colocate"
    if cfg.vllm_mode == "off":
        return
    flag = "--fast_inference" if cfg.fast_inference else f"--vllm_mode={cfg.vllm_mode}"
    if cfg.vllm_mode == "server" and cfg.backend != "hf":
        raise ConfigError("--vllm_mode=server (generations from trl vllm-serve) runs with --backend=hf; unsloth's vLLM "
                          "runs inside the training process: --vllm_mode=colocate")
    if cfg.backend == "unsloth":
        cfg.fast_inference = True  # --vllm_mode=colocate on unsloth is its fast_inference engine
    if not cuda_available():
        raise ConfigError(f"{flag} uses vLLM, which needs a CUDA GPU and none is visible; "
                          f"drop {flag} to generate with transformers")
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"{flag} needs vLLM: pip install vllm (or drop {flag})")
    if not 0.05 <= cfg.gpu_memory_utilization <= 0.95:
        raise ConfigError(f"--gpu_memory_utilization={cfg.gpu_memory_utilization} must be within 0.05..0.95")
    if cfg.vllm_mode == "server" and not (0 < cfg.vllm_server_port < 65536 and cfg.vllm_server_timeout > 0):
        raise ConfigError("--vllm_server_port must be within 1..65535 and --vllm_server_timeout > 0")


def _validate_output(cfg: Any) -> None:
    if cfg.resume:
        if not cfg.output_dir:
            raise ConfigError("--resume needs --output_dir=<the run directory to continue>")
        if not (Path(cfg.output_dir) / "config.json").is_file():
            raise ConfigError(f"--resume: {cfg.output_dir} is not a run directory (no config.json); "
                              f"give the directory a previous run printed as 'run directory: ...'")
    elif cfg.output_dir and Path(cfg.output_dir).exists() and any(Path(cfg.output_dir).iterdir()):
        raise ConfigError(f"--output_dir={cfg.output_dir} exists and is not empty; pass --resume to continue "
                          f"that run, or choose a new directory")
