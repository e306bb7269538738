"""Requests through a backend: chunking, batching, parsing, merging; one `Extraction` per request.

Texts longer than the context are cut into overlapping chunks (`t2g.infer.chunking`) and the chunk
graphs merged into one. Every completion goes through the task's one parser, and a failure is a
value (`Extraction.error`), never an exception: one bad row does not stop a batch. Every graph comes
back located (`t2g.task.schema.locate`): each entity's `spans` are offsets into the request's whole
text, a chunked one included, found by the same rule that decides grounding.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from t2g.infer.backends import Generation, Request
from t2g.infer.chunking import chunk_text, merge_graphs
from t2g.task.parsing import parse_completion
from t2g.task.schema import Graph, locate

BACKEND_ERROR = "backend_error"  # the backend produced no completion (endpoint failed, prompt too long)
CHUNK_FAILED = "chunk_failed"  # a chunked text where some chunks gave no graph; `graph` merges the rest
_TEMPLATE_MARGIN = 32  # tokens the chat template adds around the messages (role tags, BOS)


@dataclass(frozen=True)
class Extraction:
    """The answer for one text."""

    graph: Graph | None  # None when no completion honoured the output contract; else located in the text
    completion: str  # the raw model output (chunked texts: the chunks' outputs joined by blank lines)
    error: str | None = None  # a parser failure reason, BACKEND_ERROR or CHUNK_FAILED
    detail: str = ""
    chunks: int = 1
    chunk_completions: tuple[str, ...] = ()  # chunked texts: each chunk's raw output, in text order

    @property
    def ok(self) -> bool:
        return self.error is None


def make_request(text: str, entity_types: Sequence[str], relation_types: Sequence[str],
                 descriptions: Mapping[str, str] | None = None) -> Request:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    return Request(text, tuple(entity_types), tuple(relation_types), tuple(sorted((descriptions or {}).items())))


@dataclass
class Runner:
    """Runs requests through a backend: chunking, batching, parsing, merging."""

    backend: Any
    max_new_tokens: int = 512
    constrained: bool = False
    reasoning: bool = False
    batch_size: int = 8
    chunk_size: int | None = None  # tokens (hf, llama.cpp) or characters (openai); None = fit the context
    chunk_overlap: int = 32
    _overheads: dict = field(default_factory=dict, repr=False)

    def run(self, requests: Sequence[Request], progress: Callable[[int, int], None] | None = None) -> list[Extraction]:
        """One Extraction per request, in order. progress(n_done_now, n_jobs) after each batch (jobs = chunks)."""
        jobs = [(i, part) for i, r in enumerate(requests) for part in self._split(r)]
        # Similar lengths together: less padding in HF batches, llama.cpp batches that finish together.
        order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][1].text))
        generations: list[Generation | None] = [None] * len(jobs)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            outs = self.backend.generate([jobs[j][1] for j in batch], max_new_tokens=self.max_new_tokens,
                                         constrained=self.constrained, reasoning=self.reasoning)
            for j, gen in zip(batch, outs):
                generations[j] = gen
            if progress:
                progress(len(batch), len(jobs))
        per_request: list[list[Generation]] = [[] for _ in requests]
        for (i, _), gen in zip(jobs, generations):
            per_request[i].append(gen)
        return [_combine(request, gens) for request, gens in zip(requests, per_request)]

    def _split(self, request: Request) -> list[Request]:
        size, count = self._chunk_budget(request)
        if size is None:
            return [request]
        overlap = min(self.chunk_overlap, max(0, (size - 1) // 2))
        chunks = chunk_text(request.text, size, overlap, count)
        return [Request(c.text, request.entity_types, request.relation_types, request.descriptions) for c in chunks] or [request]

    def _chunk_budget(self, request: Request) -> tuple[int | None, Callable[[str], int]]:
        count = getattr(self.backend, "count_tokens", None)
        context = getattr(self.backend, "context_length", None)
        if count is None or context is None:
            return self.chunk_size, len  # characters; no chunking unless asked
        key = (request.entity_types, request.relation_types, request.descriptions)
        if key not in self._overheads:
            empty = Request("", *key).messages(self.reasoning)
            self._overheads[key] = sum(count(m["content"]) for m in empty) + _TEMPLATE_MARGIN
        budget = context - self.max_new_tokens - self._overheads[key]
        if budget < 16:
            raise ValueError(f"the context ({context} tokens) leaves no room for text: the prompt takes "
                             f"{self._overheads[key]} and --max_new_tokens={self.max_new_tokens}; raise --n_ctx "
                             "or lower --max_new_tokens")
        return (min(budget, self.chunk_size) if self.chunk_size else budget), count


def _combine(request: Request, gens: list[Generation]) -> Extraction:
    if len(gens) == 1:
        single = _single(gens[0])
        return single if single.graph is None else replace(single, graph=locate(single.graph, request.text))
    parts = [_single(g) for g in gens]
    good = [p.graph for p in parts if p.graph is not None]
    failed = [f"chunk {k + 1}/{len(parts)}: {p.error} {p.detail}".rstrip() for k, p in enumerate(parts) if not p.ok]
    # Located in the whole text, not in each chunk: offsets into the text the caller gave.
    graph = locate(merge_graphs(good), request.text) if good else None
    outputs = tuple(p.completion for p in parts)
    if not failed:
        return Extraction(graph, "\n\n".join(outputs), chunks=len(parts), chunk_completions=outputs)
    return Extraction(graph, "\n\n".join(outputs), CHUNK_FAILED, "; ".join(failed), len(parts), outputs)


def _single(gen: Generation) -> Extraction:
    if gen.error is not None:
        return Extraction(None, gen.completion, BACKEND_ERROR, gen.error)
    parsed = parse_completion(gen.completion)
    return Extraction(parsed.graph, gen.completion, parsed.error, parsed.detail)


class progress_bar:
    """A tqdm bar on stderr (off when stderr is not a terminal); `update(n, total)` fits Runner.run."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="request", file=sys.stderr, disable=None if enabled else True)

    def __enter__(self) -> "progress_bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()

    def update(self, n: int, total: int) -> None:
        if self.bar.total != total:  # chunking turned some texts into several requests
            self.bar.total = total
        self.bar.update(n)
