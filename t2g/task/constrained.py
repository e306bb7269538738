"""Constrained decoding: the allowed types become a grammar, so a model cannot answer off-schema.

Two renderings of the same language, built from the type lists of one request:

- `gbnf_grammar(...)`: a GBNF grammar for llama.cpp (`llama_cpp.LlamaGrammar.from_string`);
- `json_schema(...)`: a JSON schema with enums, for servers that take one (OpenAI-style
  `response_format`, Ollama's `format`, llama.cpp's server `{"type": "json_object", "schema": ...}`).

What the language guarantees: one JSON object `{"entities": [...], "relations": [...]}` in the
prompt's key order, every `type` one of the given names spelled exactly as given, every string
non-empty (in the grammar also starting with a non-space character: the parser rejects blank
fields; the schema can only say `minLength`, see `_items`). Both lists may
be empty, so `{"entities": [], "relations": []}` stays reachable; an empty type list forces its
list to be empty. What it does not constrain, on purpose: the span strings (grounding in the text is
the model's job and is measured, not forced) and the length (a completion cut by the token limit
still fails as `truncated`).
"""

from __future__ import annotations

import json
from typing import Sequence

# Whitespace between tokens is bounded: an unbounded `[ \t\n]*` lets a small model loop on spaces.
_WS = 'ws ::= | " " | "\\n" [ \\t]{0,16}'

# A JSON string whose first character is not whitespace (nor a quote/backslash/control char), then
# any JSON string characters. The first-character class excludes the Unicode spaces `str.strip()`
# removes, so the parser never sees a blank field.
_STRING_RULES = r"""
string ::= "\"" first char* "\""
first ::= [^"\\\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000] | escape-visible
char ::= [^"\\\x00-\x1f] | escape
escape ::= "\\" (["\\/bfnrt] | "u" hex hex hex hex)
escape-visible ::= "\\" (["\\/] | "u" hex hex hex hex)
hex ::= [0-9a-fA-F]
"""


def _check_types(types: Sequence[str], flag: str) -> list[str]:
    names = list(types)
    bad = [t for t in names if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"{flag}: type names must be non-empty strings, got {bad[0]!r}")
    return list(dict.fromkeys(names))  # keep order, drop repeats


def _gbnf_literal(s: str) -> str:
    """A GBNF string literal matching exactly `s`."""
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'


def _enum_rule(name: str, types: Sequence[str]) -> str:
    # Each alternative is the JSON encoding of the type name (quotes included), as one literal.
    return f"{name} ::= " + " | ".join(_gbnf_literal(json.dumps(t, ensure_ascii=False)) for t in types)


def _list_rule(name: str, item: str, allowed: bool) -> str:
    if not allowed:
        return f'{name} ::= "[" ws "]"'
    return f'{name} ::= "[" ws ({item} (ws "," ws {item})*)? ws "]"'


def gbnf_grammar(entity_types: Sequence[str], relation_types: Sequence[str]) -> str:
    """The GBNF grammar (root rule `root`) of graphs that use only the given types."""
    ents = _check_types(entity_types, "entity_types")
    rels = _check_types(relation_types, "relation_types")
    rules = [
        'root ::= "{" ws "\\"entities\\"" ws ":" ws entities ws "," ws "\\"relations\\"" ws ":" ws relations ws "}"',
        _list_rule("entities", "entity", bool(ents)),
        _list_rule("relations", "relation", bool(rels)),
    ]
    # Item rules only for a non-empty type list: llama.cpp rejects a grammar with unused undefined rules.
    if ents:
        rules.append('entity ::= "{" ws "\\"text\\"" ws ":" ws string ws "," ws "\\"type\\"" ws ":" ws entity-type ws "}"')
        rules.append(_enum_rule("entity-type", ents))
    if rels:
        rules.append('relation ::= "{" ws "\\"head\\"" ws ":" ws string ws "," ws "\\"tail\\"" ws ":" ws string ws ","'
                     ' ws "\\"type\\"" ws ":" ws relation-type ws "}"')
        rules.append(_enum_rule("relation-type", rels))
    return "\n".join(rules) + "\n" + _WS + "\n" + _STRING_RULES.strip() + "\n"


def _items(properties: dict, types: list[str]) -> dict:
    if not types:
        return {"type": "array", "maxItems": 0, "items": {}}
    # No `pattern` against blank strings: llama.cpp's schema converter mistranslates `\S`, and
    # OpenAI's strict mode rejects many patterns. A blank span is rare; the parser reports it.
    props = {k: {"type": "string", "minLength": 1} for k in properties}
    props["type"] = {"type": "string", "enum": types}
    item = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    return {"type": "array", "items": item}


def json_schema(entity_types: Sequence[str], relation_types: Sequence[str]) -> dict:
    """The JSON schema of graphs that use only the given types (types as `enum`s)."""
    ents = _check_types(entity_types, "entity_types")
    rels = _check_types(relation_types, "relation_types")
    return {
        "type": "object",
        "properties": {
            "entities": _items({"text": None}, ents),
            "relations": _items({"head": None, "tail": None}, rels),
        },
        "required": ["entities", "relations"],
        "additionalProperties": False,
    }


def response_format(entity_types: Sequence[str], relation_types: Sequence[str], style: str = "json_schema") -> dict:
    """The `response_format` field of an OpenAI-compatible chat request.

    style="json_schema": the OpenAI form (OpenAI, vLLM, Ollama's /v1, llama.cpp's C++ server);
    style="json_object": the llama-cpp-python server form `{"type": "json_object", "schema": ...}`.
    """
    schema = json_schema(entity_types, relation_types)
    if style == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "graph", "schema": schema, "strict": True}}
    if style == "json_object":
        return {"type": "json_object", "schema": schema}
    raise ValueError(f"--schema_style={style!r}: use 'json_schema' (OpenAI, vLLM, Ollama) or 'json_object' (llama-cpp-python's server)")
