"""Turn any model completion into a graph, or into a precise reason why not.

The contract (the one the prompt states): optionally one `<think>...</think>` block first, then
one JSON graph and nothing else. Code fences around the JSON are tolerated; anything else that
breaks the contract yields an `error`, and `graph` is None. Where a graph could still be read
despite the error (text before or after it), it is kept in `salvaged` for diagnostics; rewards and
evaluation score `graph`, never `salvaged`, so that the training signal and the reported metric
are the same thing.

`parse_completion` never raises and runs in time linear in the input (one `json` decode at most),
because it runs on every GRPO completion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from t2g.task.schema import Graph, SchemaError

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Failure reasons, in the order the parser meets them.
EMPTY = "empty"  # nothing but whitespace (or an empty think block and nothing after it)
UNCLOSED_THINK = "unclosed_think"  # <think> without </think>: the reasoning never ended
NO_JSON = "no_json"  # no '{' in the answer
TEXT_BEFORE_JSON = "text_before_json"  # prose before the JSON object (or before the think block)
TRUNCATED = "truncated"  # the JSON stops mid-way (hit the length limit)
INVALID_JSON = "invalid_json"  # malformed JSON (or nested too deep to decode)
TRAILING_TEXT = "trailing_text"  # a JSON object followed by more text
WRONG_SHAPE = "wrong_shape"  # valid JSON but not a graph (missing keys, non-string fields...)

ERRORS = (EMPTY, UNCLOSED_THINK, NO_JSON, TEXT_BEFORE_JSON, TRUNCATED, INVALID_JSON, TRAILING_TEXT, WRONG_SHAPE)

_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class ParseResult:
    graph: Graph | None  # the answer, when the completion honours the contract
    error: str | None = None  # one of ERRORS
    detail: str = ""  # human-readable specifics (JSON error message, offending field)
    reasoning: str | None = None  # the text inside <think>...</think>, when present
    json_parsed: bool = False  # a JSON value was decoded (even if its shape or surroundings were wrong)
    salvaged: Graph | None = None  # a graph read despite `error` (surrounding text); diagnostics only

    @property
    def ok(self) -> bool:
        return self.error is None


def completion_text(completion: Any) -> str:
    """The text of a completion as TRL passes it: a string, or `[{"role": ..., "content": ...}]`."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        parts = [m.get("content") for m in completion if isinstance(m, dict)]
        return "".join(p for p in parts if isinstance(p, str))
    if isinstance(completion, dict) and isinstance(completion.get("content"), str):
        return completion["content"]
    return ""


def split_reasoning(text: str) -> tuple[str | None, str, str | None]:
    """Split off a leading think block: (reasoning, answer, error)."""
    open_at = text.find(THINK_OPEN)
    if open_at == -1:
        close_at = text.rfind(THINK_CLOSE)
        if close_at == -1:
            return None, text, None
        # A stray closing tag: whatever came before it was (malformed) reasoning.
        return text[:close_at], text[close_at + len(THINK_CLOSE):], None
    close_at = text.find(THINK_CLOSE, open_at + len(THINK_OPEN))
    if close_at == -1:
        return text[open_at + len(THINK_OPEN):], "", UNCLOSED_THINK
    return text[open_at + len(THINK_OPEN):close_at], text[close_at + len(THINK_CLOSE):], None


# An opening fence: three backticks and an optional info string ("json"); what follows may be a
# line break (\n or \r\n) or, when the model wrote fence and JSON on one line, nothing or spaces.
_FENCE_OPEN = re.compile(r"```[A-Za-z0-9_+-]*")
# What may follow a JSON error position when the text merely stopped mid-token: the start of a
# literal (`tr`, `nul`), a lone minus, a fraction or exponent without its digits (`1.`, `1e+`).
_CUT_TOKEN = re.compile(r"-|[.eE][+-]?|t(?:r(?:u)?)?|f(?:a(?:l(?:s)?)?)?|n(?:u(?:l)?)?")


def _strip_fence(answer: str) -> str:
    if answer.startswith("```"):
        answer = answer[_FENCE_OPEN.match(answer).end():].strip()
        if answer.endswith("```"):
            answer = answer[:-3].rstrip()
    return answer


def _is_cut(answer: str, exc: json.JSONDecodeError) -> bool:
    """Did the JSON stop mid-way (truncation) rather than go wrong (an error inside the text)?"""
    if exc.msg.startswith("Unterminated string"):
        return True
    rest = answer[exc.pos:]
    if exc.msg.startswith("Invalid \\uXXXX escape"):
        # exc.pos is at the "u"; cut when the hex digits run off the end (`\u12<end>`)
        return len(rest) < 5 and all(c in "0123456789abcdefABCDEF" for c in rest[1:])
    return rest == "" or _CUT_TOKEN.fullmatch(rest) is not None


def parse_completion(completion: Any) -> ParseResult:
    """Parse one completion (string or chat message list). Never raises."""
    try:
        return _parse(completion_text(completion))
    except Exception as exc:  # a parser bug must not kill a training run; report it as a failure
        return ParseResult(None, INVALID_JSON, f"parser error: {type(exc).__name__}: {exc}")


def _parse(text: str) -> ParseResult:
    reasoning, answer, think_error = split_reasoning(text)
    if think_error:
        return ParseResult(None, think_error, "the reasoning block was never closed", reasoning)
    answer = _strip_fence(answer.strip())
    # The contract allows nothing before the think block either (split_reasoning skips it).
    open_at = text.find(THINK_OPEN)
    before_think = len(text[:open_at].strip()) if open_at > 0 else 0
    if not answer:
        if before_think:
            return ParseResult(None, TEXT_BEFORE_JSON, f"{before_think} chars before the think block, none after it", reasoning)
        return ParseResult(None, EMPTY, "no answer after the reasoning" if reasoning is not None else "", reasoning)
    # A top-level JSON array is a JSON value of the wrong shape, not prose before an object.
    start = 0 if answer.startswith("[") else answer.find("{")
    if start == -1:
        return ParseResult(None, NO_JSON, "no JSON object in the answer", reasoning)
    try:
        value, end = _decoder.raw_decode(answer, start)
    except json.JSONDecodeError as exc:
        reason = TRUNCATED if _is_cut(answer, exc) else INVALID_JSON
        return ParseResult(None, reason, exc.msg + f" at char {exc.pos}", reasoning)
    except RecursionError:
        return ParseResult(None, INVALID_JSON, "JSON nested too deeply", reasoning)
    try:
        graph = Graph.from_dict(value)
    except SchemaError as exc:
        return ParseResult(None, WRONG_SHAPE, str(exc), reasoning, json_parsed=True)
    if before_think:
        return ParseResult(None, TEXT_BEFORE_JSON, f"{before_think} chars before the think block", reasoning, True, graph)
    if start > 0:
        return ParseResult(None, TEXT_BEFORE_JSON, f"{start} chars before the JSON", reasoning, True, graph)
    if end < len(answer):
        return ParseResult(None, TRAILING_TEXT, f"{len(answer) - end} chars after the JSON", reasoning, True, graph)
    return ParseResult(graph, None, "", reasoning, json_parsed=True)
