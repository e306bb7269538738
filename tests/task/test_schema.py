"""Graphs: reading from JSON (errors name the field), canonical rendering, validation against a task."""

from __future__ import annotations

import json

import pytest

from t2g.task.schema import DANGLING_HEAD, DANGLING_TAIL, DUPLICATE_ENTITY, DUPLICATE_RELATION, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE, Entity, Graph, Relation, SchemaError, TaskContext, normalize, validate_graph

TEXT = "Tim Cook is the chief executive of Apple, which is based in Cupertino."
ETYPES = ["person", "organization", "location"]
RTYPES = ["works for", "located in"]


def graph(entities=(), relations=()) -> Graph:
    return Graph(tuple(Entity(*e) for e in entities), tuple(Relation(*r) for r in relations))


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Tim Cook", "tim cook"),
        ("  Tim \n\t Cook  ", "tim cook"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),  # casefold, not lower()
        ("Ａｐｐｌｅ", "apple"),  # NFKC: full-width letters
        ("ﬁle", "file"),  # NFKC: ligature
        ("a\u00a0b", "a b"),  # no-break space is whitespace
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "obj,path",
    [
        ([], ""),
        (None, ""),
        ({"relations": []}, ""),
        ({"entities": []}, ""),
        ({"entities": "x", "relations": []}, "entities"),
        ({"entities": [], "relations": {}}, "relations"),
        ({"entities": [1], "relations": []}, "entities[0]"),
        ({"entities": [{"type": "person"}], "relations": []}, "entities[0].text"),
        ({"entities": [{"text": "A", "type": 3}], "relations": []}, "entities[0].type"),
        ({"entities": [{"text": "", "type": "person"}], "relations": []}, "entities[0].text"),
        ({"entities": [], "relations": [{"head": "A", "tail": "B"}]}, "relations[0].type"),
        ({"entities": [], "relations": [{"head": 0, "tail": "B", "type": "r"}]}, "relations[0].head"),
    ],
)
def test_from_dict_names_the_bad_field(obj, path):
    with pytest.raises(SchemaError) as info:
        Graph.from_dict(obj)
    assert info.value.path == path
    assert info.value.message


def test_from_dict_prefixes_the_given_path():
    with pytest.raises(SchemaError, match=r"^graph\.entities\[0\]\.type: missing"):
        Graph.from_dict({"entities": [{"text": "A"}], "relations": []}, "graph")


def test_canonical_json_round_trip():
    g = graph([("Zoë", "person"), ("Apple", "organization")], [("Zoë", "Apple", "works for")])
    text = g.to_json()
    assert text == (
        '{"entities": [{"text": "Zoë", "type": "person"}, {"text": "Apple", "type": "organization"}], '
        '"relations": [{"head": "Zoë", "tail": "Apple", "type": "works for"}]}'
    )
    assert "\n" not in text
    assert Graph.from_dict(json.loads(text)) == g
    # extra keys in the input do not survive
    assert Graph.from_dict({"entities": [{"text": "A", "type": "x", "id": 1}], "relations": [], "z": 0}).to_dict() == {
        "entities": [{"text": "A", "type": "x"}],
        "relations": [],
    }
    assert Graph().is_empty and not g.is_empty


def test_valid_graph_has_no_violations():
    g = graph(
        [("Tim Cook", "person"), ("apple", "Organization"), ("Cupertino", "location")],
        [("Tim  Cook", "apple", "works for"), ("Apple", "Cupertino", "Located In")],
    )
    assert validate_graph(g, TEXT, ETYPES, RTYPES) == []
    assert validate_graph(Graph(), TEXT, ETYPES, RTYPES) == []


@pytest.mark.parametrize(
    "g,expected",
    [
        (graph([("Tim Cook", "ceo")]), [(UNKNOWN_ENTITY_TYPE, "entities[0]")]),
        (graph([("Steve Jobs", "person")]), [(SPAN_NOT_IN_TEXT, "entities[0]")]),
        (graph([("Tim", "person"), ("Tim", "person")]), [(DUPLICATE_ENTITY, "entities[1]")]),
        (graph([("Tim", "person"), ("TIM", "Person")]), [(DUPLICATE_ENTITY, "entities[1]")]),
        (graph([("Tim Cook", "person"), ("Apple", "organization")], [("Tim Cook", "Apple", "founded")]),
         [(UNKNOWN_RELATION_TYPE, "relations[0]")]),
        (graph([("Apple", "organization")], [("Tim Cook", "Apple", "works for")]), [(DANGLING_HEAD, "relations[0]")]),
        (graph([("Tim Cook", "person")], [("Tim Cook", "Apple", "works for")]), [(DANGLING_TAIL, "relations[0]")]),
        (graph([("Tim Cook", "person"), ("Apple", "organization")],
               [("Tim Cook", "Apple", "works for"), ("tim cook", "APPLE", "works for")]),
         [(DUPLICATE_RELATION, "relations[1]")]),
        # one entity breaking two rules reports both
        (graph([("Steve Jobs", "ceo")]), [(UNKNOWN_ENTITY_TYPE, "entities[0]"), (SPAN_NOT_IN_TEXT, "entities[0]")]),
    ],
)
def test_each_violation_is_reported(g, expected):
    violations = validate_graph(g, TEXT, ETYPES, RTYPES)
    assert [(v.kind, v.path) for v in violations] == expected
    assert all(v.path in str(v) and v.kind in str(v) for v in violations)


def test_task_context_is_reusable():
    ctx = TaskContext(TEXT, ETYPES, RTYPES)
    assert ctx.grounded("tim   cook") and ctx.grounded("CUPERTINO") and not ctx.grounded("Steve") and not ctx.grounded(" ")
    g = graph([("Steve Jobs", "person")])
    assert validate_graph(g, ctx) == validate_graph(g, TEXT, ETYPES, RTYPES)
