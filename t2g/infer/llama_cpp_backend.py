"""The llama.cpp runtime: llama-cpp-python on a GGUF; constrained decoding through a GBNF grammar.

The chat template comes from the GGUF's own metadata. With batch_size > 1 a batch's unconstrained
requests are decoded together (`t2g.infer.llama_batched`); constrained ones go one at a time, under
`t2g.infer.greedy_grammar` (or llama-cpp-python's own grammar with grammar_mode="full").
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator, Sequence

from t2g.infer.backends import BackendError, Generation, Request
from t2g.infer.options import GRAMMAR_MODES
from t2g.task.constrained import gbnf_grammar


def cpu_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class LlamaCppBackend:
    """llama-cpp-python on a GGUF file."""

    name = "llama.cpp"

    def __init__(self, path: str, *, n_ctx: int = 4096, n_threads: int | None = None, n_gpu_layers: int = -1,
                 extra_buffers: bool = False, grammar_mode: str = "argmax_first", batch_size: int = 1):
        if batch_size < 1:
            raise BackendError(f"--batch_size={batch_size}: give 1 or more")
        if grammar_mode not in GRAMMAR_MODES:
            raise BackendError(f"--grammar_mode={grammar_mode!r}: use argmax_first (fast, same tokens) or full")
        self.grammar_mode = grammar_mode
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError("the llama.cpp runtime needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' "
                               "(compiles llama.cpp, ~5 min), or use --runtime=hf") from None
        if not os.path.isfile(path):
            raise BackendError(f"{path}: no such GGUF file")
        with extra_buffer_types(extra_buffers):
            self.llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads or cpu_threads(),
                             n_gpu_layers=n_gpu_layers, seed=0, verbose=False)
        self.context_length: int | None = n_ctx
        self._grammars: dict[tuple, Any] = {}
        # Decoding a batch together needs the chat prompt rendered here exactly as create_chat_completion
        # renders it (the formatter), and a context of its own (BatchedGreedy); both are made on first use.
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

        from t2g.infer.greedy_grammar import GreedyGrammar

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


_params_lock = threading.Lock()


@contextlib.contextmanager
def extra_buffer_types(enabled: bool) -> Iterator[None]:
    """Models loaded in the block use llama.cpp's extra CPU buffer types (repacking, AMX) or not.

    Off by default because with llama-cpp-python 0.3.36 on our AVX512+AMX CPUs they make the first
    multi-token `llama_decode` segfault (SmolLM2's Q4_1 GGUF); `scripts/serve_gguf.py` runs the
    server inside this block for the same reason. `Llama()` has no argument for it, so the defaults
    it starts from are patched, process-wide for the duration of the block (hence the lock).
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
