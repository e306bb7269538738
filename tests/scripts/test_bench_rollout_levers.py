"""scripts/bench_rollout_levers.py: prompt-lookup acceptance counted right on a hand-made case, the
speculative gain's arithmetic, and the llama.cpp parts (pass cost, sampling and its log-prob check) on
the tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import bench_rollout_levers as levers  # noqa: E402


def test_acceptance_counts_drafts_and_accepted_tokens():
    # prompt "1 2 3 4 5", answer "1 2 3 9 <end>": after the answer's "1" the last token is found in the
    # prompt and "2 3 4" drafted (n=1, k=3); "2 3" match, "4" does not: one pass yields 3 tokens.
    prompt, target = [1, 2, 3, 4, 5, 1], [2, 3, 9, 0]
    row = next(r for r in levers.acceptance([prompt], [target]) if (r["n"], r["k"]) == (1, 3))
    # pass 1: draft [2, 3, 4] -> "2 3" accepted + "9" from the verify pass; pass 2: "9" never seen, no draft -> "0"
    assert row["tokens_per_pass"] == pytest.approx(4 / 2) and row["drafts_per_pass"] == pytest.approx(3 / 2)


def test_speculative_gain_is_tokens_over_relative_cost():
    cost = {1: 10.0, 2: 8.0, 4: 6.0, 8: 6.0}
    # a pass carrying 1 + 1 drafts = 2 tokens a row costs 2 x 8 = 16 ms a row, 1.6 one-token passes; it yields 1.6
    assert levers.speculative_gain({"tokens_per_pass": 1.6, "drafts_per_pass": 1.0}, cost) == pytest.approx(1.0)
    assert levers.speculative_gain({"tokens_per_pass": 3.0, "drafts_per_pass": 3.0}, cost) == pytest.approx(3 / 2.4)


def test_unknown_part_is_a_flag_error(capsys):
    with pytest.raises(SystemExit):
        levers.main(["--parts", "pass_cost,warp"])
    assert "--parts" in capsys.readouterr().err


@pytest.mark.slow
def test_llama_cpp_parts_on_the_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    monkeypatch.setattr(levers, "MAX_NEW", 12)
    bases = levers.Bases(Path(tiny_model_dir), tmp_path, levers.lora_model(Path(tiny_model_dir)))
    cost = levers.pass_cost(bases, "f32", threads=1, prompt_len=20, passes=2)
    assert sorted(cost) == [1, 2, 4, 8] and all(v > 0 for v in cost.values())
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [tok("Tim Cook is the CEO of Apple.")["input_ids"], tok("Paris is in France.")["input_ids"]] * 2
    got = levers.sampling(bases, "f32", 1, prompts, tok.eos_token_id)
    assert got["tokens"] > 0 and got["tokens_per_s"] > 0
    # an f32 base with the adapter samples the trainer's fp32 distribution (bf16 autocast differs more)
    assert got["logprob_vs_fp32"]["max"] < 1e-3 and got["logprob_vs_fp32"]["tokens"] > 0
    assert "pass cost" in levers.report({"cpu": "x", "threads": 1, "pass_cost": {"f32": cost}})
