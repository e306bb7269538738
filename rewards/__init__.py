"""GRPO rewards for t2g: hack-resistant, registered by name, one parse per batch.

    import rewards
    funcs, weights = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=512)
    trainer = GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))
    rewards.RewardDiagnosticsCallback(funcs).install(trainer)

`rewards.REWARDS` holds one row per reward (name, function, range, default weight, reasoning-only,
what it pays for); REGISTRY, DEFAULT_WEIGHTS, RANGES and REASONING_ONLY are derived from it.
See `rewards.functions` for each reward's definition, `rewards.registry` for `build`.
`RewardDiagnosticsCallback` is imported on first use (it needs transformers).
"""

from __future__ import annotations

from typing import Any

from rewards.analysis import DEFAULT_MAX_COMPLETION_CHARS, Analysis, BatchAnalyzer, GoldError
from rewards.diagnostics import Diagnostics
from rewards.registry import (DEFAULT_WEIGHTS, RANGES, REASONING_ONLY, REFERENCE_WEIGHTS, REGISTRY, REWARDS, Reward, build,
                              check_weights, parse_weights)

__all__ = [
    "Analysis",
    "BatchAnalyzer",
    "DEFAULT_MAX_COMPLETION_CHARS",
    "DEFAULT_WEIGHTS",
    "Diagnostics",
    "GoldError",
    "RANGES",
    "REASONING_ONLY",
    "REFERENCE_WEIGHTS",
    "REGISTRY",
    "REWARDS",
    "Reward",
    "RewardDiagnosticsCallback",
    "build",
    "check_weights",
    "parse_weights",
]


def __getattr__(name: str) -> Any:
    if name == "RewardDiagnosticsCallback":
        from rewards.callback import RewardDiagnosticsCallback

        return RewardDiagnosticsCallback
    raise AttributeError(f"module 'rewards' has no attribute {name!r}")
