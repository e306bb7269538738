"""Canonical data, converters (SpERT, open-r1-text2graph), augmentation, atomic writes, shipped examples.

The error table for bad inputs runs through the CLI in test_cli.py; here: the library behaviour.
"""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from t2g.data.augment import AugmentConfig, augment, restrict_graph, type_inventory
from t2g.data.convert import LABEL_MAPS, from_spert, from_text2graph_rows, label_map_inverse, sniff_format
from t2g.data.canonical import DataError, Example, read_jsonl, write_jsonl
from t2g.data.load import example_dataset_path, load_examples
from t2g.files import atomic_open, write_json_atomic, write_jsonl_atomic
from t2g.task.schema import Graph, normalize, validate_graph

CONLL04 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "conll04"
needs_conll04 = pytest.mark.skipif(
    not (CONLL04 / "test.json").is_file(), reason=f"CoNLL04 not found at {CONLL04} (the ../shared checkout is absent)"
)


def row(i="a", **over) -> dict:
    base = {
        "id": i,
        "text": "Tim Cook runs Apple.",
        "entity_types": ["person", "organization"],
        "relation_types": ["works for"],
        "graph": {
            "entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
            "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}],
        },
    }
    base.update(over)
    return base


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


SPERT = [
    {"tokens": ["Tim", "Cook", "works", "for", "Apple", "."], "orig_id": 7,
     "entities": [{"type": "Peop", "start": 0, "end": 2}, {"type": "Org", "start": 4, "end": 5}],
     "relations": [{"type": "Work_For", "head": 0, "tail": 1}]},
    {"tokens": ["Nothing", "here", "."], "entities": [], "relations": []},
]


# --- canonical JSONL --------------------------------------------------------------------------

def test_canonical_round_trip(tmp_path):
    rows = [row("a"), row(2, reasoning="Tim Cook is a person.", type_descriptions={"person": "a human"})]
    examples = read_jsonl(write_rows(tmp_path / "in.jsonl", rows))
    assert [e.id for e in examples] == ["a", "2"]  # integer ids become strings
    assert examples[1].reasoning == "Tim Cook is a person." and examples[1].type_descriptions == {"person": "a human"}
    assert write_jsonl(tmp_path / "out.jsonl", examples) == 2
    again = read_jsonl(tmp_path / "out.jsonl")
    assert [e.to_dict() for e in again] == [e.to_dict() for e in examples]
    assert again[0].to_dict() == row("a")


def test_blank_lines_and_byte_order_mark_are_tolerated(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(row("a")).encode() + b"\n\n  \n" + json.dumps(row("b")).encode() + b"\n")
    assert [e.id for e in read_jsonl(path)] == ["a", "b"]
    assert sniff_format(path) == "canonical"


def test_sniff_reads_a_long_first_line(tmp_path):
    path = write_rows(tmp_path / "long.jsonl", [row("a", text="Tim Cook runs Apple. " + "x" * 10_000)])
    assert sniff_format(path) == "canonical"
    assert len(load_examples(path)) == 1


def test_example_violations_flag_a_bad_gold_graph(tmp_path):
    bad = row("a", graph={"entities": [{"text": "Steve", "type": "person"}], "relations": []})
    (ex,) = read_jsonl(write_rows(tmp_path / "x.jsonl", [bad]))
    assert [v.kind for v in ex.violations()] == ["span_not_in_text"]


# --- SpERT ------------------------------------------------------------------------------------

def test_spert_conversion(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SPERT))
    assert sniff_format(path) == "spert"
    a, b = load_examples(path)
    assert a.id == "tiny-0-7" and b.id == "tiny-1-1"
    assert a.text == "Tim Cook works for Apple ."
    assert a.graph.to_dict() == {
        "entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
        "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "work for"}],
    }
    # the type lists are the dataset's full inventory (the same for every row), readable names
    assert a.entity_types == b.entity_types == ["person", "location", "organization", "other"]
    assert a.relation_types == list(LABEL_MAPS["conll04"]["relations"].values())
    assert b.graph.is_empty


def test_spert_label_map_none_keeps_labels_in_a_stable_order(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps([{"tokens": ["a", "b", "c"], "entities": [
        {"type": t, "start": i, "end": i + 1} for i, t in enumerate(["Zeta", "Alpha", "Mid"])],
        "relations": [{"type": "R2", "head": 0, "tail": 1}, {"type": "R1", "head": 1, "tail": 2}]}]))
    (ex,) = from_spert(path, label_map="none")
    assert ex.entity_types == ["Alpha", "Mid", "Zeta"] and ex.relation_types == ["R1", "R2"]


def test_spert_label_map_from_a_file(tmp_path):
    path = tmp_path / "odd.json"
    path.write_text(json.dumps([{"tokens": ["a", "b"], "entities": [{"type": "X", "start": 0, "end": 1}], "relations": []}]))
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"entities": {"X": "thing"}, "relations": {}}))
    (ex,) = from_spert(path, label_map=str(mapping))
    assert ex.entity_types == ["thing"] and ex.graph.entities[0].type == "thing"


def test_label_map_inverse():
    inv = label_map_inverse("conll04")
    assert inv["entities"]["person"] == "Peop" and inv["relations"]["organization based in"] == "OrgBased_In"
    for name in LABEL_MAPS:
        for kind in ("entities", "relations"):
            assert len(set(LABEL_MAPS[name][kind].values())) == len(LABEL_MAPS[name][kind])  # invertible


@needs_conll04
def test_conll04_test_counts_and_grounding():
    examples = load_examples(CONLL04 / "test.json")
    assert len(examples) == 288
    # The file lists 1,079 entity and 422 relation mentions; a graph is a set, so the repeats collapse.
    raw = json.loads((CONLL04 / "test.json").read_text())
    assert (sum(len(r["entities"]) for r in raw), sum(len(r["relations"]) for r in raw)) == (1079, 422)
    assert sum(len(e.graph.entities) for e in examples) == 1059
    assert sum(len(e.graph.relations) for e in examples) == 407
    for e in examples:  # all spans in their texts, all types given, no dangling relation, no repeat
        assert e.violations() == [], e.id
    assert len({e.id for e in examples}) == 288
    # augmented CoNLL04 stays valid too, with some targets emptied
    augmented = augment(examples, AugmentConfig(copies=2, keep_original=False), seed=3)
    for e in augmented:
        assert e.violations() == [], e.id
    assert sum(e.graph.is_empty for e in augmented) > sum(e.graph.is_empty for e in examples) * 2


# --- open-r1-text2graph -----------------------------------------------------------------------

def test_text2graph_rows(capsys):
    rows = [
        {"prompt": "Marie Curie worked in Paris.", "solution": json.dumps({
            "entities": [{"id": 0, "text": "Marie Curie", "type": "Person"}, {"id": 1, "text": "Paris", "type": "City"}],
            "relations": [{"head": 0, "tail": 1, "type": "Works In"}]})},
        {"prompt": "Plain text.", "solution": {"entities": [], "relations": []}},
        {"prompt": "Bad JSON.", "solution": "{not json"},
        {"prompt": "Ungrounded.", "solution": {"entities": [{"text": "Mars", "type": "planet"}], "relations": []}},
        {"prompt": "Odd ids.", "solution": {"entities": [{"id": [1], "text": "Odd", "type": "x"}], "relations": [{"head": [1], "tail": {}, "type": "r"}]}},
    ]
    examples = from_text2graph_rows(rows, "mem")
    assert [e.id for e in examples] == ["0", "1"]
    marie = examples[0]
    assert marie.entity_types == ["city", "person"] and marie.relation_types == ["works in"]
    assert marie.graph.relations[0].head == "Marie Curie" and marie.graph.relations[0].tail == "Paris"
    assert marie.violations() == []
    assert "kept 2 of 5 rows" in capsys.readouterr().err


def test_text2graph_jsonl_with_unicode_line_separators(tmp_path):
    text = "Marie Curie\u2028worked in Paris.\u0085"
    solution = {"entities": [{"text": "Paris", "type": "city"}], "relations": []}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": text, "solution": solution}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    (ex,) = load_examples(path)
    assert ex.text == text and ex.graph.entities[0].text == "Paris"


# --- HF hub (the hub itself replaced by an in-memory dataset: tests never reach the network) -----

@pytest.fixture
def fake_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    tables: dict[str, list[dict]] = {}

    def load_dataset(name, split="train"):
        if name not in tables:
            raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub")
        return datasets.Dataset.from_list(tables[name])

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return tables


def test_from_hub(fake_hub):
    fake_hub["me/canonical"] = [row("a", type_descriptions={"person": "a human"}), row("b", type_descriptions={"organization": "a company"})]
    fake_hub["me/t2g"] = [{"prompt": "Tim Cook runs Apple.", "solution": json.dumps(row()["graph"])}]
    fake_hub["me/other"] = [{"sentence": "x"}]
    fake_hub["me/dups"] = [row("a"), row("a")]
    a, b = load_examples("me/canonical")
    assert a.to_dict() == row("a", type_descriptions={"person": "a human"})  # Arrow's None-filled keys dropped
    assert b.type_descriptions == {"organization": "a company"}
    (t,) = load_examples("me/t2g")
    assert t.graph == Graph.from_dict(row()["graph"])
    with pytest.raises(DataError, match="neither canonical nor text2graph; pass --format"):
        load_examples("me/other")
    with pytest.raises(DataError, match="share the id 'a'"):
        load_examples("me/dups")
    with pytest.raises(DataError, match="could not load split 'train'.*local file"):
        load_examples("me/missing")


@pytest.mark.parametrize("source", ["data/x", "data/x.jsonl", "x.json", "./x", "../x", "~/x", "a b"])
def test_missing_local_paths_are_not_sent_to_the_hub(source, fake_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match="no such file"):
        load_examples(source)


# --- augmentation -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> list[Example]:
    return read_jsonl(example_dataset_path())


def test_augment_is_deterministic(shipped):
    cfg = AugmentConfig(copies=2)
    a = [e.to_dict() for e in augment(shipped, cfg, seed=1)]
    b = [e.to_dict() for e in augment(shipped, cfg, seed=1)]
    c = [e.to_dict() for e in augment(shipped, cfg, seed=2)]
    assert a == b and a != c
    assert len(a) == 3 * len(shipped) and len({r["id"] for r in a}) == len(a)


def test_augment_properties(shipped):
    cfg = AugmentConfig(copies=4, drop_type_prob=0.3, empty_target_prob=0.2, keep_original=False)
    out = augment(shipped, cfg, seed=0)
    by_id = {e.id: e for e in shipped}
    dropped = empties = negatives = 0
    for aug in out:
        orig = by_id[aug.id.split("#")[0]]
        gold_e = {normalize(e.type) for e in orig.graph.entities}
        gold_r = {normalize(r.type) for r in orig.graph.relations}
        # every augmented example is a valid task: its gold uses only its own types and spans of its text
        assert aug.violations() == [], (aug.id, aug.violations())
        # negative types: offered types the original neither offered nor used are absent from its gold graph
        new_e = {normalize(t) for t in aug.entity_types} - {normalize(t) for t in orig.entity_types}
        assert not new_e & gold_e
        negatives += bool(new_e)
        # dropped types: gone from the target, with every relation that touched their entities
        kept_e = {normalize(t) for t in aug.entity_types}
        kept_r = {normalize(t) for t in aug.relation_types}
        assert aug.graph == restrict_graph(orig.graph, aug.entity_types, aug.relation_types)
        assert all(normalize(e.type) in kept_e for e in aug.graph.entities)
        assert all(normalize(r.type) in kept_r for r in aug.graph.relations)
        dropped += bool(gold_e - kept_e or gold_r - kept_r)
        empties += aug.graph.is_empty and not orig.graph.is_empty
        assert aug.reasoning is None or aug.graph == orig.graph
    assert dropped and empties and negatives, (dropped, empties, negatives)


def test_keep_all_copies_keep_the_whole_graph_and_offer_foreign_types(shipped):
    foreign_r = ("orbits", "proves", "implements")
    base = AugmentConfig(copies=4, drop_type_prob=0.5, empty_target_prob=0.5, keep_original=False,
                         foreign_relation_types=foreign_r)
    by_id = {e.id: e for e in shipped}
    kept = augment(shipped, replace(base, keep_all_prob=1.0), seed=0)
    for aug in kept:
        orig = by_id[aug.id.split("#")[0]]
        assert aug.graph == orig.graph, aug.id  # no type dropped, never emptied
        offered_e = {normalize(t) for t in aug.entity_types}
        offered_r = {normalize(t) for t in aug.relation_types}
        assert {normalize(t) for t in orig.entity_types} < offered_e  # at least one negative of each kind
        assert {normalize(t) for t in orig.relation_types} < offered_r
        assert not (offered_r - {normalize(t) for t in orig.relation_types}) & {normalize(r.type) for r in orig.graph.relations}
    assert any(set(map(normalize, a.relation_types)) & set(foreign_r) for a in kept)
    # at 0 no extra draw is made: the copies are exactly the ones made without the option
    assert augment(shipped, replace(base, keep_all_prob=0.0), seed=0) == augment(shipped, base, seed=0)
    half = augment(shipped, replace(base, keep_all_prob=0.5), seed=0)
    whole = sum(a.graph == by_id[a.id.split("#")[0]].graph for a in half)
    assert 0.3 * len(half) < whole < len(half)


def test_restrict_graph_removes_relations_of_removed_entities():
    g = Graph.from_dict(row()["graph"])
    cut = restrict_graph(g, ["person"], ["works for"])
    assert [e.text for e in cut.entities] == ["Tim Cook"] and cut.relations == ()
    assert restrict_graph(g, ["Person", "ORGANIZATION"], ["Works For"]) == g


def test_type_inventory_first_seen_order(shipped):
    ents, rels = type_inventory(shipped)
    assert ents[:3] == ["person", "organization", "location"] and len(set(ents)) == len(ents)
    assert "works for" in rels


# --- atomic writes ----------------------------------------------------------------------------

def test_atomic_open_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write("half of the new con")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]  # no temporary file left behind


def test_atomic_writes_replace_and_create(tmp_path):
    target = tmp_path / "sub" / "dir" / "x.json"
    write_json_atomic(target, {"a": "é"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "é"}
    assert write_jsonl_atomic(target, [{"n": 1}, {"n": 2}]) == 2
    assert target.read_text().splitlines() == ['{"n": 1}', '{"n": 2}']
    assert os.listdir(target.parent) == ["x.json"]


def test_atomic_write_gives_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_jsonl_atomic(tmp_path / "new.jsonl", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o644  # not mkstemp's 0600
    kept = tmp_path / "kept.txt"
    kept.write_text("x")
    kept.chmod(0o640)
    write_jsonl_atomic(kept, [])
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640


# --- the shipped example dataset --------------------------------------------------------------

def test_shipped_examples(shipped):
    assert len(shipped) >= 30
    domains = Counter(e.id.split("-")[0] for e in shipped)
    assert len(domains) >= 5, domains
    assert sum(e.graph.is_empty for e in shipped) >= 3
    assert sum(len(e.graph.relations) for e in shipped) >= 30
    for e in shipped:
        assert validate_graph(e.graph, e.text, e.entity_types, e.relation_types) == [], e.id
    assert load_examples("examples")[0].to_dict() == shipped[0].to_dict()


# --- library-level errors (the CLI table in test_cli.py covers the messages) ------------------

def test_load_examples_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_examples(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown format"):
        load_examples("examples", format="xml")
    path = write_rows(tmp_path / "r.jsonl", [row("a", reasoning="a </think> b")])
    with pytest.raises(DataError, match=r"r\.jsonl:1: field 'reasoning' must not contain"):
        read_jsonl(path)


def test_rename_types_renames_lists_and_graph_together():
    from t2g.data.augment import rename_types

    ex = Example.from_dict(row("a", type_descriptions={"Person": "a human"}, reasoning="Tim Cook is a person."))
    out = rename_types(ex, {"PERSON": "human being", "organization": "institution"}, {"Works For": "employed by"},
                       id_suffix="#renamed")
    assert (out.id, out.entity_types, out.relation_types) == ("a#renamed", ["human being", "institution"], ["employed by"])
    assert out.graph == Graph.from_dict({
        "entities": [{"text": "Tim Cook", "type": "human being"}, {"text": "Apple", "type": "institution"}],
        "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "employed by"}]})
    # the description follows its type; the trace names the old types, so it goes
    assert out.type_descriptions == {"human being": "a human"} and out.reasoning is None and out.violations() == []
    assert ex.entity_types == ["person", "organization"] and ex.graph.entities[0].type == "person"  # original untouched
    with pytest.raises(DataError, match="no new name for entity type 'organization'; add it to the entity map"):
        rename_types(ex, {"person": "human being"}, {"works for": "employed by"})
    with pytest.raises(DataError, match="both renamed to 'Agent', which would merge"):
        rename_types(ex, {"person": "agent", "organization": "Agent"}, {"works for": "employed by"})


# --- renamed types in the training copies (t2g.data.synonyms) --------------------------------------

@needs_conll04
def test_augmented_copies_rename_types_with_training_synonyms():
    from t2g.data.synonyms import TRAINING_SYNONYMS
    from t2g.eval.conditions import CONLL04_SYNONYMS

    examples = load_examples(CONLL04 / "dev.json")[:200]
    plain = augment(examples, AugmentConfig(copies=1, keep_original=False), seed=5)
    cfg = AugmentConfig(copies=1, keep_original=False, synonyms=TRAINING_SYNONYMS, rename_prob=0.5)
    renamed = augment(examples, cfg, seed=5)
    assert renamed == augment(examples, cfg, seed=5)  # deterministic
    original_names = {normalize(t) for t in TRAINING_SYNONYMS}
    n_renamed = 0
    for before, after in zip(plain, renamed):
        assert after.violations() == [], after.id
        if after == before:  # a copy left alone is exactly the copy without renaming
            continue
        n_renamed += 1
        assert not {normalize(t) for t in after.entity_types + after.relation_types} & original_names, after.id
        # the same graph under new names: sizes kept, every type one of its synonyms
        assert (len(after.graph.entities), len(after.graph.relations)) == (len(before.graph.entities), len(before.graph.relations))
        for b, a in zip(before.graph.entities, after.graph.entities):
            assert a.text == b.text and a.type in TRAINING_SYNONYMS[normalize(b.type)]
    assert 70 <= n_renamed <= 130  # about half of 200
    # the held-out test names (t2g.eval.conditions) are never training names
    test_names = {normalize(n) for kind in CONLL04_SYNONYMS.values() for n in kind.values()}
    train_names = {normalize(n) for names in TRAINING_SYNONYMS.values() for n in names}
    assert not test_names & train_names and not test_names & original_names


@needs_conll04
def test_foreign_types_are_offered_and_never_answered():
    """--augment_distractors: other domains' types join CoNLL04's as negatives and empty-target types;
    the targets never use them."""
    from t2g.data.synonyms import TRAINING_DISTRACTORS

    examples = load_examples(CONLL04 / "dev.json")[:200]
    cfg = AugmentConfig(copies=1, keep_original=False, empty_target_prob=0.25,
                        foreign_entity_types=TRAINING_DISTRACTORS["entities"],
                        foreign_relation_types=TRAINING_DISTRACTORS["relations"])
    out = augment(examples, cfg, seed=3)
    assert out == augment(examples, cfg, seed=3)
    foreign = {normalize(t) for kind in TRAINING_DISTRACTORS.values() for t in kind}
    offered = empties_with_foreign = 0
    for orig, aug in zip(examples, out):
        assert aug.violations() == [], aug.id
        used = {normalize(e.type) for e in aug.graph.entities} | {normalize(r.type) for r in aug.graph.relations}
        assert not used & foreign, aug.id
        asked = {normalize(t) for t in aug.entity_types + aug.relation_types}
        offered += bool(asked & foreign)
        gold_e = {normalize(e.type) for e in orig.graph.entities}
        if gold_e and not {normalize(t) for t in aug.entity_types} & gold_e:  # an empty target by its types
            assert aug.graph.is_empty, aug.id
            empties_with_foreign += bool(asked & foreign)
    assert offered > 100 and empties_with_foreign > 20, (offered, empties_with_foreign)


def test_wide_training_synonyms_are_new_names_of_their_type_only():
    """--augment_synonyms=wide: the builtin names and more, none a test name or a near copy of one
    (a test name inside it, as "human" is inside "human being"), none another type's name."""
    from t2g.data.synonyms import TRAINING_DISTRACTORS, TRAINING_SYNONYMS, TRAINING_SYNONYMS_WIDE, load_synonyms
    from t2g.eval.conditions import CONLL04_SYNONYMS, DISTRACTOR_ENTITY_TYPES, DISTRACTOR_RELATION_TYPES

    assert load_synonyms("wide") == TRAINING_SYNONYMS_WIDE and set(TRAINING_SYNONYMS_WIDE) == set(TRAINING_SYNONYMS)
    # near copies within a kind: the entity test name "place" may sit inside the relation name "is a place in"
    test_names = {kind: {normalize(n) for n in table.values()} for kind, table in CONLL04_SYNONYMS.items()}
    foreign = {normalize(t) for kind in TRAINING_DISTRACTORS.values() for t in kind}
    foreign |= {normalize(t) for t in DISTRACTOR_ENTITY_TYPES + DISTRACTOR_RELATION_TYPES}
    seen: dict[str, str] = {}
    for key, names in TRAINING_SYNONYMS_WIDE.items():
        assert names[:len(TRAINING_SYNONYMS[key])] == TRAINING_SYNONYMS[key] and len(names) == 12, key
        kind = "entities" if key in CONLL04_SYNONYMS["entities"] else "relations"
        for name in map(normalize, names):
            assert seen.setdefault(name, key) == key, (name, key, seen[name])  # one type per name
            assert name not in set(TRAINING_SYNONYMS) - {key} and name not in foreign, name
            near = [t for t in test_names[kind] if t in name or name in t.split()]
            assert not near, (name, near)


def test_training_distractors_are_not_test_or_training_names():
    """The type-conditioning test's distractors and renamed types stay unseen by a model trained with
    --augment_distractors=builtin, and no foreign type is a name CoNLL04 or the synonyms use."""
    from t2g.data.synonyms import TRAINING_DISTRACTORS, TRAINING_SYNONYMS
    from t2g.eval.conditions import CONLL04_SYNONYMS, DISTRACTOR_ENTITY_TYPES, DISTRACTOR_RELATION_TYPES

    foreign = {normalize(t) for kind in TRAINING_DISTRACTORS.values() for t in kind}
    assert len(foreign) == sum(len(kind) for kind in TRAINING_DISTRACTORS.values())
    others = {normalize(t) for t in DISTRACTOR_ENTITY_TYPES + DISTRACTOR_RELATION_TYPES}
    others |= {normalize(n) for kind in CONLL04_SYNONYMS.values() for pair in kind.items() for n in pair}
    others |= {normalize(n) for key, names in TRAINING_SYNONYMS.items() for n in (key, *names)}
    assert not foreign & others, foreign & others


def test_load_distractors(tmp_path):
    from t2g.data.synonyms import TRAINING_DISTRACTORS, load_distractors

    assert load_distractors("none") == ((), ())
    assert load_distractors("builtin") == (TRAINING_DISTRACTORS["entities"], TRAINING_DISTRACTORS["relations"])
    good = tmp_path / "foreign.json"
    good.write_text(json.dumps({"entities": ["galaxy"]}))
    assert load_distractors(str(good)) == (("galaxy",), ())
    for content, message in (("{not json", "not a JSON file"), ('["a"]', "expected an object"),
                             ('{"entity": ["a"]}', "expected an object"), ('{"relations": [""]}', "list of non-empty")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(DataError, match=message):
            load_distractors(str(bad))
    with pytest.raises(DataError, match="--augment_distractors=.*missing.json: no such file"):
        load_distractors(str(tmp_path / "missing.json"))


def test_load_synonyms(tmp_path):
    from t2g.data.synonyms import TRAINING_SYNONYMS, load_synonyms

    assert load_synonyms("none") == {} and load_synonyms("builtin") == TRAINING_SYNONYMS
    good = tmp_path / "syn.json"
    good.write_text(json.dumps({"Gene": ["gene name", "locus"]}))
    assert load_synonyms(str(good)) == {"gene": ("gene name", "locus")}
    for content, message in (("{not json", "not a JSON file"), ('["a"]', "expected an object"),
                             ('{"gene": []}', "non-empty list")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(DataError, match=message):
            load_synonyms(str(bad))
    with pytest.raises(DataError, match="no such file; give none, builtin, wide, or a JSON file"):
        load_synonyms(str(tmp_path / "missing.json"))


def test_answer_mix_counts_relations_entities_only_and_empty(shipped):
    from t2g.data.augment import answer_mix

    def with_graph(ex, entities, relations):
        return replace(ex, graph=Graph(tuple(ex.graph.entities[:entities]), tuple(ex.graph.relations[:relations])))

    ex = next(e for e in shipped if e.graph.relations)
    rows = [with_graph(ex, 9, 9), with_graph(ex, 9, 9), with_graph(ex, 9, 0), with_graph(ex, 0, 0)]
    assert answer_mix(rows) == {"relations": 2, "entities_only": 1, "empty": 1}
    assert answer_mix([]) == {"relations": 0, "entities_only": 0, "empty": 0}


def test_foreign_relation_mix_splits_by_offered_type_and_relation_free_answer(shipped):
    from t2g.data.augment import foreign_relation_mix

    ex = next(e for e in shipped if e.graph.relations)
    bare = replace(ex, graph=Graph(ex.graph.entities, ()))
    offering = replace(ex, relation_types=(*ex.relation_types, "Orbits"))  # listed in another case: still foreign
    offering_bare = replace(bare, relation_types=offering.relation_types)
    rows = [ex, bare, bare, offering, offering_bare, offering_bare, offering_bare]
    assert foreign_relation_mix(rows, ["orbits", "proves"]) == {"offered": (4, 3), "not_offered": (3, 2)}
    assert foreign_relation_mix(rows, []) == {"offered": (0, 0), "not_offered": (7, 5)}
