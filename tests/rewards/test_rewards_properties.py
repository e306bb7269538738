"""Property tests: whatever the policy writes, every reward returns one value per completion,
inside its documented range, without raising, and fast (1 MB inputs, 100,000-deep nesting)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rewards
from t2g.task.schema import Graph
from t2g.task.scoring import score_example

TEXT = "Ada Lovelace worked with Charles Babbage in London on the Analytical Engine."
ETYPES = ["person", "location", "machine"]
RTYPES = ["works with", "located in"]
GOLD = {
    "entities": [{"text": "Ada Lovelace", "type": "person"}, {"text": "Charles Babbage", "type": "person"},
                 {"text": "London", "type": "location"}],
    "relations": [{"head": "Ada Lovelace", "tail": "Charles Babbage", "type": "works with"}],
}
ALL = {name: 1.0 for name in rewards.REGISTRY}
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(completions, golds=None, **build_kwargs):
    """Run every reward of one build on the batch; assert count and range; return seconds taken."""
    n = len(completions)
    golds = golds or [GOLD] * n
    funcs, _ = rewards.build(ALL, reasoning=True, **build_kwargs)
    kwargs = dict(text=[TEXT] * n, entity_types=[ETYPES] * n, relation_types=[RTYPES] * n, graph=golds)
    start = time.perf_counter()
    outputs = {f.__name__: f(completions, **kwargs) for f in funcs}
    elapsed = time.perf_counter() - start
    for name, values in outputs.items():
        low, high = rewards.RANGES[name]
        assert len(values) == n, name
        for v in values:
            assert isinstance(v, float) and low <= v <= high, (name, v)
    return elapsed


# Fragments that make the parser's every branch reachable from random concatenations.
FRAGMENTS = st.sampled_from([
    "{", "}", "[", "]", ",", ":", '"', '"entities"', '"relations"', '"text"', '"type"', '"head"', '"tail"',
    '"Ada Lovelace"', '"person"', '"London"', '"works with"', "null", "1", "-", "1e", "tru", " ", "\n",
    "<think>", "</think>", "```json\n", "```", "\\u00e9", "\\ud800", "Ada", "🦜", "\x00",
])
ANY_UNICODE = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(ANY_UNICODE, st.lists(FRAGMENTS, max_size=60).map("".join)), min_size=1, max_size=8))
def test_any_text_gets_in_range_rewards(completions):
    _check(completions)


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(st.none(), st.integers(), st.dictionaries(st.text(max_size=5), st.text(max_size=5)),
                          st.lists(st.fixed_dictionaries({"role": st.just("assistant"), "content": ANY_UNICODE}), max_size=2)),
                min_size=1, max_size=5))
def test_odd_completion_objects_get_in_range_rewards(completions):
    _check(completions)


SPANS = st.sampled_from(["Ada Lovelace", "ada  lovelace", "Charles Babbage", "London", "Analytical Engine", "Paris", "", " "])
TYPES = st.sampled_from(ETYPES + RTYPES + ["PERSON", "city", ""])
ENTITY = st.fixed_dictionaries({"text": SPANS, "type": TYPES})
RELATION = st.fixed_dictionaries({"head": SPANS, "tail": SPANS, "type": TYPES})
GRAPH_DICT = st.fixed_dictionaries({"entities": st.lists(ENTITY, max_size=8), "relations": st.lists(RELATION, max_size=6)})


@PROPERTY_SETTINGS
@given(st.lists(GRAPH_DICT, min_size=1, max_size=6), st.booleans())
def test_random_graphs_get_in_range_rewards_and_the_scorers_f1(graphs, as_string):
    completions = [json.dumps(gd) for gd in graphs]
    golds = [json.dumps(GOLD) if as_string else GOLD] * len(graphs)
    _check(completions, golds)
    got = rewards.REGISTRY["entity_f1"](completions, text=[TEXT] * len(graphs), entity_types=[ETYPES] * len(graphs),
                                         relation_types=[RTYPES] * len(graphs), graph=golds)
    for gd, value in zip(graphs, got):
        try:
            pred = Graph.from_dict(gd)
        except ValueError:  # an empty string field: not a graph, so no credit
            assert value == 0.0
        else:
            assert value == score_example(pred, Graph.from_dict(GOLD)).entity.f1


MB = 1_000_000
ENTITY_JSON = json.dumps({"text": "Ada Lovelace", "type": "person"}) + ", "
HUGE = {
    "one_char": "x" * MB,
    "unicode": "é🦜\u0301\ud800" * (MB // 4),
    "deep_lists": "[" * 100_000,
    "deep_lists_in_object": '{"entities": ' + "[" * 100_000,
    "deep_objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "valid_graph": '{"entities": [' + ENTITY_JSON * (MB // len(ENTITY_JSON)) + '{"text": "London", "type": "location"}], "relations": []}',
    "think_spam": "<think>" * (MB // 7),
    "unterminated_string": '{"entities": [{"text": "' + "a" * MB,
    "braces": "{" * MB,
}
# Per-completion wall-time bound. Generous against a shared 2-core machine; the measured cost of
# most of these is well under a millisecond (the length cap) or a few ms (deep nesting, uncapped).
BOUND_S = 0.05


@pytest.mark.parametrize("name", list(HUGE))
def test_one_megabyte_completions_are_fast_with_the_default_cap(name):
    completions = [HUGE[name]] * 4
    assert _check(completions) / len(completions) < BOUND_S


@pytest.mark.parametrize("name", [k for k in HUGE if k != "valid_graph"])
def test_pathological_inputs_are_fast_even_uncapped(name):
    completions = [HUGE[name]] * 2
    assert _check(completions, max_completion_chars=10 * MB) / len(completions) < BOUND_S


def test_a_valid_megabyte_graph_uncapped_is_scored_within_a_second():
    # Why the default cap exists: scoring 25,000 entities costs ~0.1-0.2 s of one core.
    completion = HUGE["valid_graph"]
    start = time.perf_counter()
    assert json.loads(completion)  # really a valid graph
    reading = time.perf_counter() - start
    # relative to reading the JSON, timed here: a loaded machine slows both, a blowup would be 100x
    assert _check([completion], max_completion_chars=10 * MB) < max(1.0, 50 * reading)
    values = rewards.REGISTRY["consistency"]([completion], text=[TEXT], entity_types=[ETYPES], relation_types=[RTYPES], graph=[GOLD])
    assert values[0] < -0.99  # 1 distinct entity repeated ~25,000 times
