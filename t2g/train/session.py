"""A training session: the data, checked against the limits, the run directory and the model.

`start(cfg)` does everything that can fail on a wrong flag or a bad dataset before a model is
loaded or a step is taken; the stages (`t2g.train.pipeline`) then share the one loaded model.
The rows each trainer reads (`sft_rows`, `grpo_rows`) are built here from the shared prompt."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from t2g.train import distributed
from t2g.data.augment import AugmentConfig, answer_mix, augment, foreign_relation_mix
from t2g.data.synonyms import load_distractors, load_synonyms
from t2g.train.config import ConfigError, TrainConfig
from t2g.data.canonical import Example
from t2g.data.load import load_examples
from t2g.models.names import resolve_model_name
from t2g.task.prompts import build_messages, render_target


@dataclass
class Session:
    cfg: TrainConfig
    examples: list[Example]
    tokenizer: Any
    run: Any  # t2g.train.runs.Run
    model_name: str
    loaded: Any = None  # t2g.train.model_loading.LoadedModel once loaded
    stages: dict[str, dict] = field(default_factory=dict)
    callbacks: list = field(default_factory=list)  # extra TrainerCallbacks for every stage (benchmarks, tools)
    started: float = field(default_factory=time.time)


# ----------------------------------------------------------------------------------------------
# Data


def load_data(cfg: TrainConfig) -> list[Example]:
    """Load --dataset (any supported format), cap it, then add type-augmented copies."""
    examples = load_examples(cfg.dataset, format=cfg.dataset_format, split=cfg.dataset_split, label_map=cfg.label_map)
    if not examples:
        raise ConfigError(f"--dataset={cfg.dataset}: no examples")
    if cfg.max_examples:
        examples = examples[: cfg.max_examples]
    if cfg.augment_copies:
        synonyms = load_synonyms(cfg.augment_synonyms)
        foreign_e, foreign_r = load_distractors(cfg.augment_distractors)
        examples = augment(examples, AugmentConfig(
            copies=cfg.augment_copies, synonyms=synonyms, rename_prob=cfg.augment_rename_prob if synonyms else 0.0,
            empty_target_prob=cfg.augment_empty_prob, drop_type_prob=cfg.augment_drop_prob,
            keep_all_prob=cfg.augment_keep_all_prob,
            foreign_entity_types=foreign_e, foreign_relation_types=foreign_r), seed=cfg.seed)
        n = len(examples) // (cfg.augment_copies + 1)  # the originals come first
        originals, copies = answer_mix(examples[:n]), answer_mix(examples[n:])
        print(f"t2g: answers of the {sum(originals.values())} examples / {sum(copies.values())} augmented copies: "
              + ", ".join(f"{k.replace('_', ' ')} {originals[k]} / {copies[k]}" for k in originals))
        if foreign_r:
            mix = foreign_relation_mix(examples, foreign_r)
            (offered, offered_none), (others, others_none) = mix["offered"], mix["not_offered"]
            print(f"t2g: {offered} examples list a foreign relation type, {offered_none} of them "
                  f"({offered_none / max(offered, 1):.0%}) with no gold relation; the other {others}: {others_none} "
                  f"({others_none / max(others, 1):.0%})")
    return examples


def messages_for(ex: Example, cfg: TrainConfig) -> list[dict[str, str]]:
    return build_messages(ex.text, ex.entity_types, ex.relation_types, ex.type_descriptions or None, reasoning=cfg.reasoning)


def target_for(ex: Example, cfg: TrainConfig) -> str:
    # A trace only where the prompt asks for one; the prompt and the target must agree.
    return render_target(ex.graph, ex.reasoning if cfg.reasoning else None)


def sft_rows(examples: Sequence[Example], cfg: TrainConfig) -> list[dict]:
    """Prompt/completion rows: TRL trains on the completion only (its default for such rows)."""
    return [{"prompt": messages_for(ex, cfg), "completion": [{"role": "assistant", "content": target_for(ex, cfg)}]}
            for ex in examples]


def grpo_rows(examples: Sequence[Example], cfg: TrainConfig) -> list[dict]:
    """The prompt plus the columns the rewards read; `graph` as canonical JSON (Arrow dislikes
    empty nested lists)."""
    return [{"prompt": messages_for(ex, cfg), "id": ex.id, "text": ex.text, "entity_types": list(ex.entity_types),
             "relation_types": list(ex.relation_types), "graph": ex.graph.to_json()} for ex in examples]


def _token_count(tokenizer, messages: list[dict], add_generation_prompt: bool) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_lengths(examples: Sequence[Example], tokenizer, cfg: TrainConfig) -> list[Example]:
    """Measure every prompt (and, for SFT, prompt + target) in tokens against the limits.

    TRL would cut a long SFT example silently and GRPO no longer has a prompt limit at all, so an
    example over the limit is an error naming it (or, with --drop_long_examples, dropped and counted).
    """
    kept, too_long = [], []
    for ex in examples:
        messages = messages_for(ex, cfg)
        n_prompt = _token_count(tokenizer, messages, add_generation_prompt=True)
        problem = None
        if n_prompt > cfg.max_prompt_length:
            problem = f"prompt is {n_prompt} tokens > --max_prompt_length={cfg.max_prompt_length}"
        elif "sft" in cfg.stages:
            full = messages + [{"role": "assistant", "content": target_for(ex, cfg)}]
            n_full = _token_count(tokenizer, full, add_generation_prompt=False)
            if n_full > cfg.max_seq_length:
                problem = f"prompt + SFT target is {n_full} tokens > --max_seq_length={cfg.max_seq_length}"
        if problem is None:
            kept.append(ex)
        elif cfg.drop_long_examples:
            too_long.append((ex.id, problem))
        else:
            raise ConfigError(f"--dataset={cfg.dataset}: example {ex.id!r}: {problem}. Raise the limit, or pass "
                              f"--drop_long_examples to drop such examples")
    if too_long:
        print(f"t2g: dropped {len(too_long)} of {len(examples)} examples over the length limits "
              f"(first: {too_long[0][0]}: {too_long[0][1]})", file=sys.stderr)
    if not kept:
        raise ConfigError("no example fits the length limits; raise --max_prompt_length / --max_seq_length")
    return kept


AUTO_PERCENTILE = 99
AUTO_MARGIN = 0.10


def completion_limit(examples: Sequence[Example], tokenizer, cfg: TrainConfig) -> tuple[int, str]:
    """--max_completion_length=auto: the 99th percentile of the SFT targets' token lengths (EOS included),
    plus 10% (at least 8 tokens), capped by --max_seq_length - --max_prompt_length. A completion the
    model learned to write fits; one that loops is cut there instead of holding the batch for
    hundreds of tokens (every completion of a batch decodes until its longest stops)."""
    lengths = sorted(len(tokenizer(target_for(ex, cfg), add_special_tokens=False)["input_ids"]) + 1 for ex in examples)
    high = lengths[min(len(lengths) - 1, math.ceil(AUTO_PERCENTILE / 100 * len(lengths)) - 1)]
    cap = cfg.max_seq_length - cfg.max_prompt_length
    limit = min(cap, high + max(8, math.ceil(AUTO_MARGIN * high)))
    return limit, (f"p{AUTO_PERCENTILE} of {len(lengths)} training targets {high} + {AUTO_MARGIN:.0%}, longest "
                   f"{lengths[-1]}" + (f"; capped by --max_seq_length - --max_prompt_length = {cap}" if limit == cap else ""))


# ----------------------------------------------------------------------------------------------
# The session


def start(cfg: TrainConfig) -> Session:
    """Check everything, then open the run directory and load the model with LoRA."""
    from t2g.train import model_loading as models
    from t2g.train import runs

    distributed.warn_single_cpu_launch()
    # Several processes: rank 0 fills shared caches (hub data, embedded models) first, the others reuse them.
    with distributed.main_first():
        examples = load_data(cfg)  # a missing or broken dataset fails here, in a second
    models.import_backend(cfg.backend)  # before anything imports transformers/trl/peft
    with distributed.main_first():
        name = resolve_model_name(cfg.model)
    tokenizer = models.load_tokenizer(cfg, name)
    examples = check_lengths(examples, tokenizer, cfg)
    same_examples_on_every_rank(examples)
    run = runs.open_run(cfg, extra={"model_resolved": name, "examples": len(examples)})
    if cfg.max_completion_length == "auto":  # config.json keeps "auto" (a resume resolves it again, alike)
        cfg.max_completion_length, how = completion_limit(examples, tokenizer, cfg)
        run.record(max_completion_length=cfg.max_completion_length)
        print(f"t2g: --max_completion_length=auto: {cfg.max_completion_length} tokens ({how})")
    print(f"t2g: run directory {run.dir}; {len(examples)} examples; stages {','.join(cfg.stages)}")
    return Session(cfg, examples, tokenizer, run, name)


def same_examples_on_every_rank(examples: Sequence[Example]) -> None:
    """Under several processes the trainers shard one seeded order of one dataset: every rank must
    hold the same examples in the same order (a rank that read other data would train on it)."""
    if not distributed.is_distributed():
        return
    import hashlib

    mine = hashlib.sha256(json.dumps([[ex.id, ex.text] for ex in examples]).encode()).hexdigest()
    if distributed.broadcast(mine) != mine:
        raise ConfigError(f"rank {distributed.rank()} loaded other examples than rank 0 (same --dataset and --seed "
                          f"on every node? the same file contents?)")


def ensure_model(session: Session, adapter: Path | None = None) -> Any:
    """Load the model once; a later stage reuses it, a resumed one starts from the saved adapter."""
    from t2g.train import model_loading as models

    if session.loaded is None:
        session.loaded = models.load(session.cfg, adapter=adapter)
        session.run.record(backend=session.loaded.backend, loaded_in_4bit=session.loaded.loaded_in_4bit,
                           start_adapter=str(adapter) if adapter else None)
    return session.loaded


def release_model(session: Session) -> None:
    """Free the training model before export loads the adapter again on a clean base."""
    import gc

    session.loaded = None
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
