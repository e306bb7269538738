"""`RewardDiagnosticsCallback`: the rewards' diagnostics rates, logged beside TRL's metrics.

Kept apart from the rest of `rewards` because it imports transformers (seconds), and
`import rewards` must stay light.

The Trainer records a log entry in `state.log_history` and then calls every callback's `on_log`
in order, the reporting integrations (TensorBoard, W&B, the console printer) first. So the callback
adds its rates to both the `logs` dict and the matching `log_history` entry, and `install(trainer)`
puts it first in the handler so every reporter sees the rates too.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import TrainerCallback

from rewards.diagnostics import Diagnostics


def _diagnostics_of(reward_funcs: Sequence[Any]) -> Diagnostics:
    found = {id(d): d for f in reward_funcs if isinstance(d := getattr(f, "diagnostics", None), Diagnostics)}
    if len(found) != 1:
        raise ValueError(
            "RewardDiagnosticsCallback needs the reward functions returned by one rewards.build() call "
            f"(they share one Diagnostics); found {len(found)} diagnostics among {len(reward_funcs)} functions"
        )
    return next(iter(found.values()))


class RewardDiagnosticsCallback(TrainerCallback):
    """Adds `diagnostics/<rate>` keys (invalid JSON, ungrounded spans, out-of-schema types, empty
    outputs, truncation...) to each log, from the counters of the functions of one `build()`."""

    def __init__(self, reward_funcs: Sequence[Any]):
        self.diagnostics = _diagnostics_of(reward_funcs)

    def install(self, trainer: Any) -> "RewardDiagnosticsCallback":
        """Register with `trainer`, first in line, so reporters that run on_log see the rates."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs is None:
            return
        rates = self.diagnostics.pop_rates()
        if any(k.startswith("eval_") for k in logs):
            rates = {f"eval_{k}": v for k, v in rates.items()}
        logs.update(rates)
        history = getattr(state, "log_history", None)
        if history and history[-1].get("step") == getattr(state, "global_step", None):
            history[-1].update(rates)
