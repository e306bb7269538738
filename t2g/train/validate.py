"""Settings that cannot work together, found before anything heavy runs.

`validate(cfg)` raises one `ConfigError` that names every setting of a `TrainConfig` that cannot
work, one per line: a value outside a flag's choices, an unknown reward, a batch that does not divide
into groups, a GPU-only option on a CPU machine, vLLM on a 4-bit base with the hf backend, a run
directory that would be overwritten, a resumed run whose saved adapter has other LoRA settings than
the flags. Each check returns its problems rather than stopping at the first, so one run of the
command lists everything to fix. It imports torch only to ask whether CUDA is there, and only when a
GPU-only option is asked for, so a wrong setting fails in a second instead of after a model download.

Rewards are named by the registry (`rewards.REGISTRY`), never by a hand-kept list; the weights GRPO
trains with are `resolved_weights(cfg)`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from t2g.flags import FlagError, check_choice, flag_fields, nearest
from t2g.train import distributed, rollouts

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
    """Raise one ConfigError naming every setting of `cfg` (a TrainConfig) that cannot work."""
    problems: list[str] = []
    if not cfg.stages:
        problems.append(f"--stages is empty; give some of {','.join(_choices(cfg, 'stages'))}")
    problems += _validate_choices(cfg)
    from t2g.models.names import ModelNameError, check_model_name

    try:
        check_model_name(cfg.model)
    except ModelNameError as exc:
        problems.append(str(exc))
    if "export" in cfg.stages and not cfg.export_quants:
        problems.append("--export_quants is empty; give at least one GGUF type, e.g. --export_quants=q8_0")
    if cfg.parity_limit < 0 or cfg.eval_limit < 0:
        problems.append("--parity_limit and --eval_limit must be >= 0")
    if cfg.dtype == "fp16" and not cuda_available():
        problems.append("--dtype=fp16 needs a CUDA GPU (CPU has no fp16 autocast); use --dtype=bf16 or --dtype=fp32")
    if cfg.dtype == "bf16":
        warn_emulated_bf16()
    if "wandb" in cfg.report_to and importlib.util.find_spec("wandb") is None:
        problems.append("--report_to=wandb needs the wandb package: pip install wandb (then wandb login)")
    problems += _validate_rewards(cfg)
    problems += _validate_sizes(cfg)
    problems += _validate_processes(cfg)
    problems += _validate_gpu_options(cfg)
    problems += rollouts.problems(cfg, cuda_available)  # after the GPU options: --fast_inference means --vllm_mode=colocate
    problems += _validate_output(cfg)
    problems += saved_lora_mismatch(cfg)
    unsupported = [s for s in cfg.stages if s not in cfg.RECIPE_STAGES]
    if unsupported:
        problems.append(f"--stages: this recipe runs {','.join(cfg.RECIPE_STAGES)}; it has no {','.join(unsupported)} "
                        f"stage (yet)")
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} settings cannot work:\n" + "\n".join(f"  - {p}" for p in problems))


def _choices(cfg: Any, name: str) -> tuple[str, ...]:
    return next(f.metadata.get("choices") or () for f in flag_fields(type(cfg)) if f.name == name)


def _validate_choices(cfg: Any) -> list[str]:
    """Every value against its flag's choices: a recipe's defaults and SMOKE_OVERRIDES too, not only
    the flags given on the command line."""
    out = []
    for field in flag_fields(type(cfg)):
        if field.metadata.get("choices"):
            try:
                check_choice(type(cfg), field.name, getattr(cfg, field.name))
            except FlagError as exc:
                out.append(str(exc))
    return out


def _validate_rewards(cfg: Any) -> list[str]:
    names = reward_names()
    out = []
    for name, weight in cfg.reward_weights.items():
        if name not in names:
            out.append(f"unknown reward {name!r} in reward_weights: "
                       f"{nearest(WEIGHT_PREFIX + name, [WEIGHT_PREFIX + n for n in names])} "
                       f"(rewards: {', '.join(names)})")
        elif not isinstance(weight, (int, float)) or weight < 0:
            out.append(f"--{WEIGHT_PREFIX}{name}={weight!r}: weights must be numbers >= 0")
    if "grpo" in cfg.stages and not out:  # the build below needs known names and numbers
        import rewards

        try:  # the same selection GRPO will make (zero weights and reasoning-only rewards dropped)
            rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning)
        except ValueError as exc:
            out.append(f"reward weights: {exc}; set some --w_<name> above 0")
    return out


def _positive(cfg: Any, *names: str) -> list[str]:
    return [f"--{name}={getattr(cfg, name)!r} must be > 0" for name in names if getattr(cfg, name) <= 0]


def _validate_sizes(cfg: Any) -> list[str]:
    out = _positive(cfg, "max_seq_length", "max_prompt_length", "lora_r", "lora_alpha", "sft_batch_size",
              "sft_grad_accum", "grpo_batch_size", "grpo_grad_accum", "num_generations",
              "save_steps", "logging_steps", "sft_learning_rate",
              "grpo_learning_rate", "num_iterations")
    if cfg.num_generations < 2:
        out.append("--num_generations must be >= 2: GRPO's advantage compares completions of one prompt")
    if cfg.temperature <= 0:
        out.append("--temperature must be > 0 for GRPO sampling")
    generation_batch = cfg.grpo_batch_size * cfg.grpo_grad_accum
    if "grpo" in cfg.stages and generation_batch > 0 and cfg.num_generations > 0 and generation_batch % cfg.num_generations:
        out.append(
            f"the generation batch (--grpo_batch_size={cfg.grpo_batch_size} x --grpo_grad_accum={cfg.grpo_grad_accum} "
            f"= {generation_batch} completions) is not divisible by --num_generations={cfg.num_generations}; "
            f"make it a multiple, e.g. --grpo_batch_size={cfg.num_generations}")
    if isinstance(cfg.max_completion_length, str):
        if cfg.max_completion_length != "auto":
            out.append(f"--max_completion_length={cfg.max_completion_length!r}: give a number of tokens or auto")
    elif cfg.max_completion_length <= 0:
        out.append(f"--max_completion_length={cfg.max_completion_length!r} must be > 0")
    elif cfg.max_prompt_length + cfg.max_completion_length > cfg.max_seq_length:
        out.append(
            f"--max_prompt_length={cfg.max_prompt_length} + --max_completion_length={cfg.max_completion_length} "
            f"exceeds --max_seq_length={cfg.max_seq_length}; raise --max_seq_length or lower one of them")
    if cfg.sft_max_steps <= 0 and cfg.sft_epochs <= 0:
        out.append("give --sft_max_steps > 0 or --sft_epochs > 0")
    if cfg.grpo_max_steps <= 0:
        out.append("--grpo_max_steps must be > 0")
    if cfg.max_examples < 0 or cfg.augment_copies < 0 or cfg.sample_every < 0:
        out.append("--max_examples, --augment_copies and --sample_every must be >= 0")
    for name in ("augment_rename_prob", "augment_empty_prob", "augment_drop_prob", "augment_keep_all_prob"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            out.append(f"--{name}={getattr(cfg, name)}: give a share between 0 and 1")
    for name, active, does in (("augment_distractors", cfg.augment_distractors != "none", "offers foreign types in"),
                               ("augment_synonyms", cfg.augment_synonyms != "none", "renames types in"),
                               ("augment_keep_all_prob", cfg.augment_keep_all_prob > 0, "keeps whole answers in")):
        if active and not cfg.augment_copies:
            out.append(f"--{name}={getattr(cfg, name)} {does} the augmented copies, and "
                       f"--augment_copies=0 makes none: give --augment_copies=1 or more")
    return out


def _validate_processes(cfg: Any) -> list[str]:
    processes = distributed.world_size()
    if processes <= 1 or cfg.backend != "unsloth":
        return []
    return [f"--backend=unsloth trains on one GPU in one process, and this is a {processes}-process launch "
            f"(WORLD_SIZE={processes}); for several GPUs or nodes use --backend=hf under accelerate launch "
            f"(DDP, DeepSpeed or FSDP: see docs/scaling.md), or run unsloth with plain python"]


def _validate_gpu_options(cfg: Any) -> list[str]:
    """One vLLM switch: --fast_inference is unsloth's spelling of --vllm_mode=colocate."""
    if cfg.fast_inference:
        if cfg.vllm_mode == "server":
            return ["--fast_inference (vLLM inside the training process) contradicts --vllm_mode=server; give one of them"]
        if cfg.backend != "unsloth":
            return ["--fast_inference is unsloth's built-in vLLM; with --backend=hf use --vllm_mode=colocate "
                    "(or --vllm_mode=server with trl vllm-serve)"]
        cfg.vllm_mode = "colocate"
    if cfg.vllm_mode == "off":
        return []
    out = []
    flag = "--fast_inference" if cfg.fast_inference else f"--vllm_mode={cfg.vllm_mode}"
    if cfg.vllm_mode == "server" and cfg.backend != "hf":
        out.append("--vllm_mode=server (generations from trl vllm-serve) runs with --backend=hf; unsloth's vLLM "
                   "runs inside the training process: --vllm_mode=colocate")
    if cfg.backend == "unsloth":
        cfg.fast_inference = True  # --vllm_mode=colocate on unsloth is its fast_inference engine
        full = [m for m in cfg.lora_target_modules if m in ("embed_tokens", "lm_head")]
        if full:  # unsloth's get_peft_model raises NotImplementedError for them, after vLLM has started
            out.append(f"{flag}: unsloth's vLLM engine cannot serve a fully trained {' or '.join(full)}; drop "
                       f"{','.join(full)} from --lora_target_modules, or drop {flag}")
    if cfg.backend == "hf" and cfg.load_in_4bit:
        # TRL merges the LoRA into the base before each generation to push the weights to vLLM, then
        # unmerges: on bitsandbytes 4-bit layers that re-quantizes the base every step (TRL #4973), and
        # the server rejects the packed 4-bit shapes (TRL #3466). unsloth's engine takes the LoRA as is.
        out.append(f"--backend=hf {flag} with --load_in_4bit=True: TRL merges the LoRA into the base weights before "
                   f"every generation to send them to vLLM, and on 4-bit weights that re-quantizes the base each "
                   f"step (and vllm-serve refuses the 4-bit shapes); add --load_in_4bit=False (the 16-bit base), or "
                   f"use --backend=unsloth --fast_inference (vLLM beside the 4-bit base, no merge)")
    if not cuda_available():
        out.append(f"{flag} uses vLLM, which needs a CUDA GPU and none is visible; drop {flag} to generate with "
                   f"transformers")
    elif importlib.util.find_spec("vllm") is None:
        out.append(f"{flag} needs vLLM: pip install vllm at the kit's pin (pip install -e '.[vllm]', see docs/gpu.md), "
                   f"or drop {flag}")
    if not 0.05 <= cfg.gpu_memory_utilization <= 0.95:
        out.append(f"--gpu_memory_utilization={cfg.gpu_memory_utilization} must be within 0.05..0.95")
    if cfg.vllm_mode == "server" and not (0 < cfg.vllm_server_port < 65536 and cfg.vllm_server_timeout > 0):
        out.append("--vllm_server_port must be within 1..65535 and --vllm_server_timeout > 0")
    return out


def _validate_output(cfg: Any) -> list[str]:
    if cfg.resume:
        if not cfg.output_dir:
            return ["--resume needs --output_dir=<the run directory to continue>"]
        if not (Path(cfg.output_dir) / "config.json").is_file():
            return [f"--resume: {cfg.output_dir} is not a run directory (no config.json); "
                    f"give the directory a previous run printed as 'run directory: ...'"]
    elif cfg.output_dir and Path(cfg.output_dir).exists() and any(Path(cfg.output_dir).iterdir()):
        return [f"--output_dir={cfg.output_dir} exists and is not empty; pass --resume to continue "
                f"that run, or choose a new directory"]
    return []


# The LoRA flags a saved adapter fixes, by their adapter_config.json keys. A resumed stage loads
# that adapter (or a checkpoint of it): unsloth's get_peft_model raises TypeError after the model
# has loaded when the flags differ, and PEFT silently keeps the saved settings.
LORA_KEYS = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout"}
TRAINING_STAGES = ("sft", "grpo")


def saved_adapter_configs(run_dir: Path) -> list[Path]:
    """The adapter configs a resumed run may load: each training stage's final adapter and checkpoints."""
    found = []
    for stage in TRAINING_STAGES:
        found += sorted((run_dir / stage).glob("adapter/adapter_config.json"))
        found += sorted((run_dir / stage).glob("checkpoint-*/adapter_config.json"))
    return found


def saved_lora_mismatch(cfg: Any) -> list[str]:
    """--resume (with any --stages) against the LoRA settings the run saved, before any model loads."""
    if not cfg.resume or not cfg.output_dir or not any(s in cfg.stages for s in TRAINING_STAGES):
        return []
    import json

    for path in saved_adapter_configs(Path(cfg.output_dir)):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a checkpoint cut short while saving; the resume skips it too
        wrong = {name: saved[key] for name, key in LORA_KEYS.items()
                 if key in saved and not _same(saved[key], getattr(cfg, name))}
        targets = _saved_targets(saved)
        if targets is not None and targets != set(cfg.lora_target_modules):
            wrong["lora_target_modules"] = ",".join(sorted(targets))
        if wrong:
            given = " ".join(f"--{name}={_flag_value(getattr(cfg, name))}" for name in wrong)
            keep = " ".join(f"--{name}={_flag_value(value)}" for name, value in wrong.items())
            return [f"--resume: the run's saved adapter ({path.parent}) was trained with {keep}, and the flags give "
                    f"{given}; the adapter's shape and scale are fixed once trained. Resume with {keep}, or start a "
                    f"new run (a new --output_dir) to train with the new settings"]
    return []


def _same(saved: Any, given: Any) -> bool:
    return float(saved) == float(given) if isinstance(saved, (int, float)) else saved == given


def _saved_targets(saved: dict) -> set[str] | None:
    """The modules an adapter trains: LoRA targets plus fully trained ones (t2g and unsloth move
    embed_tokens/lm_head there); None for a regex target, which a flag list cannot be compared with."""
    targets = saved.get("target_modules")
    if not isinstance(targets, list):
        return None
    return set(targets) | set(saved.get("modules_to_save") or ())


def _flag_value(value: Any) -> str:
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)
