"""Generation backends: chat messages in, raw completions out (one per request, in order).

Every backend renders the same messages (`t2g.task.prompts.build_messages`) and decodes greedily, so
the three give the same kind of answer and `t2g.infer.extractor` parses them all with the one parser.
A request that fails inside a backend (endpoint down, prompt over the context) becomes a
`Generation` with `error` set; the other requests of the batch go on.

- `HFBackend`: transformers (+ peft for adapters), batched greedy generation with left padding.
- `LlamaCppBackend`: llama-cpp-python on a GGUF file; constrained decoding through a GBNF grammar.
- `OpenAIBackend`: any OpenAI-compatible server through `t2g.infer.openai_client` (timeouts, retries);
  constrained decoding through `response_format` with a JSON schema.

Heavy libraries are imported inside the constructors, so importing this module is free.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from t2g.task.constrained import gbnf_grammar, response_format
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


def _cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# --- HF transformers ------------------------------------------------------------------------------


class HFBackend:
    """transformers on a local folder or hub name; an adapter is loaded on its base and merged."""

    name = "hf"

    def __init__(self, path: str, *, adapter: str | None = None, gguf_file: str | None = None,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        torch_dtype = _torch_dtype(dtype, self.device)
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs)
            tok_source = adapter if adapter and _has_tokenizer(adapter) else path
            self.tokenizer = AutoTokenizer.from_pretrained(tok_source, **(kwargs if tok_source == path else {}))
        except OSError as exc:
            raise BackendError(f"cannot load HF model {path!r}: {exc}. Give a local folder with config.json, "
                               "a .gguf file, a run directory, or a hub name already in the HF cache") from None
        if adapter:
            from peft import PeftModel

            # Merged once here: generation is then as fast as with a merged export.
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # decoder-only batching: prompts must end at the same column
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, batch: Sequence[list[dict[str, str]]]) -> list[str]:
        return [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]

    def generate(self, requests: Sequence[Request], *, max_new_tokens: int, constrained: bool = False,
                 reasoning: bool = False) -> list[Generation]:
        if constrained:
            raise BackendError("constrained decoding is not available with --backend=hf; use --backend=llama.cpp "
                               "(a GGUF, GBNF grammar) or --backend=openai (a server that takes a JSON schema)")
        out: list[Generation] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[i:i + self.batch_size], max_new_tokens, reasoning))
        return out

    def _generate_batch(self, requests: Sequence[Request], max_new_tokens: int, reasoning: bool) -> list[Generation]:
        import torch

        prompts = self._render([r.messages(reasoning) for r in requests])
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        config = self.model.generation_config
        with torch.inference_mode():
            ids = self.model.generate(
                **enc, do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=config.eos_token_id or self.tokenizer.eos_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1]:]
        return [Generation(text) for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _torch_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # fp32 on CPU: bf16 matmuls are slow on most CPUs and change greedy outputs.
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if dtype not in table:
        raise BackendError(f"--dtype={dtype!r}: use auto, bf16, fp16 or fp32")
    return table[dtype]


def _has_tokenizer(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("tokenizer.json", "tokenizer_config.json"))


# --- llama.cpp ------------------------------------------------------------------------------------


class LlamaCppBackend:
    """llama-cpp-python on a GGUF; the chat template comes from the GGUF's own metadata."""

    name = "llama.cpp"

    def __init__(self, path: str, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = -1,
                 extra_buffers: bool = False, grammar_mode: str = "argmax_first", batch_size: int = 1):
        if batch_size < 1:
            raise BackendError(f"--batch_size={batch_size}: give 1 or more")
        if grammar_mode not in ("argmax_first", "full"):
            raise BackendError(f"--grammar_mode={grammar_mode!r}: use argmax_first (fast, same tokens) or full")
        self.grammar_mode = grammar_mode
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the llama.cpp backend needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                               "(compiles llama.cpp, ~5 min), or use --backend=hf") from None
        if not os.path.isfile(path):
            raise BackendError(f"{path}: no such GGUF file")
        with _extra_buffer_types(extra_buffers):
            self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads or _cpu_threads(),
                             n_gpu_layers=n_gpu_layers, seed=0, verbose=False)
        self.context_length: int | None = n_ctx
        self._grammars: dict[tuple, Any] = {}
        # batch_size > 1: a batch's unconstrained requests are decoded together (t2g.infer.llama_batched),
        # which needs the chat prompt rendered here exactly as create_chat_completion renders it.
        self.batch_size = batch_size
        self._formatter: Any = None
        self._batched: Any = None

    def close(self) -> None:
        if self._batched is not None:
            self._batched.close()
            self._batched = None

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _grammar(self, request: Request):
        from llama_cpp import LlamaGrammar

        key = (request.entity_types, request.relation_types)
        if key not in self._grammars:
            self._grammars[key] = LlamaGrammar.from_string(gbnf_grammar(*key), verbose=False)
        return self._grammars[key]

    def generate(self, requests: Sequence[Request], *, max_new_tokens: int, constrained: bool = False,
                 reasoning: bool = False) -> list[Generation]:
        if constrained or self.batch_size == 1 or len(requests) < 2:
            return [self._one(r, max_new_tokens, constrained, reasoning) for r in requests]
        if self._formatter is None:
            self._formatter = _gguf_chat_formatter(self.llm)
        out: list[Generation] = []
        for start in range(0, len(requests), self.batch_size):
            out += self._together(requests[start:start + self.batch_size], max_new_tokens, reasoning)
        return out

    def _together(self, requests: Sequence[Request], max_new_tokens: int, reasoning: bool) -> list[Generation]:
        """Greedy, unconstrained, all requests in one batched decode; the same limits, stops and errors
        as `_one` (a prompt over the context fails alone)."""
        from t2g.infer.llama_batched import BatchedGreedy

        if self._batched is None:
            self._batched = BatchedGreedy(self.llm)
        n_ctx = self.llm.n_ctx()  # what `_one`'s create_chat_completion checks against
        results: list[Generation | None] = [None] * len(requests)
        prompts, stops, index = [], [], []
        for i, request in enumerate(requests):
            rendered = self._formatter(messages=request.messages(reasoning))
            tokens = self.llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
            if len(tokens) >= n_ctx:  # llama-cpp-python's own message, as `_one` returns it
                results[i] = Generation("", f"llama.cpp: Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
                continue
            prompts.append(tokens)
            stops.append([rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop or []))
            index.append(i)
        limits = [min(max_new_tokens, n_ctx - len(p)) for p in prompts]
        try:
            completions = self._batched.run(prompts, limits)
        except RuntimeError as exc:  # llama_decode failed (e.g. out of memory): the batch's requests fail, the run goes on
            return [r or Generation("", f"llama.cpp (batch of {len(prompts)}): {exc}") for r in results]
        for i, prompt, stop, completion in zip(index, prompts, stops, completions):
            text = self.llm.detokenize(completion, prev_tokens=prompt).decode("utf-8", errors="ignore")
            cut = [text.index(s) for s in stop if s and s in text]
            results[i] = Generation(text[: min(cut)] if cut else text)
        return [r for r in results if r is not None]

    def _one(self, request: Request, max_new_tokens: int, constrained: bool, reasoning: bool) -> Generation:
        from llama_cpp import LogitsProcessorList

        guide = grammar = None
        if constrained and self.grammar_mode == "argmax_first":
            guide = GreedyGrammar(self.llm, gbnf_grammar(request.entity_types, request.relation_types))
        elif constrained:
            grammar = self._grammar(request)
        try:
            # temperature 0 = greedy in llama-cpp-python; consecutive calls reuse the shared prompt
            # prefix (system prompt, type lists) from the KV cache.
            out = self.llm.create_chat_completion(
                messages=request.messages(reasoning), temperature=0.0, repeat_penalty=1.0, max_tokens=max_new_tokens,
                seed=0, grammar=grammar, logits_processor=LogitsProcessorList([guide]) if guide else None,
            )
        except ValueError as exc:  # e.g. "Requested tokens exceed context window"
            return Generation("", f"llama.cpp: {exc}")
        finally:
            if guide:
                guide.close()
        return Generation(out["choices"][0]["message"]["content"] or "")


def _gguf_chat_formatter(llm: Any) -> Any:
    """The formatter `Llama.create_chat_completion` uses for a GGUF's own chat template (the template
    every t2g export carries). Other chat formats are refused: batch_size=1 decodes them one at a time."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    if llm.chat_handler is not None or llm.chat_format != "chat_template.default":
        raise BackendError(f"--batch_size>1 with llama.cpp needs the GGUF's own chat template (tokenizer.chat_template); "
                           f"this model uses chat format {llm.chat_format!r}: pass --batch_size=1")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(  # as Llama.__init__ builds its "chat_template.default" handler
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )


class GreedyGrammar:
    """A logits processor for greedy decoding under a GBNF grammar that checks the argmax first.

    llama-cpp-python's own `grammar=` runs the grammar over every candidate token (the whole
    vocabulary) at every step. Greedy decoding only needs the best allowed token: when the argmax is
    allowed (most steps) it is that token, and only otherwise is the whole vocabulary filtered. Same
    tokens as full filtering (tested; llama.cpp's own common sampler does the same); the speed of
    both is measured by `scripts/bench_eval.py --full_grammar`. One instance per generation;
    `close()` frees it.
    """

    def __init__(self, llm: Any, grammar: str):
        import llama_cpp
        from llama_cpp._internals import LlamaTokenDataArray

        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
        if not self._sampler:
            raise ValueError("llama.cpp rejected the grammar (see t2g.task.constrained)")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._full = LlamaTokenDataArray(n_vocab=llm.n_vocab())
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._started:  # exactly one token was chosen since the last call: advance the grammar
            self._lib.llama_sampler_accept(self._sampler, int(input_ids[-1]))
        self._started = True
        if self.allowed(int(np.argmax(scores))):
            return scores
        self._full.copy_logits(scores)
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._full.candidates))
        return self._full.candidates_data.logit.copy()  # filtered in place, unsorted: still indexed by id

    def allowed(self, token: int) -> bool:
        """Whether the grammar, in its current state, lets `token` come next."""
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._one_array))
        return self._one[0].logit != float("-inf")

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None


_params_lock = threading.Lock()


@contextlib.contextmanager
def _extra_buffer_types(enabled: bool) -> Iterator[None]:
    """Models loaded in the block use llama.cpp's extra CPU buffer types (repacking, AMX) or not.

    Off by default because with llama-cpp-python 0.3.36 on our AVX512+AMX CPUs they make the first
    multi-token `llama_decode` segfault (SmolLM2's Q4_1 GGUF); `scripts/serve_gguf.py` does the same
    for the server. `Llama()` has no argument for it, so the defaults it starts from are patched,
    process-wide for the duration of the load (hence the lock).
    """
    import llama_cpp.llama_cpp as lib

    with _params_lock:
        original = lib.llama_model_default_params

        def defaults():
            params = original()
            params.use_extra_bufts = enabled
            return params

        lib.llama_model_default_params = defaults
        try:
            yield
        finally:
            lib.llama_model_default_params = original


# --- OpenAI-compatible servers --------------------------------------------------------------------


class OpenAIBackend:
    """An OpenAI-compatible chat endpoint (vLLM, Ollama's /v1, llama.cpp's servers, hosted APIs).

    schema_style: how a constrained request sends its JSON schema; "json_schema" is the OpenAI form
    (OpenAI, vLLM, Ollama, llama.cpp's C++ server), "json_object" the llama-cpp-python server form.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 retries: int = 3, backoff: float = 1.0, concurrency: int = 1, schema_style: str = "json_schema",
                 sleep: Callable[[float], None] | None = None):
        from t2g.infer.openai_client import chat_client

        response_format(["x"], ["y"], schema_style)  # reject a bad style now, not on the first row
        extra = {"sleep": sleep} if sleep is not None else {}
        # a comma-separated base_url: a pool, each request to the endpoint with the fewest in flight
        self.client = chat_client(base_url, model, api_key_env=api_key_env, timeout=timeout, retries=retries,
                                  backoff=backoff, **extra)
        self.schema_style = schema_style
        self.concurrency = max(1, int(concurrency))
        self.context_length: int | None = None  # unknown: chunking by characters only when asked
        self.count_tokens = None

    def generate(self, requests: Sequence[Request], *, max_new_tokens: int, constrained: bool = False,
                 reasoning: bool = False) -> list[Generation]:
        def one(request: Request) -> Generation:
            return self._one(request, max_new_tokens, constrained, reasoning)

        if self.concurrency == 1:
            return [one(r) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, requests))

    def _one(self, request: Request, max_new_tokens: int, constrained: bool, reasoning: bool) -> Generation:
        from t2g.infer.openai_client import EndpointError

        fmt = response_format(request.entity_types, request.relation_types, self.schema_style) if constrained else None
        try:
            text = self.client.chat(request.messages(reasoning), temperature=0.0, max_tokens=max_new_tokens,
                                    response_format=fmt, extra={"seed": 0})
        except EndpointError as exc:
            return Generation("", str(exc))
        return Generation(text)
