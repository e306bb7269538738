"""(b+)'s budget in the quality benchmark: SFT steps for (c)'s training time, measured after (c) or given up
front (--more_sft_s) so that (b+) can train beside (c); either way the report sets it beside (c)'s time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import quality_budget  # noqa: E402
from quality_render import budget_line  # noqa: E402
from quality_stages import FULL, BenchError  # noqa: E402

SIZES = replace(FULL, grpo_steps=160, grpo_select_every=32)  # (b+) gets (c)'s 5 selection candidates


@pytest.fixture
def calibrated(monkeypatch, tmp_path):
    """An SFT step measured at 2.5 s, from a selected SFT checkpoint, without training anything."""
    measured = []
    monkeypatch.setattr(quality_budget, "selected_sft", lambda out, wait_s: tmp_path / "sft" / "checkpoint-400")
    monkeypatch.setattr(quality_budget, "_sft_seconds_per_step",
                        lambda folder, sizes, seed, dtype, start, n: measured.append(n) or 2.5)
    return measured


def test_a_budget_given_up_front_needs_no_finished_grpo_stage(tmp_path, calibrated):
    budget = quality_budget.more_sft_steps(tmp_path, SIZES, 42, "bf16", wait_s=0, given_s=101.0)
    # ceil(101 / 2.5) = 41 steps, rounded up to whole checkpoints of 5 candidates: 45
    assert budget["steps"] == 45 and budget["budget_s"] == 101.0 and budget["budget_from"] == "--more_sft_s"
    assert calibrated == [quality_budget.CALIBRATION_STEPS]
    # computed once: a resumed (b+) reads the record, whatever it is given now
    assert quality_budget.more_sft_steps(tmp_path, SIZES, 42, "bf16", wait_s=0, given_s=999.0) == budget
    assert calibrated == [quality_budget.CALIBRATION_STEPS]
    check = quality_budget.budget_check(tmp_path, {"timing": {"train_s": 202.0}})
    assert check == {"budget_s": 101.0, "budget_from": "--more_sft_s", "grpo_train_s": 202.0, "budget_over_grpo": 0.5,
                     "steps": 45}
    assert "given up front by --more_sft_s" in budget_line(check) and "budget / (c) = 0.5" in budget_line(check)


def test_without_a_given_budget_it_is_the_time_grpo_trained(tmp_path, calibrated):
    with pytest.raises(BenchError, match="run the grpo stage first"):
        quality_budget.more_sft_steps(tmp_path, SIZES, 42, "bf16", wait_s=0)
    assert calibrated == []  # nothing measured before the budget is known
    (tmp_path / "grpo").mkdir()
    (tmp_path / "grpo" / "stage.json").write_text(json.dumps({"timing": {"train_s": 50.0}}))
    budget = quality_budget.more_sft_steps(tmp_path, SIZES, 42, "bf16", wait_s=0)
    assert budget["steps"] == 20 and budget["budget_s"] == 50.0 and budget["budget_from"] == "grpo"
    assert quality_budget.budget_check(tmp_path, {"timing": {"train_s": 50.0}})["budget_over_grpo"] == 1.0


def test_a_budget_written_before_the_flag_still_reads(tmp_path):
    (tmp_path / "sft_more").mkdir()
    (tmp_path / "sft_more" / "budget.json").write_text(json.dumps(
        {"steps": 139, "grpo_train_s": 1119.2, "sft_s_per_step": 8.08, "calibration_steps": 30}))
    check = quality_budget.budget_check(tmp_path, {"timing": {"train_s": 1119.2}})
    assert check["budget_s"] == 1119.2 and check["budget_from"] == "grpo" and check["budget_over_grpo"] == 1.0


def test_a_negative_budget_is_refused_by_name(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_quality.py"), "--quick", f"--out={tmp_path}",
                           "--stages=sft_more", "--more_sft_s=-5"], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "--more_sft_s=-5.0" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "sft_more").exists()


def test_a_resumed_b_more_keeps_its_budget_and_says_a_new_one_is_not_used(tmp_path, capsys):
    from types import SimpleNamespace

    import bench_quality

    (tmp_path / "sft_more").mkdir()
    (tmp_path / "sft_more" / "budget.json").write_text(json.dumps(
        {"steps": 650, "budget_s": 5600.0, "budget_from": "--more_sft_s", "sft_s_per_step": 8.652, "calibration_steps": 30}))
    flags = SimpleNamespace(seed=42, dtype="bf16", wait_s=0, more_sft_s=4000.0, more_sft_steps=0)
    assert bench_quality._more(tmp_path, "sft_more", SIZES, flags) == {"more_sft_steps": 650}
    out = capsys.readouterr().out
    assert "--more_sft_s=4000 is not used" in out and "650 SFT steps = 5600 s (given up front by --more_sft_s)" in out
    same = SimpleNamespace(**{**vars(flags), "more_sft_s": 5600.0})
    assert bench_quality._more(tmp_path, "sft_more", SIZES, same) == {"more_sft_steps": 650}
    assert "is not used" not in capsys.readouterr().out


def test_a_step_count_given_up_front_measures_nothing_and_is_no_time_matched_control(tmp_path, calibrated, capsys):
    from types import SimpleNamespace

    import bench_quality

    flags = SimpleNamespace(seed=42, dtype="bf16", wait_s=0, more_sft_s=0.0, more_sft_steps=390)
    assert bench_quality._more(tmp_path, "sft_more", SIZES, flags) == {"more_sft_steps": 390}
    assert calibrated == []  # no SFT step timed, no grpo stage waited for
    assert "390 SFT steps (a step count given by --more_sft_steps, not a time)" in capsys.readouterr().out
    # a resumed stage keeps its count and says that a new one is not used
    assert bench_quality._more(tmp_path, "sft_more", SIZES, SimpleNamespace(**{**vars(flags), "more_sft_steps": 500})) \
        == {"more_sft_steps": 390}
    assert "--more_sft_steps=500 is not used" in capsys.readouterr().out
    check = quality_budget.budget_check(tmp_path, {"timing": {"train_s": 202.0}})
    assert check["budget_s"] is None and check["budget_over_grpo"] is None and check["steps"] == 390
    assert "not (c)'s time-matched control" in budget_line(check) and "budget / (c)" not in budget_line(check)


@pytest.mark.parametrize("flags", [["--more_sft_steps=-1"], ["--more_sft_steps=390", "--more_sft_s=100"]])
def test_a_step_count_that_is_negative_or_beside_a_time_is_refused_by_name(tmp_path, flags):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_quality.py"), "--quick", f"--out={tmp_path}",
                           "--stages=sft_more", *flags], capture_output=True, text=True,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "--more_sft_steps=" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "sft_more").exists()
