"""What every runtime's backend shares: the request, the generation and the set-up error.

A backend is one runtime's loaded model (`hf_backend.HFBackend`, `llama_cpp_backend.LlamaCppBackend`,
`openai_backend.OpenAIBackend`) behind one interface:

    generate(requests, *, max_new_tokens, constrained=False, reasoning=False) -> [Generation]
    context_length   tokens the model sees at once (None: unknown, texts are not cut unless asked)
    count_tokens     text -> its number of tokens (None: chunk sizes count characters)

Every backend renders the same messages (`t2g.task.prompts.build_messages`) and decodes greedily, so
the three give the same kind of answer and `t2g.infer.runner` parses them all with the one parser.
A request that fails inside a backend (endpoint down, prompt over the context) becomes a
`Generation` with `error` set; the other requests of the batch go on. Heavy libraries are imported
inside the backends' constructors, so importing these modules is free; `t2g.infer.extractor.open_backend`
opens one.
"""

from __future__ import annotations

from dataclasses import dataclass

from t2g.task.prompts import build_messages


@dataclass(frozen=True)
class Request:
    """One extraction request: a text (or one chunk of it) and the types to extract."""

    text: str
    entity_types: tuple[str, ...]
    relation_types: tuple[str, ...]
    descriptions: tuple[tuple[str, str], ...] = ()  # (type, description) pairs; a tuple to stay hashable

    def messages(self, reasoning: bool = False) -> list[dict[str, str]]:
        return build_messages(self.text, self.entity_types, self.relation_types, dict(self.descriptions) or None, reasoning)


@dataclass(frozen=True)
class Generation:
    completion: str  # the raw model output ("" when the backend failed)
    error: str | None = None  # why the backend produced nothing, for humans


class BackendError(RuntimeError):
    """A backend cannot be set up (missing package, model not found); the message says what to do."""


NO_CONSTRAINED_HF = ("constrained decoding is not available with --runtime=hf; use --runtime=llama.cpp "
                     "(a GGUF, GBNF grammar) or --runtime=openai (a server that takes a JSON schema)")
