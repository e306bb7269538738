"""Greedy decoding of several prompts at once on one llama.cpp model.

llama-cpp-python's `Llama` decodes one sequence at a time: every step multiplies the weights by one
token's activations, which uses llama.cpp's CPU matrix kernels far worse than a prompt does (many
tokens per call). Decoding N sequences in one `llama_decode` call gives the kernels N tokens a step.
This module drives llama.cpp's batch API directly: one KV sequence (its own stream) per prompt, the
prompts' shared prefix (system prompt and type lists) evaluated once and copied to the others, then
one token per unfinished sequence per step.

Only plain greedy decoding: the same tokens as `Llama.create_chat_completion(temperature=0)` except
where two tokens are nearly tied and the other float summation order of a batched step flips the
choice (tests compare the two; `scripts/bench_eval.py --gguf` times both and counts identical
completions). Grammar-constrained decoding stays one sequence at a time.
"""

from __future__ import annotations

import ctypes
from typing import Any, Sequence

import numpy as np


class BatchedGreedy:
    """Greedy continuations of token prompts, decoded together on a context of their own.

    `llm` is a loaded `llama_cpp.Llama`; its model weights are shared, its context settings (threads,
    batch size, attention) copied. The cell pool grows on demand to what a call needs.
    """

    def __init__(self, llm: Any):
        import llama_cpp

        self._lib = llama_cpp
        self._llm = llm
        self._vocab = llm._model.vocab
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_batch = int(llm.context_params.n_batch)
        self._ctx: Any = None
        self._cells = 0
        self._n_seq = 0
        self._batch: Any = None

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def _ensure(self, n_seq: int, cells: int) -> None:
        """A context with at least n_seq sequences of `cells` KV cells each (rounded up, kept for later calls)."""
        if self._ctx is not None and n_seq <= self._n_seq and cells <= self._cells:
            return
        from llama_cpp import _internals

        self.close()
        params = type(self._llm.context_params).from_buffer_copy(self._llm.context_params)
        self._n_seq = max(n_seq, self._n_seq)
        self._cells = -(-max(cells, self._cells) // 256) * 256
        params.n_seq_max = self._n_seq
        params.n_ctx = self._cells * self._n_seq
        # One KV stream per sequence: each attends over its own cells only, as when decoded alone (a
        # unified pool sums attention over masked cells of the others too, in another rounding order).
        params.kv_unified = False
        self._ctx = _internals.LlamaContext(model=self._llm._model, params=params, verbose=False)
        self._batch = self._lib.llama_batch_init(self.n_batch, 0, self._n_seq)

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> dict[int, int]:
        """Evaluate (seq, pos, token, want_next) entries in chunks of n_batch; the argmax next token of
        each entry that wants one, keyed by its index in `entries`."""
        nxt: dict[int, int] = {}
        batch = self._batch
        for start in range(0, len(entries), self.n_batch):
            chunk = entries[start:start + self.n_batch]
            for k, (seq, pos, token, want) in enumerate(chunk):
                batch.token[k] = token
                batch.pos[k] = pos
                batch.n_seq_id[k] = 1
                batch.seq_id[k][0] = seq
                batch.logits[k] = want
            batch.n_tokens = len(chunk)
            code = self._lib.llama_decode(self._ctx.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode returned {code} (batch of {len(chunk)} tokens, {self._cells} cells)")
            for k, (_, _, _, want) in enumerate(chunk):
                if want:
                    ptr = self._lib.llama_get_logits_ith(self._ctx.ctx, k)
                    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
                    nxt[start + k] = int(logits.argmax())  # first maximum, as llama.cpp's greedy sampler
        return nxt

    def run(self, prompts: Sequence[Sequence[int]], limits: Sequence[int]) -> list[list[int]]:
        """The greedy continuation of each prompt: at most limits[i] tokens, without the end-of-generation
        token that stopped it."""
        n = len(prompts)
        if n == 0:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("an empty prompt cannot be decoded")
        # Shared prefix, but leave every prompt at least one token of its own (its logits start it).
        shared = 0
        shortest = min(len(p) for p in prompts)
        while shared < shortest - 1 and all(p[shared] == prompts[0][shared] for p in prompts):
            shared += 1
        if n == 1:  # nothing to share; one prompt in one call, as one-at-a-time decoding evaluates it
            shared = 0  # (splitting it changes the float results: the test catches a flipped token)
        self._ensure(n, max(len(p) + max(0, lim) for p, lim in zip(prompts, limits)))
        self._lib.llama_memory_clear(self._ctx.memory, False)
        if shared:
            self._decode([(0, pos, tok, False) for pos, tok in enumerate(prompts[0][:shared])])
            for seq in range(1, n):  # across streams llama.cpp copies whole sequences only (p0, p1 = -1)
                self._lib.llama_memory_seq_cp(self._ctx.memory, 0, seq, -1, -1)
        entries, owner = [], {}
        for seq, prompt in enumerate(prompts):
            for pos in range(shared, len(prompt)):
                last = pos == len(prompt) - 1
                if last:
                    owner[len(entries)] = seq
                entries.append((seq, pos, prompt[pos], last))
        nxt = {owner[k]: tok for k, tok in self._decode(entries).items()}
        out: list[list[int]] = [[] for _ in prompts]
        active = [seq for seq in range(n) if limits[seq] > 0]
        while active:
            step = []
            for seq in active:
                token = nxt[seq]
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    continue
                out[seq].append(token)
                if len(out[seq]) < limits[seq]:
                    step.append(seq)
            if not step:
                break
            got = self._decode([(seq, len(prompts[seq]) + len(out[seq]) - 1, out[seq][-1], True) for seq in step])
            nxt = {seq: got[k] for k, seq in enumerate(step)}
            active = step
        return out
