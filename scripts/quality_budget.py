"""(b+)'s budget in the quality benchmark (scripts/bench_quality.py): how many SFT steps fit into the
time (c) trained, at SFT's speed measured just before (b+) trains."""

from __future__ import annotations

import json
import os
from pathlib import Path

from quality_stages import Sizes, _finished_stage, more_sft_checkpoints, selected_sft, train_config
from t2g.files import write_json_atomic

# (b+)'s seconds per SFT step are measured on this many steps just before it trains, from (b)'s selected
# checkpoint, on the same cores: (b)'s own training time is no measure, since anything else that ran beside
# it (tests, other stages) slowed it.
CALIBRATION_STEPS = 30  # or (b)'s own step count, when smaller (--quick)

# Where a budget's seconds came from (budget.json's budget_from), in words for the printout and the report.
SOURCES = {"--more_sft_s": "given up front by --more_sft_s", "grpo": "(c)'s measured GRPO training time",
           "--more_sft_steps": "a step count given by --more_sft_steps, not a time"}


def more_sft_steps(out: Path, sizes: Sizes, seed: int, dtype: str, wait_s: int, given_s: float = 0.0,
                   given_steps: int = 0) -> dict:
    """(b+)'s budget: as many SFT steps as fit into (c)'s first run's training wall time at the seconds per
    step measured just before (CALIBRATION_STEPS, the trainer's own train_runtime), rounded up to whole
    checkpoints. The honest control: a GRPO step costs many SFT steps, so (c) must beat SFT given the same
    time, not SFT stopped early. Computed once; a resumed (b+) reads <out>/sft_more/budget.json.

    given_s > 0 (--more_sft_s) is that time given up front, so that (b+) trains beside (c) on another core
    instead of after it; the report then sets it beside the time (c) did train (budget_check).

    given_steps > 0 (--more_sft_steps) is a step count instead: SFT continued to convergence, whose model a
    later study uses as its (b) (docs/results.md), where a time budget would make the step count depend on
    the machine's load. Such a (b+) is no time-matched control, and budget_check says so."""
    record = out / "sft_more" / "budget.json"
    if record.is_file():
        return _read(record)
    if given_steps > 0:
        budget = {"steps": int(given_steps), "budget_s": None, "budget_from": "--more_sft_steps", "sft_s_per_step": None,
                  "calibration_steps": 0, "threads": len(os.sched_getaffinity(0))}
        write_json_atomic(record, budget)
        return budget
    if given_s > 0:
        budget_s, source = float(given_s), "--more_sft_s"
    else:
        budget_s, source = _finished_stage(out, "grpo", wait_s)["timing"]["train_s"], "grpo"
    n = min(CALIBRATION_STEPS, sizes.sft_steps)
    per_step = _sft_seconds_per_step(out / "sft_more" / "calibration", sizes, seed, dtype, selected_sft(out, wait_s), n)
    steps = -(-budget_s // per_step)
    k = more_sft_checkpoints(sizes)
    budget = {"steps": int(-(-steps // k) * k), "budget_s": budget_s, "budget_from": source,
              "sft_s_per_step": round(per_step, 3), "calibration_steps": n, "threads": len(os.sched_getaffinity(0)),
              "loadavg_1min": round(os.getloadavg()[0], 2)}
    write_json_atomic(record, budget)
    return budget


def budget_check(out: Path, grpo: dict) -> dict:
    """(b+)'s training-time budget beside the time (c)'s first run trained: equal when the budget was (c)'s
    measured time, a ratio to read when it was given up front (--more_sft_s)."""
    budget, trained = _read(out / "sft_more" / "budget.json"), grpo["timing"]["train_s"]
    timed = budget["budget_s"] is not None and trained
    return {"budget_s": budget["budget_s"], "budget_from": budget["budget_from"], "grpo_train_s": trained,
            "budget_over_grpo": round(budget["budget_s"] / trained, 3) if timed else None, "steps": budget["steps"]}


def _read(record: Path) -> dict:
    budget = json.loads(record.read_text())
    if "budget_s" not in budget:  # written before --more_sft_s: the budget was always grpo's measured time
        budget.update(budget_s=budget["grpo_train_s"], budget_from="grpo")
    return budget


def _sft_seconds_per_step(folder: Path, sizes: Sizes, seed: int, dtype: str, start: Path, n: int) -> float:
    import shutil

    from t2g.train import pipeline as train
    from t2g.train.session import ensure_model

    shutil.rmtree(folder, ignore_errors=True)  # a calibration cut off earlier starts over
    cfg = train_config(folder, sizes, seed, "sft", None, dtype, more_sft_steps=n)
    session = train.start(cfg)
    ensure_model(session, adapter=start)
    train.sft(session)
    rows = json.loads((Path(session.run.dir) / "sft" / "log_history.json").read_text())
    runtime = next(r["train_runtime"] for r in reversed(rows) if "train_runtime" in r)
    shutil.rmtree(folder, ignore_errors=True)
    return runtime / n
