"""scripts/quality_ab.py: two runs' stage paired sentence by sentence, the rates taken from each run's
stage.json, and clear errors for an unfinished stage or sets that do not pair up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from t2g.data.canonical import Example, write_jsonl
from t2g.task.schema import Graph

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import quality_ab  # noqa: E402

TYPES = (["person", "organization"], ["works for"])
EMPTY_GRAPH = {"entities": [], "relations": []}


def graph(i: int) -> dict:
    p, o = f"Person{i}", f"Org{i}"
    return {"entities": [{"text": p, "type": "person"}, {"text": o, "type": "organization"}],
            "relations": [{"head": p, "tail": o, "type": "works for"}]}


def fake_run(root: Path, right: set[int], n: int = 20, empty_rate: float = 0.0, stage: str = "sft") -> Path:
    """A run whose `stage` got sentences `right` fully right and answered the rest with nothing."""
    gold = [Example(f"s{i}", f"Person{i} works for Org{i}.", *TYPES, Graph.from_dict(graph(i))) for i in range(n)]
    conditions = {}
    for sub in ("test", "conditions/renamed", "conditions/empty"):
        folder = root / stage / sub
        folder.mkdir(parents=True)
        write_jsonl(folder / "gold.jsonl", gold)
        rows = [{"id": ex.id, "graph": graph(i) if i in right else EMPTY_GRAPH} for i, ex in enumerate(gold)]
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if sub != "test":
            conditions[sub.split("/")[1]] = {"out_of_schema_rate": 0.25, "empty_answer_rate": empty_rate}
    info = {"test": {"out_of_schema_rate": 0.01}, "conditions": conditions}
    if stage.startswith("grpo"):  # a GRPO row's run logs its steps
        run_dir = root / stage / "run"
        (run_dir / "grpo").mkdir(parents=True)
        (run_dir / "grpo" / "log_history.json").write_text(json.dumps(
            [{"step": i, "reward": 1.0 + i / 10, "frac_reward_zero_std": 0.25} for i in range(1, 21)]))
        info["run_dir"] = str(run_dir)
    (root / stage / "stage.json").write_text(json.dumps(info))
    return root


def test_b_right_on_more_sentences_is_ahead_with_an_interval_above_zero(tmp_path, capsys):
    a = fake_run(tmp_path / "a", right=set(range(5)))
    b = fake_run(tmp_path / "b", right=set(range(15)), empty_rate=0.4)
    rows = {r["set"]: r for r in quality_ab.compare(a, b, "sft", resamples=200)}
    assert list(rows) == ["test", "renamed", "empty"]
    rel = rows["test"]["relation"]
    # A: 5 of 20 relations (P 1, R 0.25); B: 15 of 20 (P 1, R 0.75)
    assert rel["a"] == pytest.approx(2 * 0.25 / 1.25) and rel["b"] == pytest.approx(2 * 0.75 / 1.75)
    assert rel["low"] > 0
    assert "entity" not in rows["empty"] and rows["empty"]["empty_answers"] == (0.0, 0.4)
    text = quality_ab.main(["--a", str(a), "--b", str(b), "--resamples", "200", "--out", str(tmp_path / "ab.md")])
    assert rows["test"]["no_relation"] == (0.75, 0.25)  # the 15 and 5 sentences answered with nothing
    assert "| empty (20) | - | - | - | - | 25.0% / 25.0% | 0.0% / 40.0% | 75.0% / 25.0% |" in text
    assert (tmp_path / "ab.md").read_text() == text == capsys.readouterr().out


def test_an_unfinished_stage_and_unpaired_sentences_are_errors_naming_the_file(tmp_path):
    a = fake_run(tmp_path / "a", right={1})
    with pytest.raises(quality_ab.ABError, match=r"nothing/sft/stage.json: no such file"):
        quality_ab.compare(a, tmp_path / "nothing", "sft")
    b = fake_run(tmp_path / "b", right={1}, n=12)
    with pytest.raises(quality_ab.ABError, match=r"gold.jsonl differ: the runs evaluated other sentences"):
        quality_ab.compare(a, b, "sft")


def test_two_stages_of_one_run_pair_up_and_the_table_names_both(tmp_path):
    run = fake_run(tmp_path / "run", right=set(range(5)))
    fake_run(run, right=set(range(15)), stage="grpo")
    rows = {r["set"]: r for r in quality_ab.compare(run, run, "sft", resamples=200, stage_b="grpo")}
    assert rows["test"]["relation"]["low"] > 0  # grpo's 15 right against sft's 5
    text = quality_ab.main(["--a", str(run), "--b", str(run), "--stage", "sft", "--stage_b", "grpo",
                            "--resamples", "200"])
    assert text.startswith(f"A = `{run}/sft`, B = `{run}/grpo`;")
    # the GRPO row's diagnostics follow (sft has none): reward 1.1 .. 3.0, mean 2.05, last ten 2.55
    assert f"| B: `{run}/grpo` | 2.05 / 2.55 | 0.25 / 0.25 |" in text and "A: " not in text
    with pytest.raises(quality_ab.ABError, match=r"run/sft_more/stage.json: no such file"):
        quality_ab.compare(run, run, "sft", stage_b="sft_more")


def test_img_plots_the_grpo_sides_curves_and_needs_a_grpo_side(tmp_path):
    run = fake_run(tmp_path / "run", right=set(range(5)))
    fake_run(run, right=set(range(15)), stage="grpo")
    png = tmp_path / "img" / "curves.png"
    text = quality_ab.main(["--a", str(run), "--b", str(run), "--stage", "sft", "--stage_b", "grpo",
                            "--resamples", "50", "--img", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Curves: {png}" in text
    with pytest.raises(quality_ab.ABError, match=r"--img=.*neither 'sft' nor 'sft' is a GRPO stage"):
        quality_ab.ab(quality_ab.ABFlags(a=str(run), b=str(run), stage="sft", img=str(tmp_path / "x.png")))
    assert not (tmp_path / "x.png").exists()


def test_b_more_is_set_beside_the_time_grpo_trained(tmp_path):
    run = fake_run(tmp_path / "run", right=set(range(5)), stage="sft_more")
    fake_run(run, right=set(range(15)), stage="grpo")
    grpo = json.loads((run / "grpo" / "stage.json").read_text())
    (run / "grpo" / "stage.json").write_text(json.dumps({**grpo, "timing": {"train_s": 5000.0}}))
    (run / "sft_more" / "budget.json").write_text(json.dumps(
        {"steps": 700, "budget_s": 5600.0, "budget_from": "--more_sft_s", "sft_s_per_step": 8.0, "calibration_steps": 30}))
    text = quality_ab.main(["--a", str(run), "--b", str(run), "--stage", "sft_more", "--stage_b", "grpo",
                            "--resamples", "50"])
    assert (f"`{run}`: (b+) trained SFT for a budget of 5600 s (given up front by --more_sft_s); (c)'s first run "
            "trained 5000 s: budget / (c) = 1.12.") in text
