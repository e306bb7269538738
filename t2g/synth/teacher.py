"""What the teacher is asked: extraction requests (fixed or open types) and reasoning traces.

The teacher always sees the source text. With a fixed inventory it gets exactly the student's
prompt (`t2g.task.prompts.build_messages`), so the data teaches the prompt the model will be queried
with. In open extraction it is asked to propose short, general type names; those are merged into
an inventory afterwards (`t2g.synth.inventory`). Structured output, where the endpoint supports it,
constrains the answer to the graph shape (and, with a fixed inventory, the types to the list):

- `json_schema`: OpenAI's `response_format={"type": "json_schema", ...}` (OpenAI, vLLM, Ollama,
  llama.cpp's C++ server);
- `json_object`: `{"type": "json_object", "schema": ...}` (llama-cpp-python's server);
- `grammar`: a GBNF grammar in the request's `grammar` field (llama.cpp);
- `none`: plain prompting; the parser and the filters do all the checking;
- `auto` (the default of `t2g generate`): one of the above, chosen by asking the endpoint once
  before the run (`t2g.synth.probe`).

A reasoning trace is written by a teacher that sees the text AND the finished graph, and must end
with that graph as its answer: `verify_trace` drops traces whose final answer disagrees.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from t2g.task import constrained
from t2g.task.parsing import THINK_CLOSE, THINK_OPEN, parse_completion
from t2g.task.prompts import SYSTEM_PROMPT, build_messages
from t2g.task.schema import Graph, normalize

MODES = ("json_schema", "json_object", "grammar", "none")  # what a request can carry
STRUCTURED = ("auto", *MODES)  # what --structured accepts

OPEN_SYSTEM_PROMPT = (
    "You extract knowledge graphs from text. Find the important entities in the text and the "
    "relations between them, and give each a type.\n"
    "Rules:\n"
    "- Entity types are short, general, lower-case nouns (e.g. person, organization, location, "
    "date, product, disease), never the entity itself.\n"
    "- Relation types are short, lower-case verb phrases (e.g. works for, located in, treats).\n"
    "- Copy each entity's text verbatim from the text.\n"
    "- A relation's head and tail are the texts of extracted entities.\n"
    'Answer with one JSON object: {"entities": [{"text": "...", "type": "..."}], '
    '"relations": [{"head": "...", "tail": "...", "type": "..."}]}'
)

TRACE_SYSTEM_PROMPT = (
    "You write the step-by-step reasoning that a careful annotator would follow to extract a "
    "given knowledge graph from a text. You are shown the text, the allowed types and the correct "
    "graph. Write the reasoning as if discovering the answer: go through the text, name each "
    "entity and why it has its type, then each relation and why it holds; do not mention that the "
    f"answer was given. Answer with {THINK_OPEN}your reasoning{THINK_CLOSE} followed by exactly the "
    "given graph as one JSON object, and nothing else."
)

_PLACEHOLDER = "x"  # replaced by `string` below


def extraction_messages(text: str, entity_types: Sequence[str] | None, relation_types: Sequence[str] | None) -> list[dict]:
    """The request for one text: the student's prompt (fixed types) or the open-extraction prompt."""
    if entity_types is not None and relation_types is not None:
        return build_messages(text, entity_types, relation_types)
    return [
        {"role": "system", "content": OPEN_SYSTEM_PROMPT},
        {"role": "user", "content": f"Text: {text}\n\nGive the JSON object and nothing else."},
    ]


# A word: letters/digits, with inner hyphens, apostrophes or dots ("Jean-Luc", "O'Neil", "U.S").
_WORD = re.compile(r"\w+(?:[-'\u2019.]\w+)*")


def candidate_spans(text: str, max_words: int = 6, max_spans: int = 1500) -> list[str] | None:
    """Every run of up to `max_words` words, copied exactly from `text`; None when there are too many.

    With `--ground_spans` these become the only strings an entity, head or tail may take, so a
    constrained teacher cannot invent or misspell a span (the filters would drop the row).
    """
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    spans: dict[str, None] = {}
    for i, (start, _) in enumerate(words):
        for j in range(i, min(i + max_words, len(words))):
            spans[text[start:words[j][1]]] = None
            if len(spans) > max_spans:
                return None
    return list(spans) or None


def structured_request(style: str, entity_types: Sequence[str] | None, relation_types: Sequence[str] | None,
                       spans: Sequence[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `OpenAIChatClient.chat`: `response_format` or `extra={"grammar"}`.

    `spans`, when given, are the only strings allowed for entity texts and relation endpoints.
    """
    if style not in MODES:  # `auto` is resolved before any row is asked (t2g.synth.probe)
        raise ValueError(f"--structured={style!r}: use one of {', '.join(MODES)}")
    if style == "none":
        return {}
    fixed = entity_types is not None and relation_types is not None
    if style == "grammar":
        return {"extra": {"grammar": _grammar(entity_types if fixed else None, relation_types if fixed else None, spans)}}
    schema = _schema(entity_types if fixed else None, relation_types if fixed else None, spans)
    if style == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "graph", "schema": schema, "strict": True}}}
    return {"response_format": {"type": "json_object", "schema": schema}}


def _gbnf_json_literal(value: str) -> str:
    """A GBNF literal matching the JSON encoding of `value` (quotes included)."""
    encoded = json.dumps(value, ensure_ascii=False)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _grammar(entity_types: Sequence[str] | None, relation_types: Sequence[str] | None,
             spans: Sequence[str] | None) -> str:
    """The shared graph grammar (`t2g.task.constrained`), with free types (open extraction) and/or
    spans restricted to `spans`."""
    open_types = entity_types is None
    lines = constrained.gbnf_grammar(entity_types or [_PLACEHOLDER], relation_types or [_PLACEHOLDER]).splitlines()
    out = []
    for line in lines:
        if open_types and line.startswith(("entity-type ::=", "relation-type ::=")):
            line = line.split("::=")[0] + "::= string"
        elif spans and line.startswith(("entity ::=", "relation ::=")):
            line = line.replace(" string ", " span ")
        out.append(line)
    if spans:
        out.append("span ::= " + " | ".join(_gbnf_json_literal(s) for s in spans))
    return "\n".join(out) + "\n"


def _schema(entity_types: Sequence[str] | None, relation_types: Sequence[str] | None,
            spans: Sequence[str] | None) -> dict:
    schema = constrained.json_schema(entity_types or [_PLACEHOLDER], relation_types or [_PLACEHOLDER])
    items = {key: schema["properties"][key]["items"]["properties"] for key in ("entities", "relations")}
    if entity_types is None:
        for props in items.values():
            props["type"] = {"type": "string", "minLength": 1}
    if spans:
        for props, fields in ((items["entities"], ("text",)), (items["relations"], ("head", "tail"))):
            for name in fields:
                props[name] = {"type": "string", "enum": list(spans)}
    return schema


def trace_messages(text: str, entity_types: Sequence[str], relation_types: Sequence[str], graph: Graph) -> list[dict]:
    """The request for a reasoning trace: the student's task, plus the graph the trace must reach."""
    task = build_messages(text, entity_types, relation_types, reasoning=True)[1]["content"]
    return [
        {"role": "system", "content": TRACE_SYSTEM_PROMPT},
        {"role": "user", "content": (
            f"The task, exactly as the student sees it (its instructions: {SYSTEM_PROMPT!r}):\n\n{task}\n\n"
            f"The correct graph:\n{graph.to_json()}\n\n"
            f"Write {THINK_OPEN}reasoning{THINK_CLOSE} and then this graph.")},
    ]


def graph_key(graph: Graph) -> tuple[frozenset, frozenset]:
    """What "the same answer" means: sets of normalised entities and relations."""
    ents = frozenset((normalize(e.text), normalize(e.type)) for e in graph.entities)
    rels = frozenset((normalize(r.head), normalize(r.type), normalize(r.tail)) for r in graph.relations)
    return ents, rels


def verify_trace(completion: str, graph: Graph, min_chars: int = 20) -> tuple[str | None, str]:
    """(trace, "") when the completion honours the contract and ends with `graph`; else (None, reason)."""
    parsed = parse_completion(completion)
    if not parsed.ok:
        return None, f"parse_{parsed.error}"
    trace = (parsed.reasoning or "").strip()
    if len(trace) < min_chars:
        return None, "trace_missing_or_too_short"
    if THINK_OPEN in trace or THINK_CLOSE in trace:
        return None, "trace_nested_think"
    if graph_key(parsed.graph) != graph_key(graph):
        return None, "trace_answer_disagrees"
    return trace, ""


def json_dumps_compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
