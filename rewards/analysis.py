"""One completion, read once: parse, truncation, validation and strict scores, shared by every reward.

GRPO calls each reward function on the same batch in turn. Parsing and validating a completion is
most of the cost of every reward, so `BatchAnalyzer` does it once per batch and hands the same
`Analysis` objects to all the rewards of one `rewards.build()`. The cache holds one batch (the
last one) and recognises it by content: the completions and the dataset columns the rewards read
(list equality is cheap when the elements are the very same objects, which is what TRL passes).

Everything here goes through `t2g.task.parsing`, `t2g.task.schema` and `t2g.task.scoring`: no second parser,
validator or scorer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from t2g.task.parsing import TRUNCATED, UNCLOSED_THINK, ParseResult, completion_text, parse_completion
from t2g.task.schema import Graph, SchemaError, TaskContext, Violation, validate_graph
from t2g.task.scoring import ExampleScore, GraphKeys, score_keys

# Completions longer than this (in characters) get no credit without being parsed. GRPO completions
# are a few thousand characters at most (max_completion_length tokens); anything near this size is
# a degenerate generation, and parsing + validating a 1 MB graph costs ~0.1 s of a shared core.
DEFAULT_MAX_COMPLETION_CHARS = 100_000

# The dataset columns the rewards read, by name (TRL passes every extra column as a kwarg).
COLUMNS = ("text", "entity_types", "relation_types", "graph")


@dataclass
class Analysis:
    """Everything the rewards need to know about one completion."""

    text: str  # the completion's text
    parse: ParseResult | None  # None when the completion was too long to parse
    truncated: bool  # cut at the length limit (token count) or visibly cut mid-answer
    oversized: bool  # longer than max_completion_chars; not parsed
    ctx: TaskContext  # the task: source text and allowed types, normalised
    gold: GraphKeys
    graph: Graph | None  # the usable answer: parsed per the contract, not truncated, not oversized
    pred: GraphKeys | None  # keys of `graph`
    score: ExampleScore | None  # strict/boundaries counts of `graph` against gold
    violations: list[Violation]  # validate_graph(graph, ctx); empty when graph is None


class GoldError(ValueError):
    """A dataset row the rewards cannot read (a data bug, not a model failure)."""


def gold_graph(value: Any, row: int) -> Graph:
    """The gold graph of a row: a dict, or its canonical JSON string (Arrow cannot hold every dict)."""
    if isinstance(value, Graph):
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise GoldError(f"row {row}: column 'graph' is a string but not JSON ({exc})") from exc
    try:
        return Graph.from_dict(value, "graph")
    except SchemaError as exc:
        raise GoldError(f"row {row}: column 'graph' is not a graph: {exc}") from exc


def _types(value: Any, column: str, row: int) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"row {row}: column '{column}' must be a list of strings, got {type(value).__name__}")
    return tuple(value)


def _task_context(key: tuple, row: int) -> TaskContext:
    text, etypes, rtypes = key
    if not isinstance(text, str):
        raise ValueError(f"row {row}: column 'text' must be a string, got {type(text).__name__}")
    for column, types in (("entity_types", etypes), ("relation_types", rtypes)):
        if not all(isinstance(t, str) for t in types):
            raise ValueError(f"row {row}: column '{column}' must hold only strings, got {list(types)!r}")
    return TaskContext(text, etypes, rtypes)


def _gold_memo_key(value: Any) -> Any:
    # GRPO repeats each prompt num_generations times, but rows from a datasets.Dataset are fresh
    # dicts: key them by their JSON (a few microseconds) rather than by identity.
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return id(value)  # not JSON-serialisable: gold_graph() will say what is wrong with it


def _column(kwargs: Mapping[str, Any], name: str, n: int) -> Sequence[Any]:
    if name not in kwargs:
        raise ValueError(
            f"reward needs the dataset column '{name}' (columns read: {', '.join(COLUMNS)}); "
            f"got columns {sorted(k for k in kwargs if k not in ('prompts', 'completions'))}"
        )
    values = kwargs[name]
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions")
    return values


class BatchAnalyzer:
    """Analyses a batch once; later calls with the same batch get the cached result.

    max_completion_length (tokens) with TRL's `completion_ids` detects completions cut at the limit;
    eos_token_id, when given, exempts a completion that ends with EOS exactly at the limit.
    `on_new_batch(analyses)` is called once per newly analysed batch (diagnostics counters).
    """

    def __init__(
        self,
        max_completion_length: int | None = None,
        eos_token_id: int | None = None,
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
        on_new_batch: Any = None,
    ):
        if max_completion_length is not None and max_completion_length < 1:
            raise ValueError(f"max_completion_length must be >= 1, got {max_completion_length}")
        self.max_completion_length = max_completion_length
        self.eos_token_id = eos_token_id
        self.max_completion_chars = max_completion_chars
        self.on_new_batch = on_new_batch
        self._snapshot: tuple | None = None
        self._analyses: list[Analysis] = []
        self.n_batches = 0  # batches actually analysed (the benchmark and tests check the cache with it)

    def analyse(self, completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Analysis]:
        n = len(completions)
        columns = [_column(kwargs, name, n) for name in COLUMNS]
        ids = kwargs.get("completion_ids") if self.max_completion_length is not None else None
        if self.max_completion_length is not None and ids is None:
            raise ValueError("max_completion_length is set but the batch has no 'completion_ids' (TRL passes them)")
        snapshot = (list(completions), *(list(c) for c in columns), None if ids is None else list(ids))
        if self._snapshot is not None and self._snapshot == snapshot:
            return self._analyses
        analyses = self._analyse(completions, columns, ids)
        self._snapshot, self._analyses = snapshot, analyses
        self.n_batches += 1
        if self.on_new_batch is not None:
            self.on_new_batch(analyses)
        return analyses

    def _analyse(self, completions: Sequence[Any], columns: list[Sequence[Any]], ids: Sequence[Any] | None) -> list[Analysis]:
        texts, etypes, rtypes, golds = columns
        contexts: dict[tuple, TaskContext] = {}
        gold_keys: dict[Any, GraphKeys] = {}
        out = []
        for i, completion in enumerate(completions):
            ctx_key = (texts[i], _types(etypes[i], "entity_types", i), _types(rtypes[i], "relation_types", i))
            ctx = contexts.get(ctx_key)
            if ctx is None:
                ctx = contexts[ctx_key] = _task_context(ctx_key, i)
            gold_value = golds[i]
            gold = gold_keys.get(memo_key := _gold_memo_key(gold_value))
            if gold is None:
                gold = gold_keys[memo_key] = GraphKeys.of(gold_graph(gold_value, i))
            out.append(self._one(completion, ctx, gold, None if ids is None else ids[i]))
        return out

    def _truncated(self, ids: Sequence[int] | None, parse: ParseResult) -> bool:
        # With token counts, the limit decides (a model that stops mid-JSON on its own is broken,
        # not truncated); without them, a JSON or think block cut mid-way is the best evidence.
        if self.max_completion_length is not None:
            return self._cut_at_limit(ids)
        return parse.error in (TRUNCATED, UNCLOSED_THINK)

    def _cut_at_limit(self, ids: Sequence[int] | None) -> bool:
        if ids is None or self.max_completion_length is None or len(ids) < self.max_completion_length:
            return False
        return self.eos_token_id is None or not len(ids) or ids[-1] != self.eos_token_id

    def _one(self, completion: Any, ctx: TaskContext, gold: GraphKeys, ids: Sequence[int] | None) -> Analysis:
        text = completion_text(completion)
        if len(text) > self.max_completion_chars:
            return Analysis(text, None, self._cut_at_limit(ids), True, ctx, gold, None, None, None, [])
        parse = parse_completion(text)
        truncated = self._truncated(ids, parse)
        graph = None if truncated else parse.graph
        if graph is None:
            return Analysis(text, parse, truncated, False, ctx, gold, None, None, None, [])
        pred = GraphKeys.of(graph)
        score = score_keys(pred, gold, per_type=False)
        return Analysis(text, parse, truncated, False, ctx, gold, graph, pred, score, validate_graph(graph, ctx))
