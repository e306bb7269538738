"""The training configuration: one dataclass of flags, read from the command line by `t2g.flags`.

A recipe subclasses `TrainConfig` to change defaults and calls `cli(Config, run_recipe)`. Flags are
the dataclass fields, plus one `--w_<reward>` per reward in `rewards.REGISTRY`. Everything here runs
BEFORE torch/transformers/unsloth are imported, so a misspelt flag, an unknown reward or a setting
that cannot work (t2g.train.validate) fails in a second, with the nearest valid names, instead of
after a model download.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, ClassVar, Mapping, TypeVar

from t2g import flags
from t2g.data.canonical import DataError
from t2g.data.convert import CONVERTERS
from t2g.flags import FlagError, flag
from t2g.models.dtype import DTYPES, GGUF_FLOAT_TYPES
# ConfigError, validate and resolved_weights are imported from here by the rest of the kit as well.
from t2g.train.validate import WEIGHT_PREFIX, ConfigError, resolved_weights, reward_names, validate

STAGES = ("sft", "grpo", "export", "evaluate")
BACKENDS = ("unsloth", "hf")
REPORT_TO = ("tensorboard", "wandb", "none")
VLLM_MODES = ("off", "colocate", "server")
ROLLOUTS = ("auto", "trainer", "llama.cpp", "vllm")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --smoke's export and evaluation, common to every recipe: one GGUF, no 16-bit HF copy, a parity
# check that warns (on 4 examples one differing answer is a 25-point swing), a short evaluation.
SMOKE_EXPORT_EVAL: dict[str, Any] = dict(export_quants=("q8_0",), export_hf=False, parity_limit=4,
                                         on_parity_fail="warn", eval_limit=8)

# --smoke of a recipe whose real run needs a GPU, on CPU: SmolLM2-135M, the shipped examples, 16-bit
# LoRA (4-bit on CPU only costs time), 16 SFT steps (enough for SmolLM2 to answer in compact JSON, so
# that GRPO's completions end within 128 tokens and their rewards differ), 3 GRPO steps: every stage
# works; the model learns little. A recipe adds its smoke run_name.
GPU_RECIPE_SMOKE: dict[str, Any] = dict(
    model="embedded:smollm2", dataset="examples", load_in_4bit=False, gradient_checkpointing=False,
    augment_copies=0, max_seq_length=1024, max_prompt_length=512, max_completion_length=128,
    sft_max_steps=16, sft_batch_size=4, sft_grad_accum=1, sft_learning_rate=5e-4,
    grpo_max_steps=3, grpo_batch_size=4, grpo_grad_accum=1, num_generations=4, grpo_learning_rate=5e-6,
    save_steps=2, sample_every=1,
)


@dataclass
class TrainConfig:
    """SFT then GRPO with LoRA. Every field is a flag: --name=value."""

    # What to run
    stages: tuple = flag(STAGES, "the stages to run, comma-separated; they run in pipeline order", choices=STAGES)
    smoke: bool = flag(False, "a CPU-sized end-to-end run on a small offline model and the shipped examples; "
                       "explicit flags still win")

    # Model
    model: str = flag("Qwen/Qwen2.5-1.5B-Instruct",
                      "base model: a hub name, a local HF folder, or embedded:smollm2 / embedded:tiny (offline)")
    backend: str = flag("unsloth", "unsloth: one GPU, one process; hf: transformers + peft, also under accelerate "
                        "launch", choices=BACKENDS)
    load_in_4bit: bool = flag(True, "load the base model's weights in 4-bit NF4 (bitsandbytes), LoRA on top (QLoRA)")
    dtype: str = flag("auto", "compute dtype; auto: bf16 on a GPU that has it, else fp16; fp32 on CPU", choices=DTYPES)
    max_seq_length: int = flag(2048, "longest prompt + completion, in tokens")
    lora_r: int = flag(16, "LoRA rank: the inner dimension of each adapter")
    lora_alpha: int = flag(32, "LoRA scale numerator: adapter updates are scaled by lora_alpha / lora_r")
    lora_dropout: float = flag(0.0, "dropout probability on the adapters' input (0 = none)")
    lora_target_modules: tuple = flag(DEFAULT_LORA_TARGETS, "modules that get LoRA adapters; embed_tokens and lm_head "
                                      "named here are trained in full")
    gradient_checkpointing: bool = flag(True, "recompute activations in the backward pass: less memory, more compute")
    # vLLM: off: transformers' generate. colocate: vLLM inside the training process (unsloth: its
    # fast_inference engine; hf: TRL's colocate mode). server: TRL's `trl vllm-serve` on other GPUs
    # (hf backend), reached at vllm_server_host:vllm_server_port.
    vllm_mode: str = flag("off", "GRPO generation with vLLM (CUDA + vllm only): off, colocate (in the training "
                          "process) or server (trl vllm-serve, --backend=hf)", choices=VLLM_MODES)
    fast_inference: bool = flag(False, "unsloth's name for --vllm_mode=colocate (either flag turns it on)")
    gpu_memory_utilization: float = flag(0.6, "vLLM's share of GPU memory when colocated, 0.05..0.95")
    vllm_server_host: str = flag("127.0.0.1", "host of the trl vllm-serve server (--vllm_mode=server)")
    vllm_server_port: int = flag(8000, "port of the trl vllm-serve server (--vllm_mode=server)")
    vllm_server_timeout: float = flag(240.0, "seconds to wait for the vLLM server to answer /health")
    trust_remote_code: bool = flag(False, "run Python code shipped in the model's repository when loading it")

    # Data
    dataset: str = flag("Ihor/Text2Graph-Open-R1", "training data: .jsonl, SpERT .json, text2graph rows, a hub "
                        "name, or examples (the shipped 36)")
    dataset_format: str = flag("auto", "the data's format; auto: read from the file",
                               choices=("auto", "canonical", *CONVERTERS))
    dataset_split: str = flag("train", "split of a hub dataset")
    label_map: str = flag("auto", "readable names for SpERT's short labels: auto, none, a known map's name or a "
                          "JSON file")
    max_examples: int = flag(0, "train on the first N examples (0 = all)")
    augment_copies: int = flag(1, "type-augmented copies per example (0 = none)")
    augment_synonyms: str = flag("none", "renaming in the augmented copies: none, builtin (t2g.data.synonyms: four names for "
                                 "each of CoNLL04's types), wide (twelve each) or a JSON file {type: [synonym, ...]}; "
                                 "teaches the model to read the type names it is given")
    augment_rename_prob: float = flag(0.5, "with --augment_synonyms: the share of augmented copies whose types are "
                                      "renamed (each type that has synonyms, to a random one)")
    augment_distractors: str = flag("none", "foreign types in the augmented copies: none, builtin "
                                    "(t2g.data.synonyms.TRAINING_DISTRACTORS: types of other domains) or a JSON file "
                                    "{\"entities\": [...], \"relations\": [...]}; offered as negatives and as the types "
                                    "of empty targets beside the dataset's own")
    augment_empty_prob: float = flag(0.1, "the share of augmented copies whose types are all absent from the gold "
                                     "(target: the empty graph)")
    augment_drop_prob: float = flag(0.15, "per gold type of an augmented copy: the chance it is left out of the prompt "
                                    "and its entities and relations out of the target")
    augment_keep_all_prob: float = flag(0.0, "the share of augmented copies that drop no type and are never emptied, "
                                        "offering 1-2 absent (with --augment_distractors often foreign) types beside the "
                                        "whole answer: without them absent types come mostly with answers that lost relations")
    reasoning: bool = flag(False, "ask for a <think> block first; SFT targets use the data's traces")
    max_prompt_length: int = flag(1024, "longest prompt, in tokens; every prompt is checked against it before training")
    drop_long_examples: bool = flag(False, "drop (and count) examples over the length limits instead of failing")

    # SFT
    sft_max_steps: int = flag(-1, "SFT optimizer steps (-1: run --sft_epochs)")
    sft_epochs: float = flag(1.0, "passes over the data when --sft_max_steps is -1")
    sft_learning_rate: float = flag(2e-4, "SFT peak learning rate")
    sft_batch_size: int = flag(4, "SFT examples per device per forward pass")
    sft_grad_accum: int = flag(4, "forward passes accumulated into one SFT optimizer step")
    sft_warmup_ratio: float = flag(0.03, "fraction of the SFT steps spent warming the learning rate up")

    # GRPO
    grpo_max_steps: int = flag(500, "GRPO optimizer steps")
    grpo_learning_rate: float = flag(5e-6, "GRPO learning rate (constant after a 5% warm-up)")
    grpo_batch_size: int = flag(8, "completions per device per forward pass")
    grpo_grad_accum: int = flag(2, "forward passes accumulated into one GRPO optimizer step")
    num_generations: int = flag(8, "completions per prompt: the group whose rewards are compared, >= 2")
    max_completion_length: int | str = flag(
        "auto", "longest completion, in tokens (a cut one earns the truncation penalty); auto: the 99th percentile "
        "of the training targets' token lengths plus a 10% margin, printed at start")
    temperature: float = flag(1.0, "sampling temperature of GRPO's completions, > 0")
    top_p: float = flag(1.0, "nucleus sampling: the probability mass completions are drawn from (1.0 = all)")
    top_k: int = flag(0, "sample among the k likeliest tokens only (0 = all)")
    min_p: float = flag(0.0, "drop tokens less likely than min_p times the likeliest (0 = none)")
    rollout: str = flag("auto", "who samples GRPO's completions: trainer (model.generate), llama.cpp (a GGUF of the "
                        "base in the trainer's weight dtype plus the current LoRA, synced after every optimizer "
                        "step), vllm (--vllm_mode); "
                        "auto: vllm when --vllm_mode is on, else trainer on CUDA or where llama.cpp cannot sample the "
                        "policy (4-bit base, fully trained lm_head, --lora_dropout > 0; the run says why), else llama.cpp",
                        choices=ROLLOUTS)
    rollout_threads: int = flag(0, "llama.cpp threads for --rollout=llama.cpp (0 = every core this process may use)")
    rollout_base: str = flag("auto", "--rollout=llama.cpp: the type of the base GGUF llama.cpp samples from; auto: the "
                             "dtype the trainer holds the base weights in (f32 for fp32, bf16 for bf16), so that "
                             "llama.cpp computes on the trainer's own weights",
                             choices=("auto", *GGUF_FLOAT_TYPES.values()))
    dynamic_sampling: int = flag(2, "--rollout=llama.cpp: rounds in which groups whose completions all earn the same "
                                 "reward (they teach nothing) are replaced by fresh prompts, DAPO's dynamic sampling "
                                 "(0 = keep them)")
    dynamic_sampling_spares: int = flag(0, "--rollout=llama.cpp: fresh groups sampled beside every batch in the same "
                                        "pass, which replace its flat groups before any refill round; unused spares "
                                        "are dropped. For engines whose pass costs about the same however many "
                                        "sequences it holds; on a 2-core CPU 2 spares gained nothing "
                                        "(scripts/bench_grpo_cpu.py) (0 = none)")
    shared_prefix: str = flag("auto", "compute each group's shared prompt once in the loss (same log-probs and "
                              "gradients); auto: on wherever TRL's own trainer computes the loss (not under "
                              "unsloth on CUDA, which replaces it)", choices=("auto", "on", "off"))
    beta: float = flag(0.0, "KL coefficient against the reference model (0: no reference model is loaded)")
    epsilon: float = flag(0.2, "clipping range of the policy ratio")
    epsilon_high: float = flag(0.0, "upper clipping range of the policy ratio (DAPO's clip-higher; 0 = --epsilon)")
    grpo_weight_decay: float = flag(0.0, "AdamW weight decay of the GRPO stage")
    num_iterations: int = flag(1, "optimizer passes over each batch of completions (TRL's mu)")
    loss_type: str = flag("dapo", "TRL's GRPO loss normalisation: dapo, grpo, dr_grpo, bnpo, ...")
    scale_rewards: str = flag("group", "advantages divided by the rewards' std within each group, across the "
                              "whole batch, or not at all", choices=("group", "batch", "none"))
    # False: a completion cut at the limit must get a gradient, or the `truncation` penalty can never
    # push the policy away from looping (docs/results.md: with True, GRPO runs drifted into loops).
    mask_truncated_completions: bool = flag(False, "leave completions cut at --max_completion_length out of the loss")
    reward_weights: dict = flag({}, "reward name -> weight, over the registry's defaults; --w_<name> flags fill it")

    # Export (after training): LoRA merged, GGUF, Ollama Modelfile, HF-vs-GGUF parity check
    export_quants: tuple = flag(("q8_0",), "GGUF types to write (f32 f16 bf16 q8_0 q4_k_m ...); the first is "
                                "parity-checked and evaluated")
    export_hf: bool = flag(True, "keep the merged 16-bit HF folder in export/hf")
    parity_limit: int = flag(8, "examples of --eval_data for the HF-vs-GGUF parity check (0 = no check)")
    parity_threshold: float = flag(0.05, "largest allowed drop of the GGUF's JSON validity or F1 against HF "
                                   "(a fraction: 0.05 = 5 points)")
    on_parity_fail: str = flag("fail", "what a failed parity check does to the run", choices=("fail", "warn"))

    # Evaluate (after training, or after export: then through the GGUF with llama.cpp)
    eval_data: str = flag("examples", "evaluation data: any dataset the converters read; examples = the shipped 36")
    eval_limit: int = flag(0, "evaluate on the first N examples (0 = all)")

    # Runs
    output_dir: str = flag("", "the run directory (empty: runs/<run_name>-<timestamp>)")
    run_name: str = flag("t2g", "name of the run, the start of its default directory")
    resume: bool = flag(False, "continue the run in --output_dir from its last checkpoint")
    save_steps: int = flag(50, "optimizer steps between checkpoints")
    save_total_limit: int = flag(2, "checkpoints kept per stage (older ones are deleted)")
    logging_steps: int = flag(1, "optimizer steps between logged metrics")
    sample_every: int = flag(10, "GRPO steps between logged sample completions (0 = never)")
    report_to: tuple = flag(("tensorboard",), "where metrics are logged", choices=REPORT_TO)
    seed: int = flag(42, "random seed: data order, LoRA initialisation, sampling")
    # adamw_torch_fused: unsloth's CPU backend turns adamw_torch into it, and both backends must train alike.
    optim: str = flag("adamw_torch_fused", "the optimizer, by its transformers name (adamw_torch_fused, adamw_8bit, ...)")

    # The recipe's CPU-sized settings for --smoke; explicit flags still win over them.
    SMOKE_OVERRIDES: ClassVar[Mapping[str, Any]] = {}
    # The stages the recipe's main() runs; --stages may name only these (a stage it would skip is an error).
    RECIPE_STAGES: ClassVar[tuple[str, ...]] = STAGES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A recipe changes a default by redeclaring the field (`lora_r: int = 32`); the flag's help
        and choices stay those declared here. Runs before @dataclass reads the class body."""
        super().__init_subclass__(**kwargs)
        inherited = {f.name: f for f in flags.flag_fields(cls)}  # the parent's: cls is not a dataclass yet
        for name in inspect.get_annotations(cls):
            value = cls.__dict__.get(name, dataclasses.MISSING)
            if name in inherited and value is not dataclasses.MISSING and not isinstance(value, dataclasses.Field):
                meta = inherited[name].metadata
                setattr(cls, name, flag(value, meta.get("help", ""), choices=meta.get("choices")))

    def flag_names(self) -> list[str]:
        return flags.names(type(self))

    def to_dict(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self, name)) for name in self.flag_names()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------------
# Flags -> config


C = TypeVar("C", bound=TrainConfig)


def from_flags(cls: type[C], given: Mapping[str, Any]) -> C:
    """Build a config: class defaults, then the smoke overrides when --smoke, then explicit flags.

    Raises ConfigError for an unknown flag (naming the nearest valid ones), a value of the wrong
    type, or a setting that cannot work. `w_<reward>` flags go into `reward_weights`, checked
    against the registry.
    """
    try:
        return _from_flags(cls, given)
    except ConfigError:
        raise
    except FlagError as exc:  # from t2g.flags: one error type for callers of the training config
        raise ConfigError(str(exc)) from None


def _from_flags(cls: type[C], given: Mapping[str, Any]) -> C:
    valid = flags.names(cls)
    names = reward_names()
    weight_flags = [WEIGHT_PREFIX + n for n in names]
    explicit: dict[str, Any] = {}
    weights: dict[str, float] = {}
    for raw, value in given.items():
        name = raw.replace("-", "_")
        if name in valid:
            explicit[name] = value
        elif name in weight_flags:
            weights[name[len(WEIGHT_PREFIX):]] = flags.coerce(name, value, float)
        elif name.startswith(WEIGHT_PREFIX):
            raise ConfigError(f"unknown reward flag --{raw}: {flags.nearest(name, weight_flags)} "
                              f"(rewards: {', '.join(names)})")
        else:
            raise ConfigError(f"unknown flag --{raw}: {flags.nearest(name, valid + weight_flags)}")
    base = cls()
    smoke = flags.coerce("smoke", explicit["smoke"], bool) if "smoke" in explicit else base.smoke
    if smoke:
        unknown = [n for n in cls.SMOKE_OVERRIDES if n not in valid]
        if unknown:
            raise ConfigError(f"{cls.__name__}.SMOKE_OVERRIDES: unknown field {unknown[0]!r}")
        base = dataclasses.replace(base, **{**SMOKE_EXPORT_EVAL, **cls.SMOKE_OVERRIDES})
    cfg = flags.parse(cls, explicit, base=base)
    cfg.reward_weights = {**cfg.reward_weights, **weights}
    hints = typing.get_type_hints(cls)
    for name in valid:  # a recipe's default or smoke override may write a list as "a,b"
        if hints.get(name) is tuple and isinstance(getattr(cfg, name), str):
            setattr(cfg, name, flags.coerce(name, getattr(cfg, name), tuple))
    validate(cfg)
    return cfg


def replace(cfg: C, **changes: Any) -> C:
    """A validated copy with some fields changed (for tests and scripts)."""
    new = dataclasses.replace(cfg, **changes)
    validate(new)
    return new


# ----------------------------------------------------------------------------------------------
# The command line


def reward_summary(name: str) -> str:
    """What a reward pays for: its row in the rewards table."""
    import rewards

    row = next(r for r in rewards.REWARDS if r.name == name)
    return row.pays_for + (" (with --reasoning only)" if row.reasoning_only else "")


def help_text(cls: type[TrainConfig], prog: str) -> str:
    """Every flag with its type, default and meaning, then one --w_<reward> row per registered reward."""
    try:
        extra = [(f"--{WEIGHT_PREFIX}{name}", f"float, {weight!r}", f"weight of {name} (0 = off): {reward_summary(name)}")
                 for name, weight in resolved_weights(cls()).items()]
    except ImportError as exc:  # the rewards package is part of the kit; say so rather than hide it
        extra = [(f"--{WEIGHT_PREFIX}<reward>", "unavailable", f"the rewards package does not import: {exc}")]
    return flags.help_text(cls, f"python {prog}", extra=extra)


def cli(cls: type[C], main: Callable[[C], Any], argv: list[str] | None = None) -> Any:
    """Read the command line into `cls`, validate, then call `main(config)`.

    Flag, config and data errors (from parsing, or from `main` before training) print one line to
    stderr and exit with status 2.
    """
    env_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = Path(sys.argv[0]).name
    if flags.wants_help(argv):
        print(help_text(cls, prog))
        return None
    try:
        cfg = from_flags(cls, flags.read_command_line(argv, prog))
        env_defaults(cfg)  # before main() imports unsloth, which reads them once
        return main(cfg)
    except (FlagError, DataError) as exc:  # bad flags or data: one clear line, no traceback
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def env_defaults(cfg: TrainConfig | None = None) -> None:
    """Never let unsloth install things or fetch llama.cpp behind the user's back.

    With a config that runs unsloth's vLLM engine (--fast_inference): its standby mode, which unsloth
    reads when it is imported. vLLM then allocates through a sleep-capable allocator and t2g puts it to
    sleep between loading and GRPO's first generation (t2g.train.model_loading), so SFT and GRPO's
    training steps get the GPU memory that --gpu_memory_utilization reserves for vLLM's KV cache.
    UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE keeps that flag's value (standby would replace it with
    unsloth's own share per card size). Values already in the environment win."""
    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")
    if cfg is not None and cfg.backend == "unsloth" and cfg.fast_inference:
        os.environ.setdefault("UNSLOTH_VLLM_STANDBY", "1")
        os.environ.setdefault("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE", "1")


def load_recipe(path: str | os.PathLike) -> ModuleType:
    """A recipe file as a module, by path (recipes/ is a folder of scripts, not a package)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"recipe_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
