"""Property tests: the parser and the scorer never raise, always return well-formed results, and stay
fast on hostile input (1 MB strings, 100,000-deep nesting). They run on every GRPO completion."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t2g.task.parsing import ERRORS, TRUNCATED, ParseResult, parse_completion
from t2g.task.prompts import render_target
from t2g.task.schema import Entity, Graph, Relation, normalize, validate_graph
from t2g.task.scoring import CorpusScore, GraphKeys, score_corpus, score_example

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer random text into the parser's interesting paths.
FRAGMENTS = st.sampled_from([
    "{", "}", "[", "]", ":", ",", '"', "\\", '"entities"', '"relations"', '"text"', '"type"', '"head"', '"tail"',
    '"Tim"', "[]", "{}", "null", "1", "-", "tr", "<think>", "</think>", "```", "```json\n", "\n", " ", "x",
    '{"entities": [], "relations": []}', '{"text": "a", "type": "b"}', "\\u00", "é", "\x00", "\ud800",
])
HOSTILE_TEXT = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=40).map("".join))
# Strings a graph may hold: non-blank text, without think tags (a JSON string holding "</think>" after an
# absent <think> is read as a stray closing tag; the source texts we train on do not contain the tags).
NAMES = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() and "<think>" not in s and "</think>" not in s)


@st.composite
def graphs(draw, names=NAMES) -> Graph:
    entities = draw(st.lists(st.builds(Entity, names, names), max_size=6))
    texts = [e.text for e in entities] or ["x"]
    relations = draw(st.lists(st.builds(Relation, st.one_of(st.sampled_from(texts), names),
                                        st.one_of(st.sampled_from(texts), names), names), max_size=6))
    return Graph(tuple(entities), tuple(relations))


def well_formed(result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    assert (result.error is None) == (result.graph is not None) == result.ok
    assert result.error is None or result.error in ERRORS
    assert isinstance(result.detail, str)
    assert result.reasoning is None or isinstance(result.reasoning, str)
    for g in (result.graph, result.salvaged):
        if g is not None:
            assert all(isinstance(s, str) and s.strip() for e in g.entities for s in (e.text, e.type))
            assert all(isinstance(s, str) and s.strip() for r in g.relations for s in (r.head, r.tail, r.type))
    assert not result.detail.startswith("parser error")  # the catch-all never fires: no hidden bug


def well_formed_score(score) -> None:
    for c in (score.entity, score.relation, score.entity_boundary, score.relation_boundary,
              *score.entity_by_type.values(), *score.relation_by_type.values()):
        assert 0 <= c.tp <= min(c.n_pred, c.n_gold)
        assert 0.0 <= c.precision <= 1.0 and 0.0 <= c.recall <= 1.0 and 0.0 <= c.f1 <= 1.0


@SETTINGS
@given(HOSTILE_TEXT)
def test_parser_never_raises_on_text(text):
    well_formed(parse_completion(text))


@SETTINGS
@given(st.one_of(st.none(), st.integers(), st.lists(st.one_of(st.none(), st.text(), st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.none())))),
                 st.dictionaries(st.text(max_size=8), st.text())))
def test_parser_never_raises_on_odd_objects(completion):
    well_formed(parse_completion(completion))


@SETTINGS
@given(graphs(), HOSTILE_TEXT)
def test_scorer_never_raises_and_is_bounded(graph, text):
    parsed = parse_completion(text).graph  # None or a graph, as rewards and evaluation pass it
    for pred, gold in ((parsed, graph), (graph, graph), (Graph(), graph), (graph, Graph())):
        well_formed_score(score_example(pred, gold))
    validate_graph(graph, text, ["a"], ["b"])  # never raises either


@SETTINGS
@given(graphs(), graphs())
def test_scorer_laws(pred, gold):
    s = score_example(pred, gold)
    well_formed_score(s)
    # a graph against itself is perfect; swapping sides swaps precision and recall
    assert score_example(gold, gold).entity.f1 == score_example(gold, gold).relation.f1 == 1.0
    flipped = score_example(gold, pred)
    assert (s.entity.precision, s.entity.recall) == (flipped.entity.recall, flipped.entity.precision)
    assert (s.relation.precision, s.relation.recall) == (flipped.relation.recall, flipped.relation.precision)
    # order, duplicates and case do not matter
    noisy = Graph(tuple(reversed(pred.entities)) + pred.entities,
                  tuple(Relation(r.head.upper(), r.tail, r.type) for r in pred.relations) + pred.relations)
    if all(normalize(x.upper()) == normalize(x) for e in pred.entities for x in (e.text,)):
        assert score_example(noisy, gold).entity.tp == s.entity.tp
    # every strict match is a boundaries match (the boundaries sets are coarser, so compare the keys)
    pk, gk = GraphKeys.of(pred), GraphKeys.of(gold)
    assert {text for text, _ in pk.entities & gk.entities} <= pk.entity_spans & gk.entity_spans
    assert {(h, t, tl) for h, _, t, tl, _ in pk.relations & gk.relations} <= pk.triplets & gk.triplets
    total = score_corpus([(pred, gold), (gold, gold)])
    assert isinstance(total, CorpusScore) and json.dumps(total.report())


@SETTINGS
@given(graphs(), st.one_of(st.none(), st.text().filter(lambda s: "<think>" not in s and "</think>" not in s)))
def test_render_target_round_trips(graph, trace):
    result = parse_completion(render_target(graph, trace))
    assert result.ok, (result.error, result.detail)
    assert result.graph == graph


@SETTINGS
@given(st.text())
def test_normalize_is_idempotent(s):
    assert normalize(normalize(s)) == normalize(s)


# --- hostile sizes: explicit, timed -----------------------------------------------------------

MB = 1_000_000
GOOD = '{"entities": [{"text": "a", "type": "b"}], "relations": []}'


def _entities_json(n: int) -> str:
    return json.dumps({"entities": [{"text": f"e{i}", "type": "t"} for i in range(n)], "relations": []})


BIG_INPUTS = {
    "1MB letters": "x" * MB,
    "1MB braces": "{" * MB,
    "1MB closing braces": "}" * MB,
    "1MB quotes": '"' * MB,
    "1MB unterminated string": '{"entities": [{"text": "' + "a" * MB,
    "1MB think": "<think>" + "{[" * (MB // 2) + "</think>" + GOOD,
    "1MB unclosed think": "<think>" * (MB // 7),
    "1MB stray closes": "</think>" * (MB // 8),
    "1MB fences": "```" * (MB // 3),
    "1MB whitespace": " \n" * (MB // 2),
    "1MB trailing text": GOOD + "x" * MB,
    "1MB valid graph": _entities_json(25_000),
    "deep [": "[" * 100_000,
    "deep {": '{"a":' * 100_000,
    "deep [{": "[{" * 100_000,
    "deep entities": '{"entities": ' + "[" * 100_000,
    "deep closed": '{"entities": ' + "[" * 100_000 + "]" * 100_000 + ', "relations": []}',
    "deep in think": "<think>" + "{" * 100_000 + "</think>" + GOOD,
}

TENTH_GRAPH = _entities_json(2_500)


def _seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


@pytest.mark.parametrize("name", list(BIG_INPUTS))
def test_parser_on_huge_and_deep_input(name):
    text = BIG_INPUTS[name]
    start = time.perf_counter()
    result = parse_completion(text)
    elapsed = time.perf_counter() - start
    well_formed(result)
    # A valid megabyte graph is real work (25,000 entities to build and check: 0.07 s on a quiet machine, 0.54 s
    # seen once beside CI's other tests): its bound is relative to the same graph a tenth the size, and both are
    # the best of 3, so neither a loaded machine nor one slow call (a garbage collection) decides. Linear parsing
    # costs 10x the tenth; a quadratic blowup 100x.
    bound = 0.5
    if name == "1MB valid graph":
        elapsed = min(elapsed, *(_seconds(parse_completion, text) for _ in range(2)))
        bound = max(bound, 40 * min(_seconds(parse_completion, TENTH_GRAPH) for _ in range(3)))
    assert elapsed < bound, f"{name}: {elapsed:.3f} s (bound {bound:.3f} s)"
    if name in ("1MB think", "deep in think"):
        assert result.ok  # braces in the reasoning do not confuse the parser
    if name == "1MB unterminated string":
        assert result.error == TRUNCATED
    if name == "1MB valid graph":
        assert result.ok and len(result.graph.entities) == 25_000


def test_scorer_on_huge_strings_and_graphs():
    big = "Ab " * (MB // 3)  # 1 MB entity texts and types
    g = Graph((Entity(big, "t"), Entity("x", big)), (Relation(big, "x", big),))
    many = Graph(tuple(Entity(f"e{i}", "t") for i in range(5_000)),
                 tuple(Relation(f"e{i}", f"e{i + 1}", "r") for i in range(4_999)))
    text = " ".join(f"e{i}" for i in range(5_000))
    calls = {
        "1MB strings": lambda: score_example(g, g).relation.f1 == 1.0,
        "5,000 entities": lambda: score_example(many, many).relation.f1 == 1.0,
        "mixed": lambda: score_example(g, many).entity.f1 == 0.0,
        "validate 5,000": lambda: validate_graph(many, text, ["t"], ["r"]) == [],
        # ("x", big): unknown type and not in the text; the relation type (big) is unknown
        "validate 1MB": lambda: len(validate_graph(g, big, ["t"], ["r"])) == 3,
    }
    for name, call in calls.items():
        start = time.perf_counter()
        assert call(), name
        elapsed = time.perf_counter() - start
        assert elapsed < 2.0, f"{name}: {elapsed:.2f} s"  # generous: ~0.3 s on a lightly loaded core
