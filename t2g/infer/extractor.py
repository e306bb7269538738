"""The Python API: a model loaded once, texts and types in, graphs out.

    from t2g import Extractor
    ex = Extractor("runs/my-run")          # or a .gguf, an HF folder, an adapter, "smollm2", a hub name
    graph = ex.extract("Tim Cook runs Apple.", ["person", "organization"], ["works for"])
    graph.entities, graph.relations        # a t2g.task.schema.Graph
    graph.entities[0].spans                # ((0, 8),): where its text occurs, offsets into the text given

    ex = Extractor("qwen2.5:1.5b", base_url="http://127.0.0.1:11434/v1")   # an OpenAI-compatible server
    rows = ex.extract_batch(texts, entity_types, relation_types)            # [Extraction], never raises per row

`Extractor.extract` raises `ExtractionError` when the model's answer holds no graph: the error carries
the raw completion, the parser's reason (`t2g.task.parsing`: no_json, truncated, ...) or
`backend_error`, and its detail. `extract_batch` and `run` never raise per row: each `Extraction` has
`graph` (None when none), `completion`, `error` and `detail`. Every graph is located: each entity's
`spans` (every occurrence, in order; () when the text does not hold it, which is also what makes it
ungrounded) and each relation's `head_spans` / `tail_spans` are (start, end) offsets into the text
given, found by `t2g.task.spans` (a chunked text's offsets too). `graph.to_dict(spans=True)` writes
them as output rows do. The models `Extractor` takes are those of
`t2g.infer.resolve`; its keywords are the flags of `t2g extract` (`t2g.infer.options`: the runtime,
decoding, batching, chunking, and each runtime's own options, such as n_ctx for llama.cpp).
Decoding is greedy everywhere, so results are deterministic for a given runtime.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from t2g.infer.backends import NO_CONSTRAINED_HF, BackendError, Request
from t2g.infer.options import runtime_options
from t2g.infer.resolve import SMOLLM2, ModelSpec, resolve_model
from t2g.infer.runner import Extraction, Runner, make_request, progress_bar
from t2g.task.schema import Graph


class ExtractionError(RuntimeError):
    """No graph for a text. `reason`: the parser's reason, `backend_error` or `chunk_failed`; `detail`:
    its explanation; `completion`: the raw model output; `result`: the whole `Extraction` (for a chunked
    text its `graph` merges the chunks that did parse)."""

    def __init__(self, result: Extraction):
        self.result = result
        self.reason, self.detail, self.completion = result.error, result.detail, result.completion
        shown = result.completion if len(result.completion) <= 200 else result.completion[:200] + "..."
        super().__init__(f"no graph ({result.error}{': ' + result.detail if result.detail else ''}); "
                         f"the model answered {shown!r}")


class Extractor:
    """A model loaded once (see the module docstring); `close()` or a `with` block frees what it holds."""

    def __init__(self, model: str = SMOLLM2, *, runtime: str = "auto", constrained: bool = False,
                 base_url: str | None = None, base_model: str | None = None, reasoning: bool = False,
                 max_new_tokens: int = 512, batch_size: int = 8, chunk_size: int | None = None,
                 chunk_overlap: int = 32, **options: Any):
        """`options`: the runtime's own (`t2g.infer.options.RuntimeOptions`); one of another runtime is an error."""
        self.spec = resolve_model(model, runtime, base_url, base_model)
        self.backend = open_backend(self.spec, options, base_url=base_url, batch_size=batch_size, constrained=constrained)
        self.runner = Runner(self.backend, max_new_tokens, constrained, reasoning, batch_size, chunk_size, chunk_overlap)

    def extract(self, text: str, entity_types: Sequence[str], relation_types: Sequence[str],
                descriptions: Mapping[str, str] | None = None) -> Graph:
        """The graph of one text; raises ExtractionError when the answer holds none."""
        [result] = self.extract_batch([text], entity_types, relation_types, descriptions)
        if not result.ok:
            raise ExtractionError(result)
        return result.graph

    def extract_batch(self, texts: str | Sequence[str], entity_types: Sequence[str], relation_types: Sequence[str],
                      descriptions: Mapping[str, str] | None = None, *, progress: bool = False) -> list[Extraction]:
        """One Extraction per text, in order; a failed text is an Extraction with `error` set, never an exception."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.run([make_request(t, entity_types, relation_types, descriptions) for t in texts], progress=progress)

    def run(self, requests: Sequence[Request], *, progress: bool = False, desc: str = "extract") -> list[Extraction]:
        """Requests with their own type lists each (`t2g.infer.runner.make_request`); a tqdm bar on a terminal
        when `progress`."""
        with progress_bar(len(requests), desc, enabled=progress) as bar:
            return self.runner.run(requests, progress=bar.update)

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close:
            close()

    def __enter__(self) -> "Extractor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_backend(spec: ModelSpec, options: Mapping[str, Any], *, base_url: str | None = None, batch_size: int = 8,
                 constrained: bool = False) -> Any:
    """The backend of a resolved model, its options checked against its runtime (None = unset); a
    constrained run on a runtime without constraints fails here, before a model loads."""
    if constrained and spec.runtime == "hf":
        raise BackendError(NO_CONSTRAINED_HF)
    checked = runtime_options(spec.runtime, options)
    if spec.runtime == "hf":
        from t2g.infer.hf_backend import HFBackend

        return HFBackend(spec.path, adapter=spec.adapter, gguf_file=spec.gguf_file, batch_size=batch_size, **checked)
    if spec.runtime == "llama.cpp":
        from t2g.infer.llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(spec.path, batch_size=batch_size, **checked)
    from t2g.infer.openai_backend import OpenAIBackend

    return OpenAIBackend(spec.path, base_url=base_url, **checked)


def extract(texts: str | Sequence[str], entity_types: Sequence[str], relation_types: Sequence[str],
            model: str = SMOLLM2, runtime: str = "auto", constrained: bool = False, *,
            descriptions: Mapping[str, str] | None = None, **settings: Any) -> list[Extraction]:
    """Load `model`, extract one graph per text, free the model; never raises per row. `settings`:
    the keywords of `Extractor`."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    requests = [make_request(t, entity_types, relation_types, descriptions) for t in texts]  # bad input before a load
    with Extractor(model, runtime=runtime, constrained=constrained, **settings) as extractor:
        return extractor.run(requests)
