"""The type-conditioning test sets: each condition's gold is what a type-following extractor must answer.

On the shipped examples (their own synonyms, since their types are not CoNLL04's) and on CoNLL04 test
(skipped where ../shared is absent); the files, the empty-answer rate and `t2g type-conditions`.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

from t2g.data.augment import restrict_graph, type_inventory
from t2g.data.canonical import DataError, Example
from t2g.data.load import load_examples
from t2g.eval.conditions import (CONDITIONS, CONLL04_SYNONYMS, DISTRACTOR_ENTITY_TYPES, DISTRACTOR_RELATION_TYPES,
                                 build_conditions, empty_answer_rate, write_conditions)
from t2g.task.schema import normalize

# The shipped examples' types beyond CoNLL04's table ("person", "organization", "location", "located in").
SHIPPED_SYNONYMS = {
    "entities": {"drug": "medication", "disease": "illness", "gene": "genetic locus", "method": "technique",
                 "dataset": "data collection", "metric": "measure", "task": "problem", "athlete": "sportsperson",
                 "team": "squad", "event": "occasion", "date": "point in time", "dish": "meal",
                 "ingredient": "component"},
    "relations": {"works for": "on the payroll of", "founded": "established", "lives in": "is a resident of",
                  "treats": "cures", "causes": "brings about", "associated with": "linked to",
                  "evaluated on": "benchmarked on", "used for": "applied to", "measured by": "quantified by",
                  "plays for": "is a member of", "won": "triumphed in", "held in": "hosted in", "born in": "native of",
                  "died in": "passed away in", "took place in": "happened in", "participated in": "competed in",
                  "made with": "prepared with", "originated in": "comes from"},
}


@lru_cache(maxsize=None)
def _load(source: str) -> tuple[Example, ...]:
    return tuple(load_examples(source))


@pytest.fixture(params=["examples", "conll04"])
def dataset(request) -> tuple[list[Example], dict | None, int]:
    """(examples, synonyms, n): n below every condition's eligible count, so a seed picks a sample."""
    if request.param == "examples":
        return list(_load("examples")), SHIPPED_SYNONYMS, 10
    return list(_load(str(request.getfixturevalue("conll04_dir") / "test.json"))), None, 100


def norm(types) -> set[str]:
    return {normalize(t) for t in types}


def gold_types(ex: Example) -> tuple[set[str], set[str]]:
    return norm(e.type for e in ex.graph.entities), norm(r.type for r in ex.graph.relations)


def rows(built: dict[str, list[Example]]) -> dict[str, list[dict]]:
    return {name: [ex.to_dict() for ex in exs] for name, exs in built.items()}


def test_same_seed_same_rows_other_seed_other_sample(dataset):
    examples, synonyms, n = dataset
    a = build_conditions(examples, n=n, seed=0, synonyms=synonyms)
    assert tuple(a) == CONDITIONS and all(len(a[name]) == n for name in CONDITIONS)
    assert rows(a) == rows(build_conditions(examples, n=n, seed=0, synonyms=synonyms))
    other = build_conditions(examples, n=n, seed=1, synonyms=synonyms)
    for name in CONDITIONS:
        assert [e.id for e in a[name]] != [e.id for e in other[name]], name


def test_fewer_eligible_than_n_gives_all_of_them(dataset):
    examples, synonyms, _ = dataset
    built = build_conditions(examples, n=10_000, seed=0, synonyms=synonyms)
    assert len(built["renamed"]) == len(built["distractor"]) == len(examples)
    assert len(built["subset"]) == sum(len(gold_types(ex)[0]) >= 2 for ex in examples) < len(examples)
    assert len(built["empty"]) == sum(not ex.graph.is_empty for ex in examples)


def test_every_gold_graph_is_valid_for_its_own_prompt(dataset):
    examples, synonyms, n = dataset
    by_id = {ex.id: ex for ex in examples}
    for name, exs in build_conditions(examples, n=n, seed=0, synonyms=synonyms).items():
        assert len({ex.id for ex in exs}) == len(exs)
        for ex in exs:
            orig_id, suffix = ex.id.rsplit("#", 1)
            assert suffix == name and ex.text == by_id[orig_id].text
            assert ex.violations() == [], (ex.id, ex.violations())


def test_renamed_asks_only_new_names_and_renames_the_gold_with_them(dataset):
    examples, synonyms, n = dataset
    by_id = {ex.id: ex for ex in examples}
    ents, rels = type_inventory(examples)
    own = norm(ents + rels)
    table = {normalize(k): v for kind in ("entities", "relations")
             for source in (CONLL04_SYNONYMS, synonyms or {}) for k, v in source.get(kind, {}).items()}
    assert not norm(table[normalize(t)] for t in ents + rels) & own  # no synonym is one of the dataset's types
    reordered = 0
    for ex in build_conditions(examples, n=n, seed=0, synonyms=synonyms)["renamed"]:
        orig = by_id[ex.id.split("#")[0]]
        assert not norm(ex.entity_types + ex.relation_types) & own
        assert sorted(ex.entity_types) == sorted(table[normalize(t)] for t in orig.entity_types)
        assert sorted(ex.relation_types) == sorted(table[normalize(t)] for t in orig.relation_types)
        assert len(ex.graph.entities) == len(orig.graph.entities) and len(ex.graph.relations) == len(orig.graph.relations)
        assert [(e.text, e.type) for e in ex.graph.entities] == [(e.text, table[normalize(e.type)]) for e in orig.graph.entities]
        assert [(r.head, r.tail, r.type) for r in ex.graph.relations] == \
            [(r.head, r.tail, table[normalize(r.type)]) for r in orig.graph.relations]
        reordered += ex.entity_types != [table[normalize(t)] for t in orig.entity_types]
    assert reordered  # the type order is shuffled too


def test_conll04_renamed_uses_the_table(conll04_dir):
    renamed = build_conditions(list(_load(str(conll04_dir / "test.json"))), n=5)["renamed"]
    assert {t for ex in renamed for t in ex.entity_types} == {"human being", "institution", "place", "miscellaneous"}
    assert {t for ex in renamed for t in ex.relation_types} == set(CONLL04_SYNONYMS["relations"].values())


def test_subset_leaves_out_occurring_types_and_their_gold(dataset):
    examples, synonyms, n = dataset
    by_id = {ex.id: ex for ex in examples}
    relations_left_out = 0
    for ex in build_conditions(examples, n=n, seed=0, synonyms=synonyms)["subset"]:
        orig = by_id[ex.id.split("#")[0]]
        gold_e, gold_r = gold_types(orig)
        left_out = gold_e - norm(ex.entity_types)
        assert left_out and gold_e & norm(ex.entity_types), ex.id  # some occurring types dropped, some kept
        assert not {normalize(e.type) for e in ex.graph.entities} & left_out
        assert ex.graph == restrict_graph(orig.graph, ex.entity_types, ex.relation_types)
        assert ex.graph.entities and norm(ex.entity_types) <= norm(orig.entity_types)
        relations_left_out += bool(gold_r - norm(ex.relation_types))
    assert relations_left_out


def test_distractor_adds_two_or_three_foreign_types_of_each_kind(dataset):
    examples, synonyms, n = dataset
    by_id = {ex.id: ex for ex in examples}
    ents, rels = type_inventory(examples)
    for ex in build_conditions(examples, n=n, seed=0, synonyms=synonyms)["distractor"]:
        orig = by_id[ex.id.split("#")[0]]
        assert ex.graph == orig.graph
        extra_e = norm(ex.entity_types) - norm(orig.entity_types)
        extra_r = norm(ex.relation_types) - norm(orig.relation_types)
        assert norm(orig.entity_types) <= norm(ex.entity_types) and norm(orig.relation_types) <= norm(ex.relation_types)
        assert 2 <= len(extra_e) <= 3 and 2 <= len(extra_r) <= 3, ex.id
        assert extra_e <= norm(DISTRACTOR_ENTITY_TYPES) and extra_r <= norm(DISTRACTOR_RELATION_TYPES)
        assert not (extra_e | extra_r) & norm(ents + rels)  # never one of the dataset's own types
        gold_e, gold_r = gold_types(ex)
        assert not extra_e & gold_e and not extra_r & gold_r


def test_empty_asks_only_absent_types(dataset):
    examples, synonyms, n = dataset
    by_id = {ex.id: ex for ex in examples}
    own_asked = 0
    for ex in build_conditions(examples, n=n, seed=0, synonyms=synonyms)["empty"]:
        orig = by_id[ex.id.split("#")[0]]
        gold_e, gold_r = gold_types(orig)
        assert ex.graph.is_empty and not orig.graph.is_empty
        assert len(ex.entity_types) >= 2 and len(ex.relation_types) >= 2
        assert not norm(ex.entity_types) & gold_e and not norm(ex.relation_types) & gold_r
        own_asked += bool(norm(ex.entity_types) & norm(orig.entity_types))
    assert own_asked  # the sentence's own unused types are asked, not only distractors


def test_shipped_without_synonyms_names_the_missing_types():
    with pytest.raises(DataError, match=r"no synonym for entity type 'drug'.*relation type 'works for'.*--synonyms"):
        build_conditions(list(_load("examples")))


def test_a_synonym_that_is_a_type_of_the_dataset_is_refused():
    clash = {**SHIPPED_SYNONYMS, "entities": {**SHIPPED_SYNONYMS["entities"], "drug": "Disease"}}
    with pytest.raises(DataError, match=r"types of the dataset itself: 'drug' -> 'Disease'"):
        build_conditions(list(_load("examples")), synonyms=clash)


@pytest.mark.parametrize("synonyms,fragment", [
    ({"entity": {}}, r"expected \{\"entities\""),
    ({"entities": {"drug": ""}}, r"'entities' maps 'drug' to ''"),
    ({"entities": ["drug"]}, r"'entities' must map type names"),
])
def test_synonyms_of_the_wrong_shape_are_clear_errors(synonyms, fragment):
    with pytest.raises(DataError, match=fragment):
        build_conditions(list(_load("examples")), synonyms=synonyms)


def test_empty_dataset_and_bad_n():
    with pytest.raises(DataError, match="no examples"):
        build_conditions([])
    with pytest.raises(ValueError, match="n=0"):
        build_conditions(list(_load("examples")), n=0, synonyms=SHIPPED_SYNONYMS)


def test_written_files_read_back_as_built(tmp_path):
    examples = list(_load("examples"))
    # n=32: more than the 30 sentences subset takes, fewer than the 36 the others can
    paths = write_conditions(tmp_path / "out", examples, n=32, seed=3, synonyms=SHIPPED_SYNONYMS)
    built = build_conditions(examples, n=32, seed=3, synonyms=SHIPPED_SYNONYMS)
    assert list(paths) == list(CONDITIONS)
    for name, path in paths.items():
        assert path == tmp_path / "out" / f"{name}.jsonl"
        assert [ex.to_dict() for ex in load_examples(path)] == [ex.to_dict() for ex in built[name]]
    manifest = json.loads((tmp_path / "out" / "conditions.json").read_text(encoding="utf-8"))
    assert (manifest["seed"], manifest["n"], manifest["source_examples"]) == (3, 32, len(examples))
    assert manifest["conditions"] == {name: {"count": len(built[name]), "file": f"{name}.jsonl"} for name in CONDITIONS}
    assert manifest["conditions"]["subset"]["count"] == 30 and manifest["conditions"]["renamed"]["count"] == 32
    assert manifest["synonyms"]["entities"]["person"] == "human being"  # CoNLL04's table, not overridden
    assert manifest["synonyms"]["entities"]["drug"] == "medication"
    assert len(manifest["synonyms"]["relations"]) == len(type_inventory(examples)[1])
    assert "gene" not in manifest["distractors"]["entities"] and "protein" in manifest["distractors"]["entities"]
    assert "treats" not in manifest["distractors"]["relations"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([f"{c}.jsonl" for c in CONDITIONS] + ["conditions.json"])


def test_empty_answer_rate(tmp_path):
    graph = {"entities": [{"text": "Tim Cook", "type": "person"}], "relations": []}
    preds = tmp_path / "predictions.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "graph": {"entities": [], "relations": []}},
        {"id": "b", "graph": graph},
        {"id": "c", "completion": "Nothing of those types here."},  # does not parse: not an empty answer
        {"id": "d", "completion": "<think>none</think>" + json.dumps({"entities": [], "relations": []})},
        {"id": "e", "completion": '{"entities": [], "relations": []'},  # truncated
    ]))
    assert empty_answer_rate(preds) == pytest.approx(2 / 5)
    (tmp_path / "none.jsonl").write_text("")
    with pytest.raises(DataError, match="no prediction rows"):
        empty_answer_rate(tmp_path / "none.jsonl")


# --- `t2g type-conditions` -------------------------------------------------------------------------

def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from t2g.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_conditions(conll04_dir, tmp_path, capsys):
    out = tmp_path / "tc"
    code, stdout, err = run_cli(["type-conditions", "--data", str(conll04_dir / "test.json"), "--out", str(out),
                                 "--n", "20", "--seed", "1"], capsys)
    assert code == 0, err
    assert [line.split("\t") for line in stdout.splitlines()] == [[c, "20", str(out / f"{c}.jsonl")] for c in CONDITIONS]
    built = build_conditions(list(_load(str(conll04_dir / "test.json"))), n=20, seed=1)
    for name in CONDITIONS:
        assert [ex.to_dict() for ex in load_examples(out / f"{name}.jsonl")] == [ex.to_dict() for ex in built[name]]
    assert json.loads((out / "conditions.json").read_text())["source_examples"] == 288


def test_cli_with_a_synonyms_file(tmp_path, capsys):
    (tmp_path / "syn.json").write_text(json.dumps(SHIPPED_SYNONYMS))
    code, stdout, err = run_cli(["type-conditions", "--data", "examples", "--out", str(tmp_path / "tc"),
                                 "--n", "5", "--synonyms", str(tmp_path / "syn.json")], capsys)
    assert code == 0 and len(stdout.splitlines()) == 4, err
    assert load_examples(tmp_path / "tc" / "renamed.jsonl")[0].id.endswith("#renamed")


@pytest.mark.parametrize("extra,files,fragment", [
    (["--n", "0"], {}, "--n=0: give a positive number"),
    (["--n", "many"], {}, "--n: expected a whole number"),
    (["--synonyms", "{d}/nope.json"], {}, "--synonyms={d}/nope.json: no such file"),
    (["--synonyms", "{d}/syn.json"], {"syn.json": "{oops"}, "--synonyms={d}/syn.json: not a JSON file"),
    (["--synonyms", "{d}/syn.json"], {"syn.json": '{"types": {}}'}, "--synonyms={d}/syn.json: expected {\"entities\""),
    ([], {}, "no synonym for entity type 'drug'"),  # the shipped types need --synonyms
    (["--nn", "3"], {}, "unknown flag --nn"),
])
def test_cli_bad_flags_are_one_line(extra, files, fragment, tmp_path, capsys):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = ["type-conditions", "--data", "examples", "--out", str(tmp_path / "tc")] + [a.replace("{d}", str(tmp_path)) for a in extra]
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("t2g: error: ") and err.count("\n") == 1 and out == "", err
    assert fragment.replace("{d}", str(tmp_path)) in err, err
    assert not (tmp_path / "tc").exists()  # nothing written


def test_cli_needs_data_and_out(tmp_path, capsys):
    code, _, err = run_cli(["type-conditions", "--out", str(tmp_path / "tc")], capsys)
    assert code == 2 and "missing --data" in err
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = run_cli(["type-conditions", "--data", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path)], capsys)
    assert code == 2 and "empty" in err
