"""The parser: one table of completions and the error code (and graph) each must give."""

from __future__ import annotations

import pytest

from t2g.task.parsing import EMPTY, ERRORS, INVALID_JSON, NO_JSON, TEXT_BEFORE_JSON, TRAILING_TEXT, TRUNCATED, UNCLOSED_THINK, WRONG_SHAPE, completion_text, parse_completion
from t2g.task.schema import Entity, Graph, Relation

GOOD = '{"entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}], "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}]}'
GOOD_GRAPH = Graph(
    (Entity("Tim Cook", "person"), Entity("Apple", "organization")),
    (Relation("Tim Cook", "Apple", "works for"),),
)
EMPTY_JSON = '{"entities": [], "relations": []}'

# (name, completion, expected error, expected graph: GOOD_GRAPH / Graph() when it parses, else None)
CASES = [
    # the contract honoured
    ("plain", GOOD, None, GOOD_GRAPH),
    ("surrounding whitespace", f"\n  {GOOD}  \n", None, GOOD_GRAPH),
    ("empty graph", EMPTY_JSON, None, Graph()),
    ("extra keys ignored", '{"entities": [], "relations": [], "note": 1}', None, Graph()),
    ("fence json", f"```json\n{GOOD}\n```", None, GOOD_GRAPH),
    ("fence bare", f"```\n{GOOD}\n```", None, GOOD_GRAPH),
    ("fence one line", f"```json {GOOD}```", None, GOOD_GRAPH),
    ("fence crlf", f"```JSON\r\n{GOOD}\r\n```", None, GOOD_GRAPH),
    ("fence never closed", f"```json\n{GOOD}", None, GOOD_GRAPH),
    ("think then json", f"<think>Tim Cook runs Apple.</think>\n{GOOD}", None, GOOD_GRAPH),
    ("think with braces", "<think>maybe {x} or {\"a\": [1, 2}} ]</think>" + GOOD, None, GOOD_GRAPH),
    ("think with a full json", f"<think>draft: {EMPTY_JSON} no wait</think>{GOOD}", None, GOOD_GRAPH),
    ("think then fence", f"<think>ok</think>\n```json\n{GOOD}\n```", None, GOOD_GRAPH),
    ("whitespace before think", f"\n <think>ok</think>{GOOD}", None, GOOD_GRAPH),
    # a stray </think> (the chat template opened the block in the prompt): what precedes is reasoning
    ("stray close", f"I see a person {{Tim}}.</think>\n{GOOD}", None, GOOD_GRAPH),
    # nothing there
    ("empty", "", EMPTY, None),
    ("whitespace", " \n\t ", EMPTY, None),
    ("empty think, nothing after", "<think></think>", EMPTY, None),
    ("json only inside the think", f"<think>{GOOD}</think>", EMPTY, None),
    ("empty fence", "```json\n```", EMPTY, None),
    ("unclosed think", "<think>Tim Cook is a person", UNCLOSED_THINK, None),
    ("unclosed think holding json", f"<think>{GOOD}", UNCLOSED_THINK, None),
    ("no json", "There are no entities here.", NO_JSON, None),
    ("no json after think", "<think>hm</think>None.", NO_JSON, None),
    ("a json string", '"entities"', NO_JSON, None),
    # invalid JSON (an error inside the text, not at its end)
    ("single quotes", "{'entities': [], 'relations': []}", INVALID_JSON, None),
    ("trailing comma", '{"entities": [], "relations": [],}', INVALID_JSON, None),
    ("wrong bracket", '{"entities": [}', INVALID_JSON, None),
    ("missing colon", '{"entities" [], "relations": []}', INVALID_JSON, None),
    ("bad literal", '{"entities": [], "relations": nul}x', INVALID_JSON, None),
    ("raw newline in string", '{"entities": [{"text": "a\nb", "type": "x"}], "relations": []}', INVALID_JSON, None),
    ("bad escape", '{"entities": [{"text": "\\u12zz", "type": "x"}], "relations": []}', INVALID_JSON, None),
    # truncated: the text stops mid-JSON, in several places
    ("cut after brace", "{", TRUNCATED, None),
    ("cut in key", '{"entit', TRUNCATED, None),
    ("cut after key", '{"entities"', TRUNCATED, None),
    ("cut after colon", '{"entities":', TRUNCATED, None),
    ("cut in list", '{"entities": [{"text": "Tim Cook", "type": "person"},', TRUNCATED, None),
    ("cut in value", '{"entities": [{"text": "Tim Co', TRUNCATED, None),
    ("cut in escape", '{"entities": [{"text": "Tim\\', TRUNCATED, None),
    ("cut in unicode escape", '{"entities": [{"text": "\\u00', TRUNCATED, None),
    ("cut in literal", '{"entities": [], "relations": [], "x": tr', TRUNCATED, None),
    ("cut in number", '{"entities": [], "x": -', TRUNCATED, None),
    ("cut before last brace", GOOD[:-1], TRUNCATED, None),
    ("cut inside fence", f"```json\n{GOOD[:60]}", TRUNCATED, None),
    ("cut after think", f"<think>ok</think>{GOOD[:30]}", TRUNCATED, None),
    # the graph is there but something surrounds it: error, graph None (salvaged for diagnostics)
    ("text before", f"Here is the graph: {GOOD}", TEXT_BEFORE_JSON, None),
    ("text before fence", f"Sure!\n```json\n{GOOD}\n```", TEXT_BEFORE_JSON, None),
    ("text before think", f"Sure. <think>ok</think>{GOOD}", TEXT_BEFORE_JSON, None),
    ("json before think", f"{GOOD}<think>ok</think>", TEXT_BEFORE_JSON, None),
    ("text after", f"{GOOD}\nHope this helps!", TRAILING_TEXT, None),
    ("two graphs", f"{GOOD}\n{GOOD}", TRAILING_TEXT, None),
    ("text after fence", f"```json\n{GOOD}\n```\nDone.", TRAILING_TEXT, None),
    ("second think block", f"<think>a</think><think>b</think>{GOOD}", TEXT_BEFORE_JSON, None),
    # valid JSON that is not a graph
    ("missing relations", '{"entities": []}', WRONG_SHAPE, None),
    ("missing entities", '{"relations": []}', WRONG_SHAPE, None),
    ("entities not a list", '{"entities": {}, "relations": []}', WRONG_SHAPE, None),
    ("entity not an object", '{"entities": ["Tim Cook"], "relations": []}', WRONG_SHAPE, None),
    ("entity missing type", '{"entities": [{"text": "Tim Cook"}], "relations": []}', WRONG_SHAPE, None),
    ("entity type null", '{"entities": [{"text": "Tim Cook", "type": null}], "relations": []}', WRONG_SHAPE, None),
    ("empty entity text", '{"entities": [{"text": " ", "type": "person"}], "relations": []}', WRONG_SHAPE, None),
    ("int ids as head", '{"entities": [{"text": "A", "type": "x"}, {"text": "B", "type": "x"}], "relations": [{"head": 0, "tail": 1, "type": "r"}]}', WRONG_SHAPE, None),
    ("ids instead of texts", '{"entities": [{"id": "e1", "text": "A", "type": "x"}], "relations": [{"head_id": "e1", "tail_id": "e1", "type": "r"}]}', WRONG_SHAPE, None),
    ("top-level list", '[{"text": "Tim Cook", "type": "person"}]', WRONG_SHAPE, None),
    ("top-level empty list", "[]", WRONG_SHAPE, None),
]


@pytest.mark.parametrize("name,completion,error,graph", CASES, ids=[c[0] for c in CASES])
def test_parse_table(name, completion, error, graph):
    result = parse_completion(completion)
    assert result.error == error, (result.error, result.detail)
    assert result.graph == graph
    assert result.ok == (error is None)
    if error is not None:
        assert result.error in ERRORS and result.detail or error == EMPTY


@pytest.mark.parametrize("completion", [f"Here is the graph: {GOOD}", f"{GOOD}\nHope this helps!", f"Sure. <think>ok</think>{GOOD}"])
def test_surrounding_text_is_salvaged_for_diagnostics_only(completion):
    result = parse_completion(completion)
    assert result.graph is None and result.json_parsed
    assert result.salvaged == GOOD_GRAPH


def test_reasoning_is_returned():
    assert parse_completion(f"<think>Tim {{runs}} Apple</think>{GOOD}").reasoning == "Tim {runs} Apple"
    assert parse_completion(GOOD).reasoning is None
    assert parse_completion("<think>half").reasoning == "half"


def test_details_name_the_problem():
    assert "entities[0].type" in parse_completion('{"entities": [{"text": "A"}], "relations": []}').detail
    assert "relations[0].head" in parse_completion(
        '{"entities": [], "relations": [{"head": 1, "tail": "b", "type": "r"}]}'
    ).detail
    assert "char" in parse_completion('{"entities": [}').detail


@pytest.mark.parametrize(
    "completion,expected",
    [
        ([{"role": "assistant", "content": GOOD}], GOOD_GRAPH),
        ([{"role": "assistant", "content": "<think>x</think>"}, {"role": "assistant", "content": GOOD}], GOOD_GRAPH),
        ({"role": "assistant", "content": GOOD}, GOOD_GRAPH),
    ],
)
def test_chat_message_input(completion, expected):
    assert parse_completion(completion).graph == expected


@pytest.mark.parametrize("completion", [None, 42, [], [{"role": "assistant"}], [None, 3], {"content": None}])
def test_non_text_input_is_empty_not_an_exception(completion):
    assert completion_text(completion) == ""
    assert parse_completion(completion).error == EMPTY


# --- the prompt and the target it asks for -----------------------------------------------------

from t2g.task.prompts import PROMPT_VERSION, build_messages, render_target  # noqa: E402


def test_prompt_is_versioned_and_lists_the_given_types():
    assert PROMPT_VERSION.startswith("t2g-prompt-v")
    messages = build_messages("Tim Cook runs Apple.", ["person", "organization"], ["works for"])
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "person, organization" in user and "works for" in user and "Tim Cook runs Apple." in user
    assert "<think>" not in user
    system = messages[0]["content"]
    assert '{"entities": [], "relations": []}' in system  # the empty answer is spelled out
    assert "only the given entity types" in system.lower() and "verbatim" in system.lower()
    assert "(none)" in build_messages("x", [], [])[1]["content"]


def test_prompt_descriptions_and_reasoning_mode():
    messages = build_messages("t", ["person", "drug"], ["treats"], descriptions={"drug": "a medicine"}, reasoning=True)
    user = messages[1]["content"]
    assert "- drug: a medicine" in user and "- person\n" in user
    assert "<think>" in user and "</think>" in user


@pytest.mark.parametrize("trace", [None, "", "Tim Cook {runs} Apple; {\"entities\": []} is not it.", "multi\nline\n"])
@pytest.mark.parametrize("graph", [GOOD_GRAPH, Graph(), Graph((Entity('Zoë "Z" \\ Ng', "per son"),))])
def test_render_target_round_trips_through_the_parser(graph, trace):
    result = parse_completion(render_target(graph, trace))
    assert result.ok and result.graph == graph
    assert (result.reasoning is None) == (trace is None)
    if trace:
        assert result.reasoning.strip() == trace.strip()


def test_render_target_refuses_a_trace_with_think_tags():
    with pytest.raises(ValueError):
        render_target(GOOD_GRAPH, "then </think> appears")
