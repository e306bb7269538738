"""`t2g compare`: the paired bootstrap agrees with the scorer and says "no difference" when there is none."""

from __future__ import annotations

import json

import pytest

from t2g.cli import main
from t2g.eval.compare import paired_bootstrap
from t2g.data.canonical import DataError, Example
from t2g.eval.predictions import read_predictions, score_predictions
from t2g.task.schema import Graph

TYPES = (["person", "organization"], ["works for"])


def graph(person: str, org: str, rel: bool = True) -> dict:
    return {"entities": [{"text": person, "type": "person"}, {"text": org, "type": "organization"}],
            "relations": [{"head": person, "tail": org, "type": "works for"}] if rel else []}


def gold_examples(n: int) -> list[Example]:
    names = [(f"Person{i}", f"Org{i}") for i in range(n)]
    return [Example(f"s{i}", f"{p} works for {o}.", *TYPES, Graph.from_dict(graph(p, o))) for i, (p, o) in enumerate(names)]


def preds_from(rows: list[dict], tmp_path, name: str) -> dict[str, dict]:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_predictions(path)


def test_point_estimates_are_the_scorers_and_identical_systems_differ_by_nothing(tmp_path):
    gold = gold_examples(12)
    # A finds the entities everywhere, the relation in every other sentence
    a = preds_from([{"id": ex.id, "graph": graph(f"Person{i}", f"Org{i}", rel=i % 2 == 0)} for i, ex in enumerate(gold)],
                   tmp_path, "a.jsonl")
    result = paired_bootstrap(gold, a, a, resamples=200, seed=1)
    scored = score_predictions(gold, a)
    for metric, key in (("entity", "entity"), ("relation", "relation"), ("relation_lenient", "relation_boundaries")):
        assert result[metric]["a"] == pytest.approx(scored[key]["f1"]) == pytest.approx(result[metric]["b"])
        assert result[metric]["delta"] == result[metric]["low"] == result[metric]["high"] == 0.0
        assert result[metric]["p_b_not_better"] == 1.0
    assert result["relation"]["a"] == pytest.approx(2 * 6 / (6 + 12))


def test_better_everywhere_is_significant_and_mixed_is_not(tmp_path):
    gold = gold_examples(30)
    empty = preds_from([{"id": ex.id, "graph": {"entities": [], "relations": []}} for ex in gold], tmp_path, "e.jsonl")
    perfect = preds_from([{"id": ex.id, "graph": ex.graph.to_dict()} for ex in gold], tmp_path, "p.jsonl")
    better = paired_bootstrap(gold, empty, perfect, resamples=300, seed=0)["relation"]
    assert better["delta"] == 1.0 and better["low"] == 1.0 and better["p_b_not_better"] == 0.0
    # B right where A is wrong and wrong where A is right, half and half: no winner
    half_a = preds_from([{"id": ex.id, "graph": ex.graph.to_dict() if i < 15 else {"entities": [], "relations": []}}
                         for i, ex in enumerate(gold)], tmp_path, "ha.jsonl")
    half_b = preds_from([{"id": ex.id, "graph": ex.graph.to_dict() if i >= 15 else {"entities": [], "relations": []}}
                         for i, ex in enumerate(gold)], tmp_path, "hb.jsonl")
    mixed = paired_bootstrap(gold, half_a, half_b, resamples=300, seed=0)["relation"]
    assert mixed["delta"] == 0.0 and mixed["low"] < 0 < mixed["high"] and 0.2 < mixed["p_b_not_better"] < 0.8
    # B equal to A except one sentence it gets right: no resample can make B worse (pairing)
    one_more = dict(half_a, **{gold[20].id: perfect[gold[20].id]})
    paired = paired_bootstrap(gold, half_a, one_more, resamples=300, seed=0)["relation"]
    assert paired["delta"] > 0 and paired["low"] >= 0
    # seeded: the same seed, the same interval
    assert paired_bootstrap(gold, half_a, half_b, resamples=300, seed=0)["relation"] == mixed


def test_missing_predictions_count_as_empty_and_foreign_ids_fail(tmp_path):
    gold = gold_examples(4)
    some = preds_from([{"id": "s0", "graph": gold[0].graph.to_dict()}], tmp_path, "some.jsonl")
    result = paired_bootstrap(gold, some, some, resamples=10)
    assert result["relation"]["a"] == pytest.approx(score_predictions(gold, some)["relation"]["f1"])
    foreign = preds_from([{"id": "other-7", "graph": gold[0].graph.to_dict()}], tmp_path, "foreign.jsonl")
    with pytest.raises(DataError, match="B: 1 prediction ids are not in the gold data"):
        paired_bootstrap(gold, some, foreign, resamples=10)


def test_compare_command_prints_json_and_refuses_bad_flags(tmp_path, capsys):
    gold = gold_examples(6)
    gold_path = tmp_path / "gold.jsonl"
    gold_path.write_text("".join(json.dumps(ex.to_dict()) + "\n" for ex in gold))
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("".join(json.dumps({"id": ex.id, "completion": "not json"}) + "\n" for ex in gold))
    b.write_text("".join(json.dumps({"id": ex.id, "completion": json.dumps(ex.graph.to_dict())}) + "\n" for ex in gold))
    main(["compare", "--gold", str(gold_path), "--pred_a", str(a), "--pred_b", str(b), "--resamples", "50"])
    out = json.loads(capsys.readouterr().out)
    assert out["n_examples"] == 6 and out["relation"]["delta"] == 1.0 and out["b"] == str(b)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--gold", str(gold_path), "--pred_a", str(a), "--pred_b", str(b), "--resamples", "0"])
    assert exit_info.value.code == 2 and "--resamples=0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--gold", str(gold_path), "--pred_a", str(a), "--pred_b", str(tmp_path / "missing.jsonl")])
    assert "missing.jsonl: no such prediction file" in capsys.readouterr().err
