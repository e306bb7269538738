"""Inference: texts + types in, graphs out, through any backend, with the shared prompt and parser.

    from t2g.infer.extractor import extract
    [r] = extract(["Tim Cook runs Apple."], ["person", "organization"], ["works for"], model="smollm2")
    r.graph, r.completion, r.error   # Graph | None, the raw output, why there is no graph

`model` is one of
- `smollm2`: the embedded SmolLM2-135M-Instruct (its GGUF for llama.cpp, its HF folder for hf);
- a `.gguf` file (llama.cpp by default; `backend="hf"` dequantizes it through transformers);
- a folder: a merged HF model (`config.json`), a LoRA adapter (`adapter_config.json`, loaded on its
  base model and merged), or a training run directory (its final adapter, `grpo/adapter` else
  `sft/adapter`, on the base model recorded in the run's `config.json`);
- a hub name, for `hf` (from the local HF cache when offline), or the server's model name for
  `openai` (with `base_url`).

Texts longer than the context are cut into overlapping chunks (`t2g.infer.chunking`) and the chunk graphs
merged into one. Decoding is greedy everywhere, so results are deterministic for a given backend.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from t2g.infer.backends import BackendError, Generation, Request
from t2g.infer.chunking import chunk_text, merge_graphs
from t2g.task.parsing import parse_completion
from t2g.task.schema import Graph

BACKENDS = ("auto", "hf", "llama.cpp", "openai")
BACKEND_ERROR = "backend_error"  # the backend produced no completion (endpoint failed, prompt too long)
CHUNK_FAILED = "chunk_failed"  # a chunked text where some chunks gave no graph; `graph` merges the rest
SMOLLM2 = "smollm2"
# Run-directory subfolders that may hold the model to serve, most final first: a training run keeps
# each stage's final adapter in <run>/<stage>/adapter (t2g.train.runs), GRPO's being the final one.
RUN_SUBDIRS = ("grpo/adapter", "sft/adapter", "final", "merged", "adapter")
_TEMPLATE_MARGIN = 32  # tokens the chat template adds around the messages (role tags, BOS)


@dataclass(frozen=True)
class Extraction:
    """The answer for one text."""

    graph: Graph | None  # None when no completion honoured the output contract
    completion: str  # the raw model output (chunked texts: the chunks' outputs joined by blank lines)
    error: str | None = None  # a parser failure reason, BACKEND_ERROR or CHUNK_FAILED
    detail: str = ""
    chunks: int = 1
    chunk_completions: tuple[str, ...] = ()  # chunked texts: each chunk's raw output, in text order

    @property
    def ok(self) -> bool:
        return self.error is None


# --- model resolution -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    backend: str  # hf | llama.cpp | openai
    path: str  # HF folder or hub name, GGUF file, or the server's model name
    adapter: str | None = None  # LoRA adapter folder to load on `path`
    gguf_file: str | None = None  # hf backend on a GGUF: the file name inside `path`


def resolve_model(model: str, backend: str = "auto", base_url: str | None = None, base_model: str | None = None) -> ModelSpec:
    """Turn a model spec into (backend, what to load); errors say what to pass instead."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend={backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "openai" or (backend == "auto" and base_url):
        if not base_url:
            raise ValueError("--backend=openai needs --base_url (e.g. http://127.0.0.1:8000/v1)")
        return ModelSpec("openai", model)
    if model == SMOLLM2:
        from t2g.models import offline as assets

        if backend == "hf":
            return ModelSpec("hf", str(assets.smollm2_hf_dir()))
        return ModelSpec("llama.cpp", str(assets.smollm2_gguf_path()))
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ValueError(f"--model={model}: no such GGUF file")
        if backend == "hf":
            return ModelSpec("hf", str(path.parent), gguf_file=path.name)
        return ModelSpec("llama.cpp", str(path))
    if path.is_dir():
        return _resolve_dir(path, backend, base_model)
    if backend == "llama.cpp":
        raise ValueError(f"--model={model}: --backend=llama.cpp needs a .gguf file (or smollm2)")
    if path.exists() or model.startswith((".", "/", "~")):
        raise ValueError(f"--model={model}: no such folder or file")
    return ModelSpec("hf", model)  # a hub name


def _is_hf_model(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


def _resolve_dir(folder: Path, backend: str, base_model: str | None) -> ModelSpec:
    if backend == "llama.cpp":
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) != 1:
            raise ValueError(f"--model={folder}: --backend=llama.cpp needs a .gguf file; this folder has "
                             f"{len(ggufs)} ({', '.join(g.name for g in ggufs) or 'none'}): pass one")
        return ModelSpec("llama.cpp", str(ggufs[0]))
    for sub in ("",) + RUN_SUBDIRS:
        candidate = folder / sub if sub else folder
        if (candidate / "adapter_config.json").is_file():
            base = base_model or _recorded_base(folder) or _adapter_base(candidate)
            return ModelSpec("hf", resolve_model(_embedded(base), "hf").path, adapter=str(candidate))
        if _is_hf_model(candidate):
            return ModelSpec("hf", str(candidate))
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1 and backend == "auto":
        return ModelSpec("llama.cpp", str(ggufs[0]))
    raise ValueError(f"--model={folder}: found no model in it (looked for adapter_config.json or an HF config.json "
                     f"in it and in {', '.join(RUN_SUBDIRS)}, and for a single .gguf); point --model at the model folder")


def _recorded_base(run_dir: Path) -> str | None:
    """The base model a training run recorded in its config.json (a TrainConfig dump), if any."""
    config = run_dir / "config.json"
    if not config.is_file() or _is_hf_model(run_dir):
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    value = data.get("model") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _embedded(name: str) -> str:
    """Training's `embedded:smollm2` / `embedded:tiny` aliases, resolved the way training resolves them."""
    if not name.startswith("embedded:"):
        return name
    from t2g.models.names import resolve_model_name

    return resolve_model_name(name)


def _adapter_base(adapter_dir: Path) -> str:
    data = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = data.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir}/adapter_config.json names no base model; pass --base_model")
    return base


def load_backend(spec: ModelSpec, **options: Any):
    """Instantiate the backend for a resolved spec; `options` go to its constructor."""
    from t2g.infer import backends

    if spec.backend == "hf":
        return backends.HFBackend(spec.path, adapter=spec.adapter, gguf_file=spec.gguf_file, **options)
    if spec.backend == "llama.cpp":
        return backends.LlamaCppBackend(spec.path, **options)
    return backends.OpenAIBackend(spec.path, **options)


# --- extraction -----------------------------------------------------------------------------------


@dataclass
class Extractor:
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
        return [_combine(gens) for gens in per_request]

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


def _combine(gens: list[Generation]) -> Extraction:
    if len(gens) == 1:
        return _single(gens[0])
    parts = [_single(g) for g in gens]
    good = [p.graph for p in parts if p.graph is not None]
    failed = [f"chunk {k + 1}/{len(parts)}: {p.error} {p.detail}".rstrip() for k, p in enumerate(parts) if not p.ok]
    graph = merge_graphs(good) if good else None
    outputs = tuple(p.completion for p in parts)
    if not failed:
        return Extraction(graph, "\n\n".join(outputs), chunks=len(parts), chunk_completions=outputs)
    return Extraction(graph, "\n\n".join(outputs), CHUNK_FAILED, "; ".join(failed), len(parts), outputs)


def _single(gen: Generation) -> Extraction:
    if gen.error is not None:
        return Extraction(None, gen.completion, BACKEND_ERROR, gen.error)
    parsed = parse_completion(gen.completion)
    return Extraction(parsed.graph, gen.completion, parsed.error, parsed.detail)


def make_request(text: str, entity_types: Sequence[str], relation_types: Sequence[str],
                 descriptions: Mapping[str, str] | None = None) -> Request:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    return Request(text, tuple(entity_types), tuple(relation_types), tuple(sorted((descriptions or {}).items())))


def extract(
    texts: str | Sequence[str],
    entity_types: Sequence[str],
    relation_types: Sequence[str],
    model: str = SMOLLM2,
    backend: str = "auto",
    constrained: bool = False,
    *,
    descriptions: Mapping[str, str] | None = None,
    reasoning: bool = False,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    chunk_size: int | None = None,
    chunk_overlap: int = 32,
    base_url: str | None = None,
    base_model: str | None = None,
    **options: Any,
) -> list[Extraction]:
    """Extract one graph per text (see the module docstring for `model`); never raises per row.

    options go to the backend (see BACKEND_OPTIONS): hf (device, dtype, trust_remote_code),
    llama.cpp (n_ctx, n_threads, n_gpu_layers, extra_buffers, grammar_mode), openai (api_key_env,
    timeout, retries, backoff, concurrency, schema_style); one meant for another backend is an error.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    requests = [make_request(t, entity_types, relation_types, descriptions) for t in texts]
    spec = resolve_model(model, backend, base_url, base_model)
    backend_ = open_backend(spec, options, base_url=base_url, batch_size=batch_size, constrained=constrained)
    runner = Extractor(backend_, max_new_tokens, constrained, reasoning, batch_size, chunk_size, chunk_overlap)
    return runner.run(requests)


def open_backend(spec: ModelSpec, options: Mapping[str, Any], *, base_url: str | None = None, batch_size: int = 8,
                 constrained: bool = False):
    """`load_backend` with the options checked against the backend (None = unset) and the shared ones
    added; a constrained run on a backend without constraints fails here, before a model loads."""
    if constrained and spec.backend == "hf":
        raise BackendError("constrained decoding is not available with --backend=hf; use --backend=llama.cpp "
                           "(a GGUF, GBNF grammar) or --backend=openai (a server that takes a JSON schema)")
    checked = backend_options(spec.backend, options)
    if spec.backend == "openai":
        checked["base_url"] = base_url
    if spec.backend in ("hf", "llama.cpp"):
        checked["batch_size"] = batch_size
    return load_backend(spec, **checked)


class progress_bar:
    """A tqdm bar on stderr (off when stderr is not a terminal); `update(n, total)` fits Extractor.run."""

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


# Constructor options each backend takes, so that a flag meant for another backend is an error, not a no-op.
BACKEND_OPTIONS = {
    "hf": ("device", "dtype", "trust_remote_code"),
    "llama.cpp": ("n_ctx", "n_threads", "n_gpu_layers", "extra_buffers", "grammar_mode"),
    "openai": ("api_key_env", "timeout", "retries", "backoff", "concurrency", "schema_style"),
}


def backend_options(backend: str, given: Mapping[str, Any]) -> dict:
    """The options that were set (not None), checked against what `backend` takes."""
    options = {k: v for k, v in given.items() if v is not None}
    wrong = sorted(k for k in options if k not in BACKEND_OPTIONS[backend])
    if wrong:
        raise ValueError(f"--{wrong[0]} does not apply to --backend={backend} (its options: "
                         f"{', '.join('--' + o for o in BACKEND_OPTIONS[backend])})")
    return options
