"""Rewards by name: the registry, the weight schemes, and `build()` for GRPO.

    funcs, weights = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=512)
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))

Each function has TRL's signature `fn(completions, **kwargs) -> list[float]` and reads the dataset
columns `text`, `entity_types`, `relation_types`, `graph` (a dict or its JSON string) by name; its
`__name__` is its registry name, so TRL logs it as `rewards/<name>/mean`.

The REGISTRY functions stand alone: each call parses its batch itself. The functions of one
`build()` share a `BatchAnalyzer`, so a batch is parsed once however many rewards read it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from rewards.analysis import DEFAULT_MAX_COMPLETION_CHARS, Analysis, BatchAnalyzer
from rewards.diagnostics import Diagnostics
from rewards.functions import SCORERS

RewardFn = Callable[..., list[float]]

# The kit's scheme: quality dominates (F1s), form earns a little, hygiene and truncation penalise.
# soft_entity_match is opt-in (training-only partial credit): weight 0 here.
DEFAULT_WEIGHTS: dict[str, float] = {
    "format": 0.25,
    "json_valid": 0.25,
    "entity_f1": 1.0,
    "relation_f1": 1.0,
    "grounding": 0.5,
    "type_adherence": 0.5,
    "consistency": 0.5,
    "truncation": 1.0,
    "soft_entity_match": 0.0,
}

# The reference open-r1-text2graph scheme, for the ablation: format + JSON + plain F1s, equal weights.
REFERENCE_WEIGHTS: dict[str, float] = {"format": 1.0, "json_valid": 1.0, "entity_f1": 1.0, "relation_f1": 1.0}

# Reward ranges (low, high) per name, as documented in each function's docstring.
RANGES: dict[str, tuple[float, float]] = {name: bounds for name, (_, bounds) in SCORERS.items()}

# Rewards that only make sense with a think block; build() drops them in non-reasoning mode.
REASONING_ONLY = frozenset({"format"})


def _wrap(name: str, score: Callable[[Analysis], float], analyzer_of: Callable[[], BatchAnalyzer]) -> RewardFn:
    def reward(completions: Sequence[Any], **kwargs: Any) -> list[float]:
        return [score(a) for a in analyzer_of().analyse(completions, kwargs)]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = score.__doc__
    return reward


def _standalone(name: str) -> RewardFn:
    score, _ = SCORERS[name]
    # A fresh analyzer per call: no state shared between calls (and no text-length caching surprises).
    return _wrap(name, score, lambda: BatchAnalyzer())


REGISTRY: dict[str, RewardFn] = {name: _standalone(name) for name in SCORERS}


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
        fn = _wrap(name, SCORERS[name][0], lambda: analyzer)
        fn.diagnostics = diagnostics  # type: ignore[attr-defined]
        fn.analyzer = analyzer  # type: ignore[attr-defined]
        funcs.append(fn)
    return funcs, [w for _, w in kept]
