"""What the policy is doing wrong, as rates a user can read during training.

`Diagnostics` counts over every batch a `build()`'s rewards analyse (once per batch, not once per
reward) and turns the counts into rates on demand; `RewardDiagnosticsCallback` (rewards.callback)
puts them beside TRL's metrics at each logging step and starts the counts afresh.

Completion-level rates are over completions; span/type/relation rates are over the items of the
usable graphs (a rate with nothing to count over is left out rather than reported as 0).
Batches scored during evaluation are counted too and reported with the next log (under `eval_`
when that log is an evaluation one).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from t2g.task.parsing import EMPTY, TEXT_BEFORE_JSON, TRAILING_TEXT, WRONG_SHAPE
from t2g.task.schema import DANGLING_HEAD, DANGLING_TAIL, DUPLICATE_ENTITY, DUPLICATE_RELATION, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE

from rewards.analysis import Analysis

PREFIX = "diagnostics/"

# rate name -> (numerator counter, denominator counter)
RATES: dict[str, tuple[str, str]] = {
    "empty_output_rate": ("empty_output", "completions"),
    "invalid_json_rate": ("invalid_json", "completions"),
    "wrong_shape_rate": ("wrong_shape", "completions"),
    "text_around_json_rate": ("text_around_json", "completions"),
    "no_usable_graph_rate": ("no_graph", "completions"),
    "empty_graph_rate": ("empty_graph", "completions"),
    "truncated_rate": ("truncated", "completions"),
    "oversized_rate": ("oversized", "completions"),
    "ungrounded_span_rate": ("ungrounded", "entities"),
    "out_of_schema_type_rate": ("unknown_type", "items"),
    "dangling_relation_rate": ("dangling", "relations"),
    "duplicate_rate": ("duplicate", "items"),
}


def _add_completion(c: Counter, a: Analysis) -> None:
    error = a.parse.error if a.parse is not None else None
    c["completions"] += 1
    c["empty_output"] += error == EMPTY or not a.text.strip()
    c["invalid_json"] += a.parse is None or not a.parse.json_parsed
    c["wrong_shape"] += error == WRONG_SHAPE
    c["text_around_json"] += error in (TEXT_BEFORE_JSON, TRAILING_TEXT)
    c["no_graph"] += a.graph is None
    c["truncated"] += a.truncated
    c["oversized"] += a.oversized
    if a.graph is not None:
        _add_items(c, a)


def _add_items(c: Counter, a: Analysis) -> None:
    assert a.graph is not None
    n_ent, n_rel = len(a.graph.entities), len(a.graph.relations)
    c["empty_graph"] += n_ent + n_rel == 0
    c["entities"] += n_ent
    c["relations"] += n_rel
    c["items"] += n_ent + n_rel
    if not a.violations:
        return
    by_kind: dict[str, set[str]] = {}
    for v in a.violations:
        by_kind.setdefault(v.kind, set()).add(v.path)

    def paths(*kinds: str) -> int:  # items flagged by any of `kinds`, each item once
        return len(set().union(*(by_kind.get(k, set()) for k in kinds)))

    c["ungrounded"] += paths(SPAN_NOT_IN_TEXT)
    c["unknown_type"] += paths(UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE)
    c["dangling"] += paths(DANGLING_HEAD, DANGLING_TAIL)
    c["duplicate"] += paths(DUPLICATE_ENTITY, DUPLICATE_RELATION)


class Diagnostics:
    """Counters over the analysed batches since the last `pop_rates()`."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def update(self, analyses: Iterable[Analysis]) -> None:
        for a in analyses:
            _add_completion(self.counts, a)

    def rates(self) -> dict[str, float]:
        """`{"diagnostics/<rate>": value}` for every rate with a non-zero denominator."""
        out = {}
        for name, (num, den) in RATES.items():
            if self.counts[den]:
                out[PREFIX + name] = self.counts[num] / self.counts[den]
        return out

    def pop_rates(self) -> dict[str, float]:
        rates = self.rates()
        self.counts = Counter()
        return rates
