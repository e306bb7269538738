"""bench_grpo_cpu's arithmetic: the rates it reports, as ratios to the baseline measured in the same run,
over all rounds and round by round."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import bench_grpo_cpu  # noqa: E402


def result(step_s, mean_length, zero_std, completions=16, sample_s=None):
    return {"step_s": step_s, "mean_length": mean_length, "frac_reward_zero_std": zero_std,
            "completions_per_step": completions, "peak_rss_mb": 1000, "max_completion_length": 256,
            "sample_s": sample_s or [None] * len(step_s)}


def test_rates_count_only_informative_completions_and_ratios_follow_each_round():
    today = [result([100.0, 60.0], [80, 90], [0.0, 0.5]), result([120.0, 80.0], [70, 70], [0.25, 0.0])]
    fast = [result([20.0, 20.0], [80, 80], [0.0, 0.0]), result([50.0, 30.0], [70, 70], [0.0, 0.0])]
    row = bench_grpo_cpu.summarize("today", today)
    assert row["s_per_step"] == pytest.approx(90.0)
    assert row["tokens_per_s"] == pytest.approx(16 * (80 + 90 + 70 + 70) / 360)
    # 16 + 8 + 12 + 16 completions in groups whose rewards differ
    assert row["informative_per_s"] == pytest.approx(52 / 360)
    by_round = bench_grpo_cpu.round_ratios(fast, today)
    assert by_round == pytest.approx([(32 / 40) / (24 / 160), (32 / 80) / (28 / 200)])
    # a baseline round that taught nothing does not divide by zero
    assert bench_grpo_cpu.round_ratios(fast[:1], [result([10.0], [5], [1.0])])[0] > 1e6


def test_every_arm_sets_only_train_config_flags_to_allowed_values():
    """An arm is applied to a TrainConfig after the SFT adapter has trained: a misspelt field or value would fail
    only then."""
    from dataclasses import fields

    from t2g.train.config import TrainConfig

    spec = {f.name: f for f in fields(TrainConfig)}
    for arm, settings in bench_grpo_cpu.ARMS.items():
        assert set(settings) <= set(spec), (arm, set(settings) - set(spec))
        for name, value in settings.items():
            choices = spec[name].metadata.get("choices")
            assert not choices or value in choices, (arm, name, value, choices)


def test_report_prints_each_arm_against_the_first_and_the_rounds():
    today = [result([100.0], [80], [0.0]), result([100.0], [80], [0.0])]
    fast = [result([25.0], [80], [0.0], sample_s=[10.0]), result([50.0], [80], [0.0], sample_s=[20.0])]
    rows = [{**bench_grpo_cpu.summarize(a, r), "round_x": bench_grpo_cpu.round_ratios(r, today)}
            for a, r in (("today", today), ("all", fast))]
    flags = bench_grpo_cpu.Flags(arms=("today", "all"), rounds=2, steps=1)
    text = bench_grpo_cpu.report(rows, flags)
    line = next(ln for ln in text.splitlines() if ln.startswith("all "))
    assert "2.67" in line.split()  # 100 s against 37.5 s a step, every completion informative
    assert "15.0" in line.split()  # llama.cpp's sampling seconds a step; generate logs none: "-"
    assert next(ln for ln in text.splitlines() if ln.startswith("today ")).split()[-4] == "-"
    assert "informative/s x by round: all 4.00 2.00" in text
