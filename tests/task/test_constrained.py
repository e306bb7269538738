"""Constrained decoding: the GBNF grammar and the JSON schema admit exactly the graphs over the given types.

Acceptance is decided by llama.cpp's own grammar engine (the one that constrains generation),
driven token by token over the SmolLM2 vocabulary; the schema is turned into a grammar with the
converter llama-cpp-python's server uses. Then real constrained generations must parse.
"""

from __future__ import annotations

import json

import pytest

from t2g.task.constrained import gbnf_grammar, json_schema, response_format
from t2g.task.parsing import parse_completion

llama_cpp = pytest.importorskip("llama_cpp")

ENTS = ["person", "location", 'say "hi"', "café"]
RELS = ["live in", "back\\slash"]


@pytest.fixture(scope="module")
def vocab_llm(smollm2_gguf):
    return llama_cpp.Llama(model_path=str(smollm2_gguf), vocab_only=True, verbose=False)


def accepts(llm, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the tokens of `text`, then end-of-generation, through."""
    from t2g.infer.greedy_grammar import GreedyGrammar

    guide = GreedyGrammar(llm, grammar)
    try:
        for token in llm.tokenize(text.encode("utf-8"), add_bos=False, special=False):
            if not guide.allowed(token):
                return False
            guide.accept(token)
        return guide.allowed(llm.token_eos())
    finally:
        guide.close()


def graph(entities=(), relations=()) -> str:
    return json.dumps({"entities": [{"text": t, "type": y} for t, y in entities],
                       "relations": [{"head": h, "tail": t, "type": y} for h, t, y in relations]}, ensure_ascii=False)


VALID = [
    graph(),
    '{"entities":[],"relations":[]}',
    '{\n  "entities": [\n    {"text": "Bob", "type": "person"}\n  ],\n  "relations": []\n}',
    graph([("Bob", "person"), ("Paris", "location")], [("Bob", "Paris", "live in")]),
    graph([("Zoë", "café"), ('a "q"', 'say "hi"')], [("Zoë", 'a "q"', "back\\slash")]),
    graph([("x\\ny", "person")]),  # escapes inside free strings
]

INVALID = [
    ("unknown entity type", graph([("Bob", "animal")])),
    ("unknown relation type", graph([("Bob", "person"), ("Paris", "location")], [("Bob", "Paris", "born in")])),
    ("type in another case", graph([("Bob", "Person")])),
    ("type prefix", graph([("Bob", "pers")])),
    ("empty text", graph([("", "person")])),
    ("blank text", graph([(" Bob", "person")])),
    ("missing relations", '{"entities": []}'),
    ("keys swapped", '{"relations": [], "entities": []}'),
    ("extra key", '{"entities": [{"text": "Bob", "type": "person", "id": 1}], "relations": []}'),
    ("truncated", '{"entities": [{"text": "Bob", "type": "person"}]'),
    ("trailing text", graph() + " ok"),
    ("prose first", "Sure! " + graph()),
    ("code fence", "```json\n" + graph() + "\n```"),
]


@pytest.mark.parametrize("text", VALID)
def test_grammar_accepts_graphs_over_the_given_types(vocab_llm, text):
    assert parse_completion(text).ok
    assert accepts(vocab_llm, gbnf_grammar(ENTS, RELS), text)


@pytest.mark.parametrize("why,text", INVALID)
def test_grammar_rejects(vocab_llm, why, text):
    assert not accepts(vocab_llm, gbnf_grammar(ENTS, RELS), text), why


def test_empty_type_list_forces_an_empty_list(vocab_llm):
    grammar = gbnf_grammar(["person"], [])
    assert accepts(vocab_llm, grammar, graph([("Bob", "person")]))
    assert not accepts(vocab_llm, grammar, graph([("Bob", "person"), ("Al", "person")], [("Bob", "Al", "knows")]))


def _schema_grammar(ents, rels) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(json_schema(ents, rels)))


@pytest.mark.parametrize("text", [graph(), graph([("Bob", "person"), ("Paris", "location")], [("Bob", "Paris", "live in")])])
def test_schema_accepts_graphs_over_the_given_types(vocab_llm, text):
    assert accepts(vocab_llm, _schema_grammar(["person", "location"], ["live in"]), text)


@pytest.mark.parametrize("text", [graph([("Bob", "animal")]), graph([("Bob", "person")], [("Bob", "Bob", "likes")]),
                                  graph([("", "person")]), '{"entities": []}'])
def test_schema_rejects_off_list_types_and_bad_shapes(vocab_llm, text):
    assert not accepts(vocab_llm, _schema_grammar(["person", "location"], ["live in"]), text)


def test_schema_enums_and_response_formats():
    schema = json_schema(["person", "person", "location"], [])
    assert schema["properties"]["entities"]["items"]["properties"]["type"]["enum"] == ["person", "location"]
    assert schema["properties"]["relations"]["maxItems"] == 0
    assert response_format(["a"], ["b"])["json_schema"]["schema"]["required"] == ["entities", "relations"]
    assert response_format(["a"], ["b"], "json_object")["schema"] == json_schema(["a"], ["b"])
    with pytest.raises(ValueError, match="schema_style"):
        response_format(["a"], ["b"], "xml")
    with pytest.raises(ValueError, match="entity_types"):
        gbnf_grammar(["ok", " "], ["r"])


@pytest.mark.slow
def test_constrained_generation_parses_and_stays_on_the_lists(smollm2_gguf, conll04_dir):
    """SmolLM2 unconstrained breaks the format on CoNLL04; under the grammar every answer parses
    with listed types only, unless it hit the token limit."""
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.data.load import load_examples
    from t2g.infer.runner import Runner, make_request

    examples = load_examples(conll04_dir / "test.json")[:3]
    requests = [make_request(ex.text, ex.entity_types, ex.relation_types) for ex in examples]
    backend = LlamaCppBackend(str(smollm2_gguf), n_ctx=1024, n_threads=1)
    results = Runner(backend, max_new_tokens=160, constrained=True).run(requests)
    assert all(r.error in (None, "truncated") for r in results), [(r.error, r.detail) for r in results]
    for ex, r in zip(examples, results):
        if r.graph is not None:
            assert {e.type for e in r.graph.entities} <= set(ex.entity_types)
            assert {x.type for x in r.graph.relations} <= set(ex.relation_types)
        else:  # cut by the limit: still a prefix the grammar accepts
            assert r.completion.lstrip().startswith("{")


@pytest.mark.slow
def test_argmax_first_grammar_gives_the_same_tokens_as_full_filtering(smollm2_gguf):
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.infer.runner import make_request

    request = make_request("PERUGIA , Italy ( AP )", ["person", "location", "organization", "other"], ["located in"])
    outs = [LlamaCppBackend(str(smollm2_gguf), n_ctx=1024, n_threads=1, grammar_mode=mode)
            .generate([request], max_new_tokens=20, constrained=True)[0].completion for mode in ("argmax_first", "full")]
    assert outs[0] == outs[1] and outs[0].lstrip().startswith("{")
