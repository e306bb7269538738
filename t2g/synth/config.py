"""What a `t2g generate` job is told (`GenerateConfig`, its flags), the files it keeps (`Paths`),
and what it reports (`Summary`).

Light: `t2g generate --help` and a wrong flag answer without importing the pipeline. Every
setting is checked when the config is made, before any teacher call: an hour of requests must not
end on a typo.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from t2g.data.canonical import DataError
from t2g.flags import flag
from t2g.infer.openai_client import split_base_urls
from t2g.synth import teacher
from t2g.synth.inventory import Inventory
from t2g.synth.sources import TXT_SPLITS


@dataclass
class GenerateConfig:
    """Make training data with a teacher model behind any OpenAI-compatible endpoint (t2g/synth/generate.py).

    Input: a .txt (one text per line; --txt_split=paragraphs for blank-line separated paragraphs),
    a .jsonl with a `text` field, a datasets save_to_disk folder, or hf:owner/name. Without
    --entity_types/--relation_types the teacher proposes types (open extraction). The API key is read
    from the variable named by --api_key_env. Rerun the same command to resume.

    Example: t2g generate --input texts.txt --output data.jsonl --base_url http://127.0.0.1:8000/v1
             --model teacher --entity_types person,organization --relation_types "works for"
    """

    input: str = flag(help="raw texts: .txt, .jsonl, a datasets save_to_disk folder, or hf:owner/name")
    output: str = flag(help="the dataset to write (.jsonl); its side files are named after it")
    base_url: str = flag(help="the teacher's OpenAI-compatible endpoint; several, comma-separated, share the requests")
    model: str = flag(help="the teacher's model name at that endpoint")
    entity_types: list[str] | None = flag(None, "the entity types, comma-separated (with --relation_types; "
                                                "neither: open extraction)")
    relation_types: list[str] | None = flag(None, "the relation types, comma-separated (with --entity_types)")
    text_field: str = flag("text", "the text field of a .jsonl row or a dataset column")
    id_field: str = flag("id", "the id field of a .jsonl row (absent: a hash of the text)")
    txt_split: str = flag("lines", "a .txt holds one text per line, or per blank-line separated paragraph",
                          choices=TXT_SPLITS)
    split: str = flag("train", "the split of a datasets folder or a hub dataset")
    limit: int | None = flag(None, "only the first N texts")
    structured: str = flag("auto", "how the answer's shape is enforced (auto: ask the endpoint once which of "
                                   "json_schema, json_object (llama-cpp-python), grammar (llama.cpp), none it takes)",
                           choices=teacher.STRUCTURED)
    ground_spans: bool = flag(False, "entities, heads and tails may only be spans copied from the text (in the schema)")
    concurrency: int = flag(4, "teacher requests in flight at once")
    max_consecutive_failures: int = flag(20, "stop after this many failed rows in a row (a dead endpoint)")
    timeout: float = flag(120.0, "seconds per request")
    retries: int = flag(3, "retries of a failed request (5xx, 408/429, timeouts, non-JSON answers; never "
                           "an error that blames the request)")
    backoff: float = flag(2.0, "seconds before the first retry, doubling each time")
    api_key_env: str = flag("OPENAI_API_KEY", "the environment variable that holds the API key (never logged)")
    temperature: float = flag(0.0, "the teacher's sampling temperature")
    max_tokens: int = flag(1024, "tokens per teacher answer")
    max_text_chars: int = flag(4000, "longer texts are dropped before the teacher")
    max_entities: int = flag(50, "graphs with more entities are dropped")
    max_relations: int = flag(100, "graphs with more relations are dropped")
    keep_empty: bool = flag(False, "keep texts whose graph is empty (otherwise dropped)")
    near_dup_threshold: float = flag(0.9, "word-trigram Jaccard at which a text is a near-duplicate (above 1: off)")
    min_type_count: int = flag(2, "open extraction: a type must occur in this many graphs")
    max_types: int = flag(30, "open extraction: at most this many types of each kind, the most frequent")
    reasoning: bool = flag(False, "also ask for a reasoning trace per example (checked against its graph)")
    reasoning_model: str | None = flag(None, "the model that writes the traces (default: --model)")
    reasoning_base_url: str | None = flag(None, "its endpoint (default: --base_url)")
    trace_max_tokens: int = flag(2048, "tokens per trace")
    require_trace: bool = flag(False, "drop the examples whose trace failed or disagreed (otherwise kept without)")
    augment_copies: int = flag(1, "type-augmented copies per example (0: none)")
    empty_target_prob: float = flag(0.1, "fraction of augmented copies whose types fit nothing in the text")
    seed: int = flag(0, "the augmentation's seed")
    progress: bool = flag(True, "show a progress bar")

    def __post_init__(self) -> None:
        if (self.entity_types is None) != (self.relation_types is None):
            raise DataError("give both --entity_types and --relation_types (a fixed inventory) or neither (open extraction)")
        if self.entity_types is not None and not self.entity_types:
            raise DataError("--entity_types is empty: give at least one entity type, or neither flag for open extraction")
        if not str(self.output).endswith(".jsonl"):
            raise DataError(f"--output={self.output!r}: must end with .jsonl (side files are named after it)")
        if self.structured not in teacher.STRUCTURED:
            raise DataError(f"--structured={self.structured!r}: use one of {', '.join(teacher.STRUCTURED)}")
        if self.fixed:
            try:  # catch "person" + "persons" now, not after an hour of teacher calls
                Inventory.fixed(self.entity_types, "--entity_types")
                Inventory.fixed(self.relation_types, "--relation_types")
            except ValueError as exc:
                raise DataError(str(exc)) from None
        if self.ground_spans and self.structured == "none":
            raise DataError("--ground_spans needs structured output: give --structured auto, json_schema, "
                            "json_object or grammar")
        for url_flag in ("base_url", "reasoning_base_url"):
            value = getattr(self, url_flag)
            if value is None:
                continue
            try:  # a comma-separated list fans requests out over several endpoints serving the same model
                urls = split_base_urls(value)
            except ValueError as exc:
                raise DataError(f"--{url_flag}: {exc}") from None
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise DataError(f"--{url_flag}={url!r}: give the endpoint's URL, e.g. http://127.0.0.1:8000/v1 "
                                    f"(several: comma-separated)")
        bad = [f"--{name} must be {rule}" for name, ok, rule in (
            ("concurrency", self.concurrency >= 1, ">= 1"), ("max_tokens", self.max_tokens >= 1, ">= 1"),
            ("trace_max_tokens", self.trace_max_tokens >= 1, ">= 1"),
            ("max_consecutive_failures", self.max_consecutive_failures >= 1, ">= 1"),
            ("timeout", self.timeout > 0, "> 0"), ("retries", self.retries >= 0, ">= 0"),
            ("backoff", self.backoff >= 0, ">= 0"), ("augment_copies", self.augment_copies >= 0, ">= 0"),
            ("empty_target_prob", 0 <= self.empty_target_prob <= 1, "in [0, 1]"),
            ("near_dup_threshold", self.near_dup_threshold > 0, "> 0 (above 1 turns the filter off)"),
            ("max_text_chars", self.max_text_chars >= 1, ">= 1"), ("min_type_count", self.min_type_count >= 1, ">= 1"),
            ("max_types", self.max_types >= 1, ">= 1"), ("limit", self.limit is None or self.limit >= 1, ">= 1"),
        ) if not ok]
        if bad:
            raise DataError("; ".join(bad))

    @property
    def fixed(self) -> bool:
        return self.entity_types is not None


@dataclass(frozen=True)
class Paths:
    output: Path

    def side(self, suffix: str) -> Path:
        return self.output.with_name(self.output.name[: -len(".jsonl")] + suffix)

    @property
    def teacher(self) -> Path:
        return self.side(".teacher.jsonl")

    @property
    def traces(self) -> Path:
        return self.side(".traces.jsonl")

    @property
    def errors(self) -> Path:
        return self.side(".errors.jsonl")

    @property
    def summary(self) -> Path:
        return self.side(".summary.json")

    @property
    def lock(self) -> Path:
        return self.side(".lock")


@dataclass
class Summary:
    """Counts of everything that happened, so that every input text is accounted for."""

    input_texts: int = 0
    before_teacher: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=dict)
    teacher: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    traces: Counter = field(default_factory=Counter)
    examples: int = 0
    rows_written: int = 0
    recovered_partial_lines: int = 0
    errors: list[dict] = field(default_factory=list)
    inventory: dict[str, list[str]] = field(default_factory=dict)
    hint: str = ""
    stopped_early: str = ""
    structured: dict = field(default_factory=dict)  # {"asked", "used", "why"}: what --structured became

    def drop(self, counter: Counter, reason: str, ex_id: str) -> None:
        counter[reason] += 1
        ids = self.drop_examples.setdefault(reason, [])
        if len(ids) < 5:
            ids.append(ex_id)

    def to_dict(self) -> dict:
        return {
            "input_texts": self.input_texts,
            "dropped_before_teacher": dict(self.before_teacher),
            "teacher": dict(self.teacher),
            "dropped_after_teacher": dict(self.dropped),
            "examples_kept": self.examples,
            "traces": dict(self.traces),
            "rows_written": self.rows_written,
            "recovered_partial_lines": self.recovered_partial_lines,
            "failed_rows": len(self.errors),
            "first_errors": self.errors[:5],
            "example_ids_per_drop_reason": self.drop_examples,
            "inventory": self.inventory,
            **({"structured": self.structured} if self.structured else {}),
            **({"hint": self.hint} if self.hint else {}),
            **({"stopped_early": self.stopped_early} if self.stopped_early else {}),
        }
