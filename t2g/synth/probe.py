"""`--structured=auto`: ask the endpoint once, before the run, which structured output it takes.

One tiny request per candidate, in order, until one is accepted: `json_schema` (OpenAI, vLLM,
Ollama, llama.cpp's C++ server), `json_object` (llama-cpp-python's server, which answers 500
"Input should be 'text' or 'json_object'" to json_schema), `grammar` (llama.cpp), else `none`.
Each probe is the run's real request (its prompt, its schema or grammar) for a short made-up text,
cut to `PROBE_MAX_TOKENS` tokens. A candidate is refused when the endpoint answers with an error
that no retry can fix (`EndpointError.fatal`: a 4xx, or a body blaming the request). A `grammar`
answer must also start like the graph's JSON: servers that do not know the field ignore it.

An error a retry might fix (no connection, timeouts, a plain 503) is not a refusal: the endpoint
is down or overloaded, and guessing a mode from that would be wrong, so the run stops with a
message instead. The choice is one line on stderr and in the summary (`structured`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from t2g.data.canonical import DataError
from t2g.infer.openai_client import INVALID_REQUEST_MARKERS, EndpointError, EndpointPool, OpenAIChatClient
from t2g.synth import teacher

PROBE_TEXT = "Ada Lovelace worked with Charles Babbage in London."
PROBE_MAX_TOKENS = 8
CANDIDATES = ("json_schema", "json_object", "grammar")  # the order of preference; then none
_WHY_CHARS = 160


@dataclass(frozen=True)
class Choice:
    mode: str
    why: str

    def line(self) -> str:
        return f"t2g generate: --structured=auto chose {self.mode} ({self.why})"


def choose(client: OpenAIChatClient | EndpointPool, entity_types: Sequence[str] | None,
           relation_types: Sequence[str] | None, ground_spans: bool = False, prefer: str | None = None) -> Choice:
    """The first mode the endpoint accepts; `prefer` (the mode of answers already cached) goes first."""
    if prefer == "none" and not ground_spans:
        return Choice("none", "the answers already cached were asked with none")
    order = [prefer, *(m for m in CANDIDATES if m != prefer)] if prefer in CANDIDATES else list(CANDIDATES)
    messages = teacher.extraction_messages(PROBE_TEXT, entity_types, relation_types)
    spans = teacher.candidate_spans(PROBE_TEXT) if ground_spans else None
    refusals: list[str] = []
    for mode in order:
        request = teacher.structured_request(mode, entity_types, relation_types, spans)
        try:
            resp = client.complete(messages, temperature=0.0, max_tokens=PROBE_MAX_TOKENS, **request)
        except EndpointError as exc:
            if not exc.fatal:
                raise DataError(f"--structured=auto could not probe the endpoint: {exc}. Is the server up? "
                                f"(or give --structured {'|'.join(teacher.MODES)} to skip the probe)") from None
            refusals.append(f"the server refused {mode}: {_why(exc)}")
            continue
        if mode == "grammar" and not resp.content.lstrip().startswith("{"):
            refusals.append(f"the server ignored grammar (the answer began {_short(resp.content)!r})")
            continue
        return Choice(mode, "; ".join(refusals) or f"the server accepted {mode}")
    if ground_spans:
        raise DataError(f"--ground_spans needs structured output, but --structured=auto found none that the "
                        f"server accepts ({'; '.join(refusals)}): give --structured json_schema, json_object "
                        "or grammar, or drop --ground_spans")
    return Choice("none", "; ".join(refusals))


def _why(exc: EndpointError) -> str:
    """`HTTP 500: ...` with the words that blame the request, which may come late in a long body."""
    text = re.sub(r"(?:\\n|\s)+", " ", exc.detail).strip()  # a JSON body writes a newline as \n
    lower = text.lower()
    at = next((lower.find(m) for m in INVALID_REQUEST_MARKERS if m in lower), -1)  # the most telling first
    if at + 100 <= _WHY_CHARS:  # none, or it fits
        return _short(text)
    return f"{text.split(':')[0]}: ...{_short(text[max(0, at - 20):])}"


def _short(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _WHY_CHARS else text[:_WHY_CHARS] + "..."
