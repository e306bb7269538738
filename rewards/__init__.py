"""GRPO rewards for t2g: hack-resistant, registered by name, one parse per batch.

    import rewards
    funcs, weights = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=512)
    trainer = GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))
    rewards.RewardDiagnosticsCallback(funcs).install(trainer)

See `rewards.functions` for each reward's definition and range, `rewards.registry` for `build`.
`RewardDiagnosticsCallback` is imported on first use (it needs transformers).
"""

from __future__ import annotations

from typing import Any

from rewards.analysis import DEFAULT_MAX_COMPLETION_CHARS, Analysis, BatchAnalyzer, GoldError
from rewards.diagnostics import Diagnostics
from rewards.registry import DEFAULT_WEIGHTS, RANGES, REASONING_ONLY, REFERENCE_WEIGHTS, REGISTRY, build, check_weights

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
    "RewardDiagnosticsCallback",
    "build",
    "check_weights",
]


def __getattr__(name: str) -> Any:
    if name == "RewardDiagnosticsCallback":
        from rewards.callback import RewardDiagnosticsCallback

        return RewardDiagnosticsCallback
    raise AttributeError(f"module 'rewards' has no attribute {name!r}")
