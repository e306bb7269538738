"""The quality benchmark's bookkeeping that a long run depends on: a training invocation cut off
mid-way still counts its time up to its last checkpoint (the (b+) budget is (c)'s training time)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import quality_stages  # noqa: E402


def _checkpoint(stage_dir: Path, step: int, mtime: float) -> None:
    folder = stage_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).write_text("{}")
        os.utime(folder / name, (mtime, mtime))


def test_a_cut_off_invocation_counts_its_time_up_to_its_last_checkpoint(tmp_path):
    stage_dir, record = tmp_path / "run" / "grpo", tmp_path / "training.json"
    assert quality_stages._earlier_runs(record, stage_dir) == []  # nothing yet
    started = time.time() - 1000
    _checkpoint(stage_dir, 10, started - 50)  # from an earlier invocation: not this one's
    _checkpoint(stage_dir, 20, started + 300)
    _checkpoint(stage_dir, 30, started + 600)
    record.write_text(json.dumps({"runs": [{"train_s": 50.0, "cpu_s": 90.0, "threads": 2, "in_stage": True}],
                                  "in_progress": {"wall_started": started, "in_stage": True, "threads": 2}}))
    runs = quality_stages._earlier_runs(record, stage_dir)
    assert runs[0]["train_s"] == 50.0
    assert runs[1] == {"train_s": 600.0, "cpu_s": None, "threads": 2, "in_stage": True, "interrupted": True}
    # credited once: the record no longer says "in progress"
    assert json.loads(record.read_text()) == {"runs": runs}
    assert quality_stages._earlier_runs(record, stage_dir) == runs


def test_a_cut_off_invocation_without_a_checkpoint_counts_nothing(tmp_path):
    stage_dir, record = tmp_path / "run" / "grpo", tmp_path / "training.json"
    record.write_text(json.dumps({"runs": [], "in_progress": {"wall_started": time.time(), "in_stage": False, "threads": 1}}))
    assert quality_stages._earlier_runs(record, stage_dir)[0]["train_s"] == 0.0


def test_the_sft_data_design_flags_reach_the_training_config(tmp_path):
    # issue 18's data experiments change only these; each must reach t2g's TrainConfig, not stop at the Sizes
    from dataclasses import replace

    sizes = replace(quality_stages.QUICK, augment_distractors="builtin", augment_empty_prob=0.25,
                    augment_drop_prob=0.3, augment_keep_all_prob=0.5, augment_rename_prob=0.9, augment_synonyms="wide")
    cfg = quality_stages.train_config(tmp_path / "run", sizes, 42, "sft", None, "fp32", 0)
    assert (cfg.augment_distractors, cfg.augment_empty_prob, cfg.augment_drop_prob, cfg.augment_keep_all_prob,
            cfg.augment_rename_prob, cfg.augment_synonyms) == ("builtin", 0.25, 0.3, 0.5, 0.9, "wide")
    default = quality_stages.train_config(tmp_path / "run2", quality_stages.FULL, 42, "sft", None, "fp32", 0)
    assert default.augment_rename_prob == 0.5 and default.augment_distractors == "none" and default.augment_keep_all_prob == 0
    assert default.augment_synonyms == "builtin"


@pytest.mark.parametrize("stage,grpo_select_every,more_sft_steps,n_candidates", [
    ("grpo", 16, 0, 10),       # candidates every 16 (the fourteenth session ran them): saves every 10 had missed all but the last
    ("grpo", 40, 0, 4),        # the full run's
    ("sft_more", 40, 1104, 4),  # the fifth study's (b+): 276 steps between candidates, none of them saved, before
    ("sft_more", 40, 7, 7),     # fewer steps than (c) has candidates: each one
])
def test_every_selection_candidate_is_a_saved_checkpoint(tmp_path, stage, grpo_select_every, more_sft_steps, n_candidates):
    from dataclasses import replace

    sizes = replace(quality_stages.FULL, grpo_select_every=grpo_select_every)
    every = quality_stages.selection_every(sizes, stage, more_sft_steps)
    cfg = quality_stages.train_config(tmp_path / "run", sizes, 42, "sft" if more_sft_steps else stage, None, "fp32",
                                      more_sft_steps)
    steps = more_sft_steps or sizes.grpo_steps
    saved = set(range(cfg.save_steps, steps + 1, cfg.save_steps)) | {steps}
    candidates = set(range(every, steps + 1, every)) | {steps}  # as select_on_dev picks them: every-th and the last
    assert candidates <= saved and cfg.save_steps <= quality_stages.RESUME_EVERY
    assert len(candidates) == n_candidates


def test_the_grpo_learning_rate_flag_reaches_the_training_config(tmp_path):
    from dataclasses import replace

    cfg = quality_stages.train_config(tmp_path / "run", replace(quality_stages.QUICK, grpo_learning_rate=3e-5),
                                      42, "grpo", None, "fp32", 0)
    assert cfg.grpo_learning_rate == 3e-5
    assert quality_stages.train_config(tmp_path / "b", quality_stages.FULL, 42, "grpo").grpo_learning_rate == 1e-4


def test_the_grpo_weights_flag_reaches_c_and_only_c(tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import bench_quality

    flags = bench_quality.parse(bench_quality.Flags, bench_quality.read_command_line(
        ["--quick", "--out=x", "--grpo_weights=relation_f1=0,relation_gain=1"], bench_quality.PROG))
    sizes = replace(quality_stages.QUICK, grpo_weights=flags.grpo_weights)
    cfg = quality_stages.train_config(tmp_path / "c", sizes, 42, "grpo", bench_quality.c_weights(sizes), "fp32", 0)
    trained = quality_stages.grpo_weights(cfg)
    assert trained["relation_gain"] == 1.0 and "relation_f1" not in trained and trained["entity_f1"] == 1.0
    # unset: the registry's defaults, which leave relation_gain out
    assert "relation_gain" not in quality_stages.grpo_weights(
        quality_stages.train_config(tmp_path / "d", quality_stages.QUICK, 42, "grpo", bench_quality.c_weights(quality_stages.QUICK), "fp32", 0))
    # the rows as the benchmark builds them, from an SFT stage: (c)'s seeds take the flag, (d) the reference scheme
    (tmp_path / "out" / "sft").mkdir(parents=True)
    (tmp_path / "out" / "sft" / "stage.json").write_text(json.dumps({"selected": str(tmp_path / "checkpoint-2")}))
    row_weights = {stage: bench_quality._training(tmp_path / "out", stage, sizes, flags)[3]
                   for stage in ("grpo", "grpo_seed3", "grpo_ref")}
    assert row_weights["grpo"] == row_weights["grpo_seed3"] == {"relation_f1": 0.0, "relation_gain": 1.0}
    assert row_weights["grpo_ref"] == quality_stages.reference_weights() and row_weights["grpo_ref"]["relation_gain"] == 0.0
    for bad, said in (("relation_gain", "expected name=weight"), ("relation_gian=1", "unknown reward"),
                      ("relation_gain=-1", "must be >= 0"), ("relation_gain=x", "expected name=weight"),
                      ("relation_gain=1,relation_gain=2", "weighted twice")):
        with pytest.raises(bench_quality.BenchError, match=f"--grpo_weights: .*{said}"):
            bench_quality.c_weights(replace(sizes, grpo_weights=tuple(bad.split(","))))
