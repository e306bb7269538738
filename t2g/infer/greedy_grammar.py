"""Greedy decoding under a GBNF grammar that checks the argmax first (a llama-cpp-python logits processor).

llama-cpp-python's own `grammar=` runs the grammar over every candidate token (the whole vocabulary)
at every step. Greedy decoding only needs the best allowed token: when the argmax is allowed (most
steps) it is that token, and only otherwise is the whole vocabulary filtered. Same tokens as full
filtering (tested; llama.cpp's own common sampler does the same); the speed of both is measured by
`scripts/bench_eval.py --full_grammar`.
"""

from __future__ import annotations

import ctypes
from typing import Any


class GreedyGrammar:
    """The logits processor; one instance per generation, `close()` frees it."""

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
