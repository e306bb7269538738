"""The training configuration: one dataclass, exposed on the command line through Fire.

A recipe subclasses `TrainConfig` to change defaults and calls `cli(Config, main)`. Flags are the
dataclass fields, plus one `--w_<reward>` per reward in `rewards.REGISTRY`. Everything here runs
BEFORE torch/transformers/unsloth are imported, so a misspelt flag, an unknown reward, a batch that
does not divide into groups or a GPU-only option on a CPU machine fails in a second, with the
nearest valid names, instead of after a model download.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar, get_type_hints

STAGES = ("sft", "grpo", "export", "evaluate")
BACKENDS = ("unsloth", "hf")
DTYPES = ("auto", "bf16", "fp16", "fp32")
REPORT_TO = ("tensorboard", "wandb", "none")
VLLM_MODES = ("off", "colocate", "server")
WEIGHT_PREFIX = "w_"
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --smoke's export and evaluation, common to every recipe: one GGUF, no 16-bit HF copy, a parity
# check that warns (on 4 examples one differing answer is a 25-point swing), a short evaluation.
SMOKE_EXPORT_EVAL: dict[str, Any] = dict(export_quants=("q8_0",), export_hf=False, parity_limit=4,
                                         on_parity_fail="warn", eval_limit=8)


class ConfigError(ValueError):
    """A flag or a combination of flags that cannot work; raised before anything heavy runs."""


@dataclass
class TrainConfig:
    """SFT then GRPO with LoRA. Every field is a flag: --name=value."""

    # What to run
    stages: tuple = STAGES  # any of sft, grpo, export, evaluate; they run in this order
    smoke: bool = False  # CPU-sized end-to-end run on a small offline model and the shipped examples

    # Model
    model: str = "Qwen/Qwen2.5-1.5B-Instruct"  # hub name or local HF folder
    backend: str = "unsloth"  # unsloth (one GPU, one process) | hf (transformers + peft; also under accelerate launch)
    load_in_4bit: bool = True
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32 (compute dtype)
    max_seq_length: int = 2048  # prompt + completion, in tokens
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: tuple = DEFAULT_LORA_TARGETS
    gradient_checkpointing: bool = True
    # GRPO generation with vLLM (CUDA + vllm only). off: transformers' generate. colocate: vLLM inside
    # the training process (unsloth: its fast_inference engine; hf: TRL's colocate mode). server: TRL's
    # `trl vllm-serve` on other GPUs (hf backend), reached at vllm_server_host:vllm_server_port.
    vllm_mode: str = "off"  # off | colocate | server
    fast_inference: bool = False  # unsloth's name for --vllm_mode=colocate (either flag turns it on)
    gpu_memory_utilization: float = 0.6  # vLLM's share of GPU memory when colocated
    vllm_server_host: str = "127.0.0.1"
    vllm_server_port: int = 8000
    vllm_server_timeout: float = 240.0  # seconds to wait for the server to answer /health
    trust_remote_code: bool = False

    # Data
    dataset: str = "Ihor/Text2Graph-Open-R1"  # .jsonl / SpERT .json / text2graph rows / hub name / "examples"
    dataset_format: str = "auto"
    dataset_split: str = "train"
    label_map: str = "auto"
    max_examples: int = 0  # 0 = all
    augment_copies: int = 1  # type-augmented copies per example (0 = none)
    reasoning: bool = False  # ask for a <think> block first; SFT targets use the data's traces
    max_prompt_length: int = 1024  # every prompt is checked against this before training
    drop_long_examples: bool = False  # drop (and count) examples over the limits instead of failing

    # SFT
    sft_max_steps: int = -1  # -1: run sft_epochs
    sft_epochs: float = 1.0
    sft_learning_rate: float = 2e-4
    sft_batch_size: int = 4
    sft_grad_accum: int = 4
    sft_warmup_ratio: float = 0.03

    # GRPO
    grpo_max_steps: int = 500
    grpo_learning_rate: float = 5e-6
    grpo_batch_size: int = 8  # completions per device per step
    grpo_grad_accum: int = 2
    num_generations: int = 8  # completions per prompt (the group)
    max_completion_length: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL coefficient (0: no reference model)
    epsilon: float = 0.2
    num_iterations: int = 1
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    # False: a completion cut at the limit must get a gradient, or the `truncation` penalty can never
    # push the policy away from looping (docs/results.md: with True, GRPO runs drifted into loops).
    mask_truncated_completions: bool = False
    reward_weights: dict = field(default_factory=dict)  # name -> weight; --w_<name> flags fill it

    # Export (after training): LoRA merged, GGUF, Ollama Modelfile, HF-vs-GGUF parity check
    export_quants: tuple = ("q8_0",)  # f32 f16 bf16 q8_0 q4_k_m ...; the first is parity-checked and evaluated
    export_hf: bool = True  # keep the merged 16-bit HF folder in export/hf
    parity_limit: int = 8  # examples of eval_data for the parity check (0 = no check)
    parity_threshold: float = 0.05  # largest allowed drop of the GGUF's JSON validity or F1 against HF
    on_parity_fail: str = "fail"  # fail | warn

    # Evaluate (after training, or after export: then through the GGUF with llama.cpp)
    eval_data: str = "examples"  # any dataset the converters read; "examples" = the shipped 36
    eval_limit: int = 0  # 0 = every example

    # Runs
    output_dir: str = ""  # "" = runs/<run_name>-<timestamp>
    run_name: str = "t2g"
    resume: bool = False  # continue the run in --output_dir from its last checkpoint
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 1
    sample_every: int = 10  # steps between logged sample completions (0 = never)
    report_to: tuple = ("tensorboard",)  # tensorboard, wandb, none
    seed: int = 42
    optim: str = "adamw_torch"

    # The recipe's CPU-sized settings for --smoke; explicit flags still win over them.
    SMOKE_OVERRIDES: ClassVar[Mapping[str, Any]] = {}
    # The stages the recipe's main() runs; --stages may name only these (a stage it would skip is an error).
    RECIPE_STAGES: ClassVar[tuple[str, ...]] = STAGES

    def flag_names(self) -> list[str]:
        return [f.name for f in fields(self)]

    def to_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in self.flag_names()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------------
# Rewards: names come from the registry, never from a hand-kept list.


def reward_names() -> list[str]:
    import rewards  # light: plain functions over t2g's scorer

    return list(rewards.REGISTRY)


def default_weights() -> dict[str, float]:
    import rewards

    return dict(rewards.DEFAULT_WEIGHTS)


def resolved_weights(cfg: TrainConfig) -> dict[str, float]:
    """The registry's default weights, overridden by the config's (recipe's, then flags')."""
    return {**default_weights(), **{k: float(v) for k, v in cfg.reward_weights.items()}}


# ----------------------------------------------------------------------------------------------
# Parsing flags


def _nearest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"--{c}" for c in close) + "?"
    return "run with --help to list the flags"


def _coerce(name: str, value: Any, default: Any, hint: Any) -> Any:
    """Fire hands over ints, floats, bools, strings and tuples; fit them to the field's type."""
    kind = hint if isinstance(hint, type) else type(default)
    if kind is tuple:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif isinstance(value, (list, tuple)):
            value = tuple(str(v) for v in value)
        else:
            value = (str(value),)
        return value
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"--{name}: expected True or False, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"--{name}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"--{name}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        return str(value) if not isinstance(value, tuple) else ",".join(map(str, value))
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"--{name}: expected a dict like {{name: value}}, got {value!r}")
        return dict(value)
    return value


C = TypeVar("C", bound=TrainConfig)


def from_flags(cls: type[C], flags: Mapping[str, Any]) -> C:
    """Build a config: class defaults, then the smoke overrides when --smoke, then explicit flags.

    Raises ConfigError for an unknown flag (naming the nearest valid ones) or a value of the wrong
    type. `w_<reward>` flags go into `reward_weights` and are checked against the registry.
    """
    cfg = cls()
    valid = cfg.flag_names()
    names = reward_names()
    weight_flags = [WEIGHT_PREFIX + n for n in names]
    hints = get_type_hints(cls)
    explicit: dict[str, Any] = {}
    weights: dict[str, float] = {}
    for raw_name, value in flags.items():
        name = raw_name.replace("-", "_")
        if name.startswith(WEIGHT_PREFIX) and name not in valid:
            if name not in weight_flags:
                raise ConfigError(f"unknown reward flag --{raw_name}: {_nearest(name, weight_flags)} "
                                  f"(rewards: {', '.join(names)})")
            weights[name[len(WEIGHT_PREFIX):]] = _coerce(name, value, 0.0, float)
            continue
        if name not in valid:
            raise ConfigError(f"unknown flag --{raw_name}: {_nearest(name, valid + weight_flags)}")
        explicit[name] = _coerce(name, value, getattr(cfg, name), hints.get(name))
    if explicit.get("smoke", cfg.smoke):
        for name, value in {**SMOKE_EXPORT_EVAL, **cfg.SMOKE_OVERRIDES}.items():
            if name not in valid:
                raise ConfigError(f"{cls.__name__}.SMOKE_OVERRIDES: unknown field {name!r}")
            setattr(cfg, name, value)
    for name, value in explicit.items():
        setattr(cfg, name, value)
    cfg.reward_weights = {**cfg.reward_weights, **weights}
    cfg.stages = tuple(cfg.stages) if not isinstance(cfg.stages, str) else _coerce("stages", cfg.stages, (), tuple)
    cfg.report_to = tuple(cfg.report_to) if not isinstance(cfg.report_to, str) else _coerce("report_to", cfg.report_to, (), tuple)
    validate(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# Validation: combinations that cannot work, found before training.


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


def _one_of(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"--{name}={value!r} is not one of {', '.join(allowed)}; {_nearest(value, allowed).replace('--', '')}")


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError for the first setting that cannot work."""
    if not cfg.stages:
        raise ConfigError(f"--stages is empty; give some of {','.join(STAGES)}")
    for stage in cfg.stages:
        _one_of("stages", stage, STAGES)
    _one_of("backend", cfg.backend, BACKENDS)
    from t2g.models.names import ModelNameError, check_model_name

    try:
        check_model_name(cfg.model)
    except ModelNameError as exc:
        raise ConfigError(str(exc)) from None
    _one_of("on_parity_fail", cfg.on_parity_fail, ("fail", "warn"))
    if "export" in cfg.stages and not cfg.export_quants:
        raise ConfigError("--export_quants is empty; give at least one GGUF type, e.g. --export_quants=q8_0")
    if cfg.parity_limit < 0 or cfg.eval_limit < 0:
        raise ConfigError("--parity_limit and --eval_limit must be >= 0")
    _one_of("dtype", cfg.dtype, DTYPES)
    if cfg.dtype == "fp16" and not cuda_available():
        raise ConfigError("--dtype=fp16 needs a CUDA GPU (CPU has no fp16 autocast); use --dtype=bf16 or --dtype=fp32")
    if cfg.dtype == "bf16":
        warn_emulated_bf16()
    for target in cfg.report_to:
        _one_of("report_to", target, REPORT_TO)
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


def _validate_rewards(cfg: TrainConfig) -> None:
    names = reward_names()
    for name, weight in cfg.reward_weights.items():
        if name not in names:
            raise ConfigError(f"unknown reward {name!r} in reward_weights: {_nearest(WEIGHT_PREFIX + name, [WEIGHT_PREFIX + n for n in names])} "
                              f"(rewards: {', '.join(names)})")
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"--{WEIGHT_PREFIX}{name}={weight!r}: weights must be numbers >= 0")
    if "grpo" in cfg.stages:
        import rewards

        try:  # the same selection GRPO will make (zero weights and reasoning-only rewards dropped)
            rewards.build(resolved_weights(cfg), reasoning=cfg.reasoning)
        except ValueError as exc:
            raise ConfigError(f"reward weights: {exc}; set some --w_<name> above 0") from None


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name}={getattr(cfg, name)!r} must be > 0")


def _validate_sizes(cfg: TrainConfig) -> None:
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


def launched_processes() -> int:
    """How many processes this run is one of (accelerate launch / torchrun set WORLD_SIZE)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        return 1


def _validate_processes(cfg: TrainConfig) -> None:
    processes = launched_processes()
    if processes > 1 and cfg.backend == "unsloth":
        raise ConfigError(
            f"--backend=unsloth trains on one GPU in one process, and this is a {processes}-process launch "
            f"(WORLD_SIZE={processes}); for several GPUs or nodes use --backend=hf under accelerate launch "
            f"(DDP, DeepSpeed or FSDP: see docs/scaling.md), or run unsloth with plain python")


def _validate_gpu_options(cfg: TrainConfig) -> None:
    """One vLLM switch: --fast_inference is unsloth's spelling of --vllm_mode=colocate."""
    _one_of("vllm_mode", cfg.vllm_mode, VLLM_MODES)
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


def _validate_output(cfg: TrainConfig) -> None:
    if cfg.resume:
        if not cfg.output_dir:
            raise ConfigError("--resume needs --output_dir=<the run directory to continue>")
        if not (Path(cfg.output_dir) / "config.json").is_file():
            raise ConfigError(f"--resume: {cfg.output_dir} is not a run directory (no config.json); "
                              f"give the directory a previous run printed as 'run directory: ...'")
    elif cfg.output_dir and Path(cfg.output_dir).exists() and any(Path(cfg.output_dir).iterdir()):
        raise ConfigError(f"--output_dir={cfg.output_dir} exists and is not empty; pass --resume to continue "
                          f"that run, or choose a new directory")


# ----------------------------------------------------------------------------------------------
# The command line


def help_text(cls: type[TrainConfig], prog: str) -> str:
    cfg = cls()
    lines = [f"usage: python {prog} [--flag=value ...]", "", (cls.__doc__ or "").strip(), "", "flags (default):"]
    for name in cfg.flag_names():
        value = getattr(cfg, name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
        lines.append(f"  --{name}={shown}")
    try:
        weights = resolved_weights(cfg)
        lines += ["", "reward weights (0 = reward off):"]
        lines += [f"  --{WEIGHT_PREFIX}{n}={w}" for n, w in weights.items()]
    except ImportError as exc:  # the rewards package is part of the kit; say so rather than hide it
        lines.append(f"  (reward flags unavailable: {exc})")
    return "\n".join(lines)


def cli(cls: type[C], main: Callable[[C], Any], argv: list[str] | None = None) -> Any:
    """Parse flags with Fire into `cls`, validate, then call `main(config)`.

    Config and data errors (from parsing, or from `main` before training) print one line to
    stderr and exit with status 2.
    """
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    prog = Path(sys.argv[0]).name
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text(cls, prog))
        return None
    result: dict[str, Any] = {}

    def entry(*positional: Any, **flags: Any) -> None:
        if positional:
            raise ConfigError(f"unexpected argument(s) {' '.join(map(str, positional))}: every setting is a --flag=value")
        result["config"] = from_flags(cls, flags)

    from t2g.data.canonical import DataError

    try:
        fire.Fire(entry, command=argv, name=prog)
        return main(result["config"])
    except (ConfigError, DataError) as exc:  # bad flags or data: one clear line, no traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def replace(cfg: C, **changes: Any) -> C:
    """A validated copy with some fields changed (for tests and scripts)."""
    new = dataclasses.replace(cfg, **changes)
    validate(new)
    return new


def env_defaults() -> None:
    """Never let unsloth install things or fetch llama.cpp behind the user's back."""
    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")
