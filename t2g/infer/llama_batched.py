"""Greedy decoding and sampling of several prompts at once on one llama.cpp model.

llama-cpp-python's `Llama` decodes one sequence at a time: every step multiplies the weights by one
token's activations, which uses llama.cpp's CPU matrix kernels far worse than a prompt does (many
tokens per call). Decoding N sequences in one `llama_decode` call gives the kernels N tokens a step.
This module drives llama.cpp's batch API directly: one KV sequence (its own stream) per row, the
prompts' shared prefix (system prompt and type lists) evaluated once and copied to the others, then
one token per unfinished sequence per step. As sequences finish, the ones still going are moved to the
lowest KV streams and decoded in stream order (`_compact`): with one KV stream per sequence llama.cpp
computes a batch in one pass only while its sequence ids are consecutive and ascending, and splits it
into a pass per run otherwise (8 rows on streams 1, 3, ..., 15 took 116 ms a step on SmolLM2, eight
passes of one row; on streams 0-7, 39 ms), so a batch whose rows finish at different times would decode
its tail in as many passes as it has runs of consecutive streams.

`BatchedGreedy`: plain greedy decoding, the same tokens as `Llama.create_chat_completion(temperature=0)`
except where two tokens are nearly tied and the other float summation order of a batched step flips the
choice (tests compare the two; `scripts/bench_eval.py --gguf` times both and counts identical
completions). Grammar-constrained decoding stays one sequence at a time.

`BatchedSampler`: n sampled completions of each prompt (GRPO's groups), with transformers' sampling
(temperature, top_k, top_p, min_p in that order) drawn in numpy from a seeded generator, and each sampled
token's log-prob under the full-vocabulary softmax of logits / temperature (what TRL computes). Each
prompt is evaluated once and its KV stream copied to its n rows. Both can decode with a LoRA adapter
GGUF set on their context (`load_adapter`), replaced without reloading the model.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Callable, Sequence

import numpy as np

MAX_SEQUENCES = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences one context can hold


class _BatchedContext:
    """A context of its own on a loaded `llama_cpp.Llama` (weights shared, context settings copied), one
    KV stream per sequence, grown on demand, and optionally a LoRA adapter set on it."""

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
        self._adapter: Any = None
        self._adapter_hook = False

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        self._free_context()
        self._free_adapter()

    def _free_context(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None

    def _free_adapter(self) -> None:
        if self._adapter is not None:
            if self._ctx is not None:  # the context must not keep a pointer to a freed adapter
                self._lib.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
            self._lib.llama_adapter_lora_free(self._adapter)
            self._adapter = None

    def load_adapter(self, path: str | os.PathLike) -> None:
        """Decode with the LoRA adapter GGUF at `path` (scale 1) from now on, instead of the previous one.

        llama.cpp copies the tensors into buffers of its own: the file may be deleted once this returns.
        A file llama.cpp refuses raises ValueError (its reason is in llama.cpp's log on stderr)."""
        adapter = self._lib.llama_adapter_lora_init(self._llm._model.model, os.fsencode(path))
        if not adapter:
            raise ValueError(f"llama.cpp could not load the LoRA adapter {os.fspath(path)} "
                             "(llama.cpp's log says why on stderr when verbose)")
        previous, self._adapter = self._adapter, adapter
        if not self._adapter_hook:
            # llama.cpp frees an adapter with its model: free ours first, or the later free is a double free.
            self._llm._model._exit_stack.callback(self.close)
            self._adapter_hook = True
        self._apply_adapter()
        if previous is not None:  # only now: the context pointed at it until the line above
            self._lib.llama_adapter_lora_free(previous)

    def clear_adapter(self) -> None:
        """Decode with the base weights again."""
        self._free_adapter()

    def _apply_adapter(self) -> None:
        if self._ctx is None or self._adapter is None:
            return
        adapters = (self._lib.llama_adapter_lora_p_ctypes * 1)(self._adapter)
        if self._lib.llama_set_adapters_lora(self._ctx.ctx, adapters, 1, (ctypes.c_float * 1)(1.0)) != 0:
            raise ValueError("llama.cpp refused to set the LoRA adapter on its context")

    def _ensure(self, n_seq: int, cells: int) -> None:
        """A context with at least n_seq sequences of `cells` KV cells each (rounded up, kept for later calls)."""
        if self._ctx is not None and n_seq <= self._n_seq and cells <= self._cells:
            return
        from llama_cpp import _internals

        self._free_context()
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
        self._apply_adapter()  # adapters belong to a context: a new one needs it set again

    def _decode(self, entries: list[tuple[int, int, int, bool]], pick: Callable[[np.ndarray], Any]) -> dict[int, Any]:
        """Evaluate (seq, pos, token, want_next) entries in chunks of n_batch; `pick(logits)` of each entry
        that wants one, keyed by its index in `entries` (the logits array is only valid inside pick)."""
        nxt: dict[int, Any] = {}
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
                    nxt[start + k] = pick(logits)
        return nxt

    def _compact(self, stream: list[int], going: Sequence[int]) -> list[int]:
        """The rows of `going` moved onto streams 0 .. len(going)-1 (`stream` maps row -> KV stream, updated),
        in stream order: a batch that llama.cpp decodes in one pass.

        With a KV stream per sequence (kv_unified off), llama.cpp splits a batch into passes of consecutive
        ascending sequence ids (see the module's docstring). A moved row's keys and values are copied whole to
        its new stream (~5 ms for SmolLM2's 768 cells), so it decodes on from exactly the same cache; a row
        moves at most once per row that finished before it."""
        n = len(going)
        movers = sorted((r for r in going if stream[r] >= n), key=lambda r: stream[r])
        if movers:
            used = {stream[r] for r in going}
            free = [s for s in range(n) if s not in used]
            memory = self._ctx.memory
            for row, target in zip(movers, free):
                self._lib.llama_memory_seq_rm(memory, target, -1, -1)
                self._lib.llama_memory_seq_cp(memory, stream[row], target, -1, -1)
                self._lib.llama_memory_seq_rm(memory, stream[row], -1, -1)
                stream[row] = target
        return sorted(going, key=stream.__getitem__)

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """The logits after every token of one sequence (len(tokens), n_vocab), teacher-forced, with the
        adapter in use: what tests compare with transformers."""
        self._ensure(1, len(tokens))
        self._lib.llama_memory_clear(self._ctx.memory, False)
        got = self._decode([(0, pos, tok, True) for pos, tok in enumerate(tokens)], np.array)
        return np.stack([got[k] for k in range(len(tokens))])

    def _prefill(self, prompts: Sequence[Sequence[int]], seqs: Sequence[int], pick: Callable[[np.ndarray], Any]) -> list[Any]:
        """Clear the cache, evaluate prompts[i] into sequence seqs[i]; pick(logits) after each prompt's last token."""
        if any(len(p) == 0 for p in prompts):
            raise ValueError("an empty prompt cannot be decoded")
        # Shared prefix, but leave every prompt at least one token of its own (its logits start it).
        shared = 0
        shortest = min(len(p) for p in prompts)
        while shared < shortest - 1 and all(p[shared] == prompts[0][shared] for p in prompts):
            shared += 1
        if len(prompts) == 1:  # nothing to share; one prompt in one call, as one-at-a-time decoding evaluates it
            shared = 0  # (splitting it changes the float results: the test catches a flipped token)
        self._lib.llama_memory_clear(self._ctx.memory, False)
        if shared:
            self._decode([(seqs[0], pos, tok, False) for pos, tok in enumerate(prompts[0][:shared])], pick)
            for seq in seqs[1:]:  # across streams llama.cpp copies whole sequences only (p0, p1 = -1)
                self._lib.llama_memory_seq_cp(self._ctx.memory, seqs[0], seq, -1, -1)
        entries, owner = [], {}
        for i, (seq, prompt) in enumerate(zip(seqs, prompts)):
            for pos in range(shared, len(prompt)):
                if pos == len(prompt) - 1:
                    owner[len(entries)] = i
                entries.append((seq, pos, prompt[pos], pos == len(prompt) - 1))
        out: list[Any] = [None] * len(prompts)
        for k, value in self._decode(entries, pick).items():
            out[owner[k]] = value
        return out


def _argmax(logits: np.ndarray) -> int:
    return int(logits.argmax())  # first maximum, as llama.cpp's greedy sampler


class BatchedGreedy(_BatchedContext):
    """Greedy continuations of token prompts, decoded together on a context of their own.

    `llm` is a loaded `llama_cpp.Llama`; its model weights are shared, its context settings (threads,
    batch size, attention) copied. The cell pool grows on demand to what a call needs.
    """

    def run(self, prompts: Sequence[Sequence[int]], limits: Sequence[int]) -> list[list[int]]:
        """The greedy continuation of each prompt: at most limits[i] tokens, without the end-of-generation
        token that stopped it."""
        n = len(prompts)
        if n == 0:
            return []
        if any(len(p) == 0 for p in prompts):
            raise ValueError("an empty prompt cannot be decoded")
        self._ensure(n, max(len(p) + max(0, lim) for p, lim in zip(prompts, limits)))
        first = self._prefill(prompts, list(range(n)), _argmax)
        nxt = dict(enumerate(first))
        out: list[list[int]] = [[] for _ in prompts]
        stream = list(range(n))  # row -> KV stream (`_compact` moves the rows still going down)
        active = [row for row in range(n) if limits[row] > 0]
        while active:
            step = []
            for row in active:
                token = nxt[row]
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    continue
                out[row].append(token)
                if len(out[row]) < limits[row]:
                    step.append(row)
            if not step:
                break
            step = self._compact(stream, step)
            got = self._decode([(stream[row], len(prompts[row]) + len(out[row]) - 1, out[row][-1], True) for row in step],
                               _argmax)
            nxt = {row: got[k] for k, row in enumerate(step)}
            active = step
        return out


def kept_tokens(z: np.ndarray, top_k: int = 0, top_p: float = 1.0, min_p: float | None = None) -> np.ndarray | None:
    """The token ids that transformers' TopK, TopP and MinP warpers (in that order) keep of the scaled
    logits `z` (logits / temperature, one row); None when no filter is on (every token is kept)."""
    ids = None
    vocab = z.shape[0]
    if 0 < top_k < vocab:
        kth = np.partition(z, vocab - top_k)[vocab - top_k]
        ids = np.flatnonzero(z >= kth)  # transformers keeps every token tied with the k-th
    if top_p < 1.0:
        zi = z if ids is None else z[ids]
        p = np.exp(zi - zi.max())
        p /= p.sum()
        order = _descending(p, top_p)
        # transformers drops a token when the ascending cumulative mass up to it is <= 1 - top_p, i.e.
        # when the tokens ranked above it already hold >= top_p.
        above = np.cumsum(p[order]) - p[order]
        keep = order[above < top_p]
        ids = keep if ids is None else ids[keep]
    if min_p:
        ids = np.arange(vocab) if ids is None else ids
        # p >= min_p * p_max, in logits; the argmax survives every filter, so p_max is the global one
        ids = ids[z[ids] >= z.max() + np.log(min_p)]
    return ids


def _descending(p: np.ndarray, top_p: float) -> np.ndarray:
    """Indices of p by decreasing value, far enough to hold top_p of the mass (the rest never survives).
    A full sort of a 150k vocabulary per row and step would cost more than the decode itself, so the
    largest 1k, then 8k, then all are sorted until they hold top_p."""
    head = 1024
    while p.shape[0] > 2 * head:
        part = np.argpartition(-p, head)[:head]
        if p[part].sum() >= top_p:
            return part[np.argsort(-p[part], kind="stable")]
        head *= 8
    return np.argsort(-p, kind="stable")


def draw(logits: np.ndarray, u: float, temperature: float, top_k: int, top_p: float,
         min_p: float | None) -> tuple[int, float]:
    """One token from a logits row, by the uniform draw u in [0, 1), and its log-prob under the
    full-vocabulary log_softmax(logits / temperature) (TRL's definition: no filter applied).
    float32 as the logits and TRL's own log_softmax are; the sums in float64."""
    z = logits / np.float32(temperature)
    top = z.max()
    weights = np.exp(z - top)
    log_norm = float(top) + float(np.log(weights.sum(dtype=np.float64)))
    ids = kept_tokens(z, top_k, top_p, min_p)
    if ids is not None:
        weights = weights[ids]
    j = _inverse_cdf(weights, u)
    token = int(j if ids is None else ids[j])
    return token, float(z[token]) - log_norm


def _inverse_cdf(weights: np.ndarray, u: float, block: int = 256) -> int:
    """The first index whose cumulative weight exceeds u * total (never a zero-weight one). A cumsum
    over a whole vocabulary is the slowest part of a draw (it runs serially), so it is done over
    block sums first, then inside the one block the draw falls in."""
    w = weights.astype(np.float64)
    sums = np.cumsum(np.concatenate([w, np.zeros((-w.shape[0]) % block)]).reshape(-1, block).sum(1))
    target = u * sums[-1]
    b = int(np.searchsorted(sums, target, side="right"))
    if b >= len(sums):  # u * total rounded up to the total: the last token that has any weight
        return int(np.flatnonzero(w)[-1])
    inner = w[b * block:(b + 1) * block]  # holds weight: its cumulative sum passes the target
    j = int(np.searchsorted(np.cumsum(inner), target - (sums[b - 1] if b else 0.0), side="right"))
    if j >= len(inner) or inner[j] == 0:  # rounding between the two sums: the block's last weighted token
        j = int(np.flatnonzero(inner)[-1])
    return b * block + j


class BatchedSampler(_BatchedContext):
    """n sampled completions of each of several token prompts, decoded together on a context of their own.

    Every row has its own KV stream, as in BatchedGreedy, so that a row's logits do not depend on what
    else is in the batch beyond float rounding; a prompt is evaluated once, in its first row's stream,
    and that stream copied to the prompt's other rows.
    """

    def sample(self, prompts: Sequence[Sequence[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, min_p: float | None = None, stop_ids: Sequence[int] = (),
               seed: Any = 0) -> list[tuple[list[int], list[float]]]:
        """For each prompt, n rows in a row (prompt 0's n, then prompt 1's, ...): (completion token ids,
        log-prob of each). A row ends after a token in stop_ids (kept as its last token, as
        transformers' generate keeps the EOS) or after max_new_tokens; it is never empty. `seed` is
        anything numpy's default_rng takes; the same seed and inputs sample the same tokens."""
        _check_settings(n, max_new_tokens, temperature, top_p, min_p)
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise ValueError(f"prompt {i} is empty: an empty prompt cannot be decoded")
            bad = [t for t in prompt if not 0 <= t < self.n_vocab]
            if bad:
                raise ValueError(f"prompt {i} holds token id {bad[0]}, outside the model's vocabulary of {self.n_vocab}")
        rng = np.random.default_rng(seed)
        settings = (temperature, int(top_k or 0), float(top_p), min_p or None)
        stops = frozenset(int(s) for s in stop_ids)
        out: list[tuple[list[int], list[float]]] = []
        per_call = MAX_SEQUENCES // n  # whole groups per context
        for start in range(0, len(prompts), per_call):
            out += self._groups(prompts[start:start + per_call], n, max_new_tokens, settings, stops, rng)
        return out

    def _groups(self, prompts: Sequence[Sequence[int]], n: int, max_new: int, settings: tuple,
                stops: frozenset, rng: np.random.Generator) -> list[tuple[list[int], list[float]]]:
        rows = len(prompts) * n
        self._ensure(rows, max(len(p) for p in prompts) + max_new)
        heads = list(range(0, rows, n))
        first = self._prefill(prompts, heads, np.array)  # np.array copies: the logits buffer is reused
        for head in heads:
            for seq in range(head + 1, head + n):
                self._lib.llama_memory_seq_cp(self._ctx.memory, head, seq, -1, -1)
        ids: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        active = list(range(rows))
        logits = [first[r // n] for r in active]  # the n rows of a prompt draw their first token from one row
        # Row r's t-th token uses uniforms[r, t], whichever rows are still going: a row samples the same
        # tokens whether or not the others stopped early.
        uniforms = rng.random((rows, max_new))
        stream = list(range(rows))  # row -> KV stream (`_compact` moves the rows still going down)
        while active:
            going = []
            for k, r in enumerate(active):
                token, logp = draw(logits[k], uniforms[r, len(ids[r])], *settings)
                ids[r].append(token)
                logps[r].append(logp)
                if token not in stops and len(ids[r]) < max_new:
                    going.append(r)
            if not going:
                break
            going = self._compact(stream, going)
            got = self._decode([(stream[r], len(prompts[r // n]) + len(ids[r]) - 1, ids[r][-1], True) for r in going],
                               np.array)
            logits = [got[k] for k in range(len(going))]
            active = going
        return list(zip(ids, logps))


def _check_settings(n: int, max_new_tokens: int, temperature: float, top_p: float, min_p: float | None) -> None:
    if not 1 <= n <= MAX_SEQUENCES:
        raise ValueError(f"n={n}: give 1 to {MAX_SEQUENCES} completions per prompt (llama.cpp's sequence limit)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens}: give 1 or more (a completion is never empty)")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ValueError(f"temperature={temperature}: sampling needs a temperature > 0 (top_k=1 samples greedily)")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p}: give a value in (0, 1] (1 = off)")
    if min_p is not None and not 0 <= min_p <= 1:
        raise ValueError(f"min_p={min_p}: give a value in [0, 1] (0 or None = off)")
