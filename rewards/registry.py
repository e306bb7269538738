"""Rewards by name: one row per reward, the registry and weight schemes derived from the rows,
and `build()` for GRPO.

    funcs, weights = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=512)
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))

Each function has TRL's signature `fn(completions, **kwargs) -> list[float]` and reads the dataset
columns `text`, `entity_types`, `relation_types`, `graph` (a dict or its JSON string) by name; its
`__name__` is its registry name, so TRL logs it as `rewards/<name>/mean`.

The REGISTRY functions stand alone: each call parses its batch itself. The functions of one
`build()` share a `BatchAnalyzer`, so a batch is parsed once however many rewards read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from rewards import functions as f
from rewards.analysis import DEFAULT_MAX_COMPLETION_CHARS, Analysis, BatchAnalyzer
from rewards.diagnostics import Diagnostics

RewardFn = Callable[..., list[float]]


@dataclass(frozen=True)
class Reward:
    """Everything the kit knows about one reward; `name` is the metric TRL logs (`rewards/<name>/mean`)."""

    name: str
    score: Callable[..., Any]  # Analysis -> float; with `batch`, Sequence[Analysis] -> list[float]
    range: tuple[float, float]  # (low, high), as the function's docstring states
    default_weight: float
    reasoning_only: bool  # dropped by build() without a think block: the plain prompt asks for the JSON alone
    pays_for: str  # one line, the README's "pays for" column
    reference_weight: float = 0.0  # the open-r1-text2graph scheme, for the ablation
    batch: bool = False  # scored over the whole batch (relation_gain: priced by the batch's own F1)


# The kit's scheme: quality dominates (F1s), form earns a little, hygiene and truncation penalise;
# soft_entity_match is opt-in (training-only partial credit). The reference scheme is format + JSON
# + plain F1s, equal weights.
REWARDS: tuple[Reward, ...] = (
    Reward("format", f.format_reward, (0.0, 1.0), 0.25, True,
           "exactly one non-empty `<think>` block first, then the answer (reasoning mode only)",
           reference_weight=1.0),
    Reward("json_valid", f.json_valid, (0.0, 1.0), 0.25, False,
           "1 for a valid graph, 0.5 with text around it, 0.25 for JSON of the wrong shape",
           reference_weight=1.0),
    Reward("entity_f1", f.entity_f1, (0.0, 1.0), 1.0, False,
           "strict entity F1 from `t2g/task/scoring.py`; empty vs empty = 1; no usable graph = 0",
           reference_weight=1.0),
    Reward("relation_f1", f.relation_f1, (0.0, 1.0), 1.0, False,
           "strict relation F1 from `t2g/task/scoring.py`; empty vs empty = 1; no usable graph = 0",
           reference_weight=1.0),
    Reward("grounding", f.grounding, (-1.0, 0.0), 0.5, False,
           "minus the fraction of ungrounded spans; -1 without a usable graph"),
    Reward("type_adherence", f.type_adherence, (-1.0, 0.0), 0.5, False,
           "minus the fraction of off-list types; -1 without a usable graph"),
    Reward("consistency", f.consistency, (-1.0, 0.0), 0.5, False,
           "minus the fraction of dangling or repeated items; -1 without a usable graph"),
    Reward("truncation", f.truncation, (-1.0, 0.0), 1.0, False,
           "-1 when cut at the length limit (and no credit from any other reward)"),
    Reward("relation_gain", f.relation_gain, (-1.0, 1.0), 0.0, False,
           "training-only: a sentence's share of the batch's corpus relation F1 (leaving relations out earns 0, not 1)",
           batch=True),
    Reward("soft_entity_match", f.soft_entity_match, (0.0, 1.0), 0.0, False,
           "training-only partial credit for near-miss spans; never used in evaluation"),
)

DEFAULT_WEIGHTS: dict[str, float] = {r.name: r.default_weight for r in REWARDS}
REFERENCE_WEIGHTS: dict[str, float] = {r.name: r.reference_weight for r in REWARDS if r.reference_weight}
RANGES: dict[str, tuple[float, float]] = {r.name: r.range for r in REWARDS}
REASONING_ONLY = frozenset(r.name for r in REWARDS if r.reasoning_only)
_BY_NAME = {r.name: r for r in REWARDS}


def _wrap(row: Reward, analyzer_of: Callable[[], BatchAnalyzer]) -> RewardFn:
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        analyses: list[Analysis] = analyzer_of().analyse(completions, kwargs)
        return list(row.score(analyses)) if row.batch else [row.score(a) for a in analyses]

    reward.__name__ = reward.__qualname__ = row.name
    reward.__doc__ = row.score.__doc__
    return reward


def _standalone(row: Reward) -> RewardFn:
    # A fresh analyzer per call: no state shared between calls (and no text-length caching surprises).
    return _wrap(row, lambda: BatchAnalyzer())


REGISTRY: dict[str, RewardFn] = {r.name: _standalone(r) for r in REWARDS}


def check_weights(weights: Mapping[str, float]) -> None:
    unknown = sorted(set(weights) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown reward name(s) {unknown}; known rewards: {', '.join(REGISTRY)}")
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w != w:
            raise ValueError(f"weight of reward '{name}' must be a number, got {w!r}")
        if w < 0:
            # A negative weight on a penalty would pay for the violation it measures.
            raise ValueError(f"weight of reward '{name}' must be >= 0 (penalties are already negative), got {w!r}")


def parse_weights(items: Sequence[str]) -> dict[str, float]:
    """`name=weight` items (a comma-separated flag's value, e.g. `relation_f1=0,relation_gain=1`) as a
    weights mapping, checked as `build` checks it; ValueError names the item that is wrong."""
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = (part.strip() for part in item.partition("="))
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not (sep and name) or weight is None:
            raise ValueError(f"reward weight {item!r}: expected name=weight, e.g. relation_gain=1")
        if name in weights:
            raise ValueError(f"reward weight {item!r}: {name} is weighted twice; give it once")
        weights[name] = weight
    check_weights(weights)
    return weights


def build(
    weights: Mapping[str, float],
    reasoning: bool = False,
    max_completion_length: int | None = None,
    eos_token_id: int | None = None,
    max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
) -> tuple[list[RewardFn], list[float]]:
    """The reward functions and weights to hand to GRPO, in the same order.

    - weights: {name: weight >= 0}; zero weights are dropped; unknown names, negative or
      non-numeric weights raise ValueError.
    - reasoning: False drops the reasoning-only rewards (`format`) whatever their weight, since the
      non-reasoning prompt asks for the JSON alone.
    - max_completion_length: GRPOConfig.max_completion_length; with it, a completion whose
      `completion_ids` reach the limit counts as truncated (TRL passes `completion_ids`). Without
      it, truncation is read from the text (JSON or think block cut mid-way).
    - eos_token_id: when given, a completion ending with EOS exactly at the limit is not truncated.
    - max_completion_chars: longer completions get no credit and are not parsed.

    The returned functions share one analyzer (one parse per batch) and one `Diagnostics`,
    reachable as `funcs[i].diagnostics`; pass the list to `RewardDiagnosticsCallback`.
    """
    check_weights(weights)
    kept = [(n, float(w)) for n, w in weights.items() if w != 0 and (reasoning or n not in REASONING_ONLY)]
    if not kept:
        raise ValueError(f"no reward left to train on: every weight is zero (or reasoning-only) in {dict(weights)}")
    diagnostics = Diagnostics()
    analyzer = BatchAnalyzer(max_completion_length, eos_token_id, max_completion_chars, diagnostics.update)
    funcs = []
    for name, _ in kept:
        fn = _wrap(_BY_NAME[name], lambda: analyzer)
        fn.diagnostics = diagnostics  # type: ignore[attr-defined]
        fn.analyzer = analyzer  # type: ignore[attr-defined]
        funcs.append(fn)
    return funcs, [w for _, w in kept]
