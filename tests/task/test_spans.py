"""Character offsets: the one rule that says where a mention occurs (and so whether it is grounded).

A table of hand-checked cases, every CoNLL04 test entity at the token offsets its gold data states,
properties over arbitrary text, and the rule shared by validation, the grounding reward and located
graphs.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rewards
from t2g.data.load import load_examples
from t2g.task.schema import SPAN_NOT_IN_TEXT, Entity, Graph, Relation, TaskContext, locate, normalize, validate_graph
from t2g.task.spans import SpanIndex, find_spans

# (text, mention, the stretches it must find, as written)
TABLE = [
    ("Tim Cook met Tim Cook.", "Tim Cook", ["Tim Cook", "Tim Cook"]),  # repeated
    ("Tim  COOK met\ttim\n cook.", "tim cook", ["Tim  COOK", "tim\n cook"]),  # case, runs of whitespace
    ("New York City is in New York.", "New York", ["New York", "New York"]),  # inside a longer mention
    ("New York City is in New York.", "New York City", ["New York City"]),
    ("aaaa", "aa", ["aa", "aa"]),  # overlapping occurrences: leftmost, then after it
    ("aaa", "aa", ["aa"]),
    ("Café de Flore, CAFÉ and cafe\u0301.", "café", ["Café", "CAFÉ", "cafe\u0301"]),  # precomposed and combining
    ("cafe\u0301", "cafe", []),  # the e carries an accent: "cafe" is not what the text says
    ("São Paulo, SÃO PAULO", "são paulo", ["São Paulo", "SÃO PAULO"]),
    ("Straße and STRASSE", "strasse", ["Straße", "STRASSE"]),  # casefold: ß is ss
    ("Straße", "stras", []),  # half of the ß is not in the text
    ("the ﬁne print", "fine", ["ﬁne"]),  # NFKC: the ligature is f + i
    ("the ﬁne print", "f", []),  # ... but no stretch of the text is an f alone
    ("\u00a0Tim\u00a0Cook\u2003runs", "tim cook", ["Tim\u00a0Cook"]),  # no-break and em spaces are spaces
    ("😀 Apple and 😀 Apple", "apple", ["Apple", "Apple"]),  # astral characters before the mention
    ("我在北京工作。北京很大。", "北京", ["北京", "北京"]),  # no spaces between words
    ("Ｔｏｋｙｏ is wide", "tokyo", ["Ｔｏｋｙｏ"]),  # full-width letters
    ("Tim Cook", "Steve", []),
    ("Tim Cook", "  ", []),
    ("", "Tim", []),
    ("Apple's iPhone", "app", ["App"]),  # characters, not words: the scorer's substring rule
]


@pytest.mark.parametrize("text,mention,expected", TABLE)
def test_table(text, mention, expected):
    spans = find_spans(text, mention)
    assert [text[s:e] for s, e in spans] == expected
    assert spans == sorted(spans) and all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))
    assert all(normalize(text[s:e]) == normalize(mention) for s, e in spans)
    assert SpanIndex(text).grounded(mention) == bool(expected)


def test_offsets_are_exact_on_every_conll04_test_gold_graph(conll04_dir):
    """Every gold entity is found at the character offsets its token offsets state (the sentence is
    the tokens joined by single spaces), and everything found is a real occurrence."""
    records = json.loads((conll04_dir / "test.json").read_text(encoding="utf-8"))
    examples = load_examples(conll04_dir / "test.json")
    assert len(records) == len(examples) == 288
    n = 0
    for rec, ex in zip(records, examples):
        tokens = rec["tokens"]
        assert ex.text == " ".join(tokens)
        index = SpanIndex(ex.text)
        for ent in rec["entities"]:
            start = sum(len(t) + 1 for t in tokens[:ent["start"]])
            end = start + len(" ".join(tokens[ent["start"]:ent["end"]]))
            mention = " ".join(tokens[ent["start"]:ent["end"]])
            spans = index.find(mention)
            assert (start, end) in spans, (ex.id, mention, spans)
            assert all(normalize(ex.text[s:e]) == normalize(mention) for s, e in spans)
            n += 1
        located = locate(ex.graph, ex.text)
        assert all(e.spans for e in located.entities) and all(r.head_spans and r.tail_spans for r in located.relations)
    assert n == 1079  # every gold entity of the split (the data README's count)


# --- properties ----------------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=60)
# Mentions that are pieces of the text, or text of their own.
SIMPLE = st.text(st.sampled_from("abcAB éüÅ\t\n\u00a0"), max_size=40)  # NFKC-stable, casefolding one to one


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT, ANY_TEXT)
def test_every_span_is_a_real_occurrence_and_spans_never_overlap(text, mention):
    spans = find_spans(text, mention)
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert normalize(text[s:e]) == normalize(mention)
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:]))
    assert SpanIndex(text).grounded(mention) == bool(spans)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, st.integers(0, 60), st.integers(0, 60))
def test_functions_never_raise_on_pieces_of_the_text(text, a, b):
    mention = text[min(a, b):max(a, b)]
    spans = find_spans(text, mention)
    assert all(normalize(text[s:e]) == normalize(mention) for s, e in spans)


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=40), st.text(st.sampled_from("aAbB \t\x1c"), max_size=6),
       st.integers(0, 40), st.integers(0, 40))
def test_ascii_grounding_shortcut_agrees_with_the_spans(text, extra, a, b):
    """ASCII texts answer `grounded` without the character map; the answer is the spans' answer."""
    for mention in (text[min(a, b):max(a, b)], extra, text[a:] + extra):
        assert SpanIndex(text).grounded(mention) == bool(find_spans(text, mention))


@settings(max_examples=300, deadline=None)
@given(SIMPLE, st.integers(0, 40), st.integers(0, 40))
def test_on_ordinary_text_grounding_is_the_old_substring_rule(text, a, b):
    """Where normalising is character by character (ASCII, precomposed Latin letters, spaces), a
    mention has spans exactly when its normal form is in the text's: reward values did not move."""
    mention = text[min(a, b):max(a, b)]
    norm = normalize(mention)
    assert bool(find_spans(text, mention)) == bool(norm and norm in normalize(text))
    assert bool(find_spans(text, mention + "x")) == bool(normalize(mention + "x") in normalize(text))


# --- one rule: validation, the grounding reward and located graphs -------------------------------

TEXT = "the ﬁne print by Tim Cook"


def test_validation_grounding_and_spans_are_one_rule():
    graph = Graph((Entity("fine", "thing"), Entity("f", "thing"), Entity("Tim  cook", "person"), Entity("Cooke", "person")), ())
    ctx = TaskContext(TEXT, ["thing", "person"], [])
    located = locate(graph, TEXT)
    ungrounded = {v.path for v in validate_graph(graph, ctx) if v.kind == SPAN_NOT_IN_TEXT}
    assert ungrounded == {f"entities[{i}]" for i, e in enumerate(located.entities) if not e.spans} == {"entities[1]", "entities[3]"}
    assert [e.spans for e in located.entities] == [((4, 7),), (), ((17, 25),), ()]
    [grounding], _ = rewards.build({"grounding": 1.0})
    completion = json.dumps(graph.to_dict())
    value = grounding([completion], text=[TEXT], entity_types=[["thing", "person"]], relation_types=[[]],
                      graph=[{"entities": [], "relations": []}])
    assert value == [-0.5]  # two of the four entities have no spans


def test_spans_ride_along_but_never_change_the_graph_or_its_canonical_json():
    graph = Graph((Entity("Tim Cook", "person"), Entity("Apple", "organization")),
                  (Relation("Tim Cook", "Apple", "works for"), Relation("Tim Cook", "Nobody", "works for")))
    text = "Tim Cook runs Apple. Apple!"
    located = locate(graph, text)
    assert located == graph and hash(located) == hash(graph) and located.to_json() == graph.to_json()
    assert located.to_dict() == graph.to_dict()
    assert located.to_dict(spans=True) == {
        "entities": [{"text": "Tim Cook", "type": "person", "spans": [[0, 8]]},
                     {"text": "Apple", "type": "organization", "spans": [[14, 19], [21, 26]]}],
        "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for", "head_spans": [[0, 8]],
                       "tail_spans": [[14, 19], [21, 26]]},
                      {"head": "Tim Cook", "tail": "Nobody", "type": "works for", "head_spans": [[0, 8]], "tail_spans": []}],
    }
    # A row with spans reads back as the same graph (the spans are derived, never read).
    assert Graph.from_dict(located.to_dict(spans=True)) == graph
    assert Graph.from_dict(located.to_dict(spans=True)).entities[0].spans == ()
