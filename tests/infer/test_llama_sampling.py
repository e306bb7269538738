"""Batched sampling on llama.cpp (t2g.infer.llama_batched.BatchedSampler): transformers' filters, exact
draws, TRL's log-probs, stops and lengths, seeds, and greedy agreement.

The filters and draws are checked against transformers' own warpers without llama.cpp; the rest runs
on the tiny model converted once to an f32 GGUF (~10 s), with an f32 KV cache, one thread.
"""

from __future__ import annotations

import numpy as np
import pytest

from t2g.infer.llama_batched import _inverse_cdf, draw, kept_tokens


def hf_kept(z: np.ndarray, temperature: float, top_k: int, top_p: float, min_p: float | None) -> set[int]:
    """The tokens transformers' warpers keep, in the order its generate() applies them."""
    import torch
    from transformers.generation.logits_process import (MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)

    scores = torch.tensor(z[None, :], dtype=torch.float32)
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p:
        warpers.append(MinPLogitsWarper(min_p))
    for w in warpers:
        scores = w(None, scores)
    return set(torch.isfinite(scores[0]).nonzero().flatten().tolist())


@pytest.mark.parametrize("vocab,sharp", [(50, 1.0), (5000, 4.0), (5000, 0.3)])
@pytest.mark.parametrize("temperature,top_k,top_p,min_p", [
    (1.0, 0, 1.0, None), (0.7, 10, 1.0, None), (1.0, 0, 0.9, None), (1.3, 0, 0.5, None), (1.0, 0, 1.0, 0.05),
    (0.8, 40, 0.95, 0.02), (1.0, 1, 1.0, None), (1.0, 0, 0.999, 0.3)])
def test_kept_tokens_are_transformers_warpers(vocab, sharp, temperature, top_k, top_p, min_p):
    """Vocabularies above 2k go through the partial sort (its fallback too, when the logits are flat)."""
    rng = np.random.default_rng(vocab + int(sharp * 10))
    for _ in range(5):
        z = (rng.standard_normal(vocab) * sharp).astype(np.float32)
        ids = kept_tokens(z / np.float32(temperature), top_k, top_p, min_p)
        ours = set(range(vocab)) if ids is None else set(ids.tolist())
        assert ours == hf_kept(z, temperature, top_k, top_p, min_p)


def test_draws_follow_the_filtered_distribution_and_logprobs_are_trls():
    import torch

    rng = np.random.default_rng(0)
    z = np.array([2.0, 1.5, 1.0, 0.2, -0.5, -3.0, 0.9, 1.4], dtype=np.float32)
    for temperature, top_k, top_p, min_p in ((1.0, 0, 1.0, None), (0.7, 4, 1.0, None), (1.0, 0, 0.8, None), (1.2, 0, 1.0, 0.3)):
        kept = sorted(hf_kept(z, temperature, top_k, top_p, min_p))
        p = np.exp(z[kept] / temperature)
        p /= p.sum()
        counts = np.zeros(len(z))
        reference = torch.log_softmax(torch.tensor(z) / temperature, -1).numpy()  # TRL: full vocabulary, no filter
        for u in rng.random(20000):
            token, logp = draw(z, u, temperature, top_k, top_p, min_p)
            counts[token] += 1
            assert abs(logp - reference[token]) < 1e-6
        assert set(np.flatnonzero(counts)) <= set(kept)
        assert np.abs(counts[kept] / counts.sum() - p).max() < 0.015, (temperature, top_k, top_p, min_p)


def test_inverse_cdf_never_picks_a_zero_weight_token():
    rng = np.random.default_rng(1)
    for _ in range(3000):
        w = rng.random(int(rng.integers(1, 1500)))
        w[rng.random(len(w)) < 0.5] = 0.0
        if not w.any():
            continue
        u = float(rng.choice([rng.random(), 0.0, np.nextafter(1.0, 0.0)]))
        j = _inverse_cdf(w, u)
        c = np.cumsum(w)
        assert w[j] > 0
        assert j == min(int(np.searchsorted(c, u * c[-1], side="right")), int(np.flatnonzero(w)[-1])) or \
            abs(c[j - 1] - u * c[-1]) < 1e-9 * c[-1]  # a draw exactly on a boundary may round to either side


# --- on llama.cpp --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_dir, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from llama_cpp import Llama

    from t2g.export.gguf import convert_hf_to_gguf
    from t2g.export.llama_cpp import LlamaCppNotFound, find_llama_cpp

    try:
        converter = find_llama_cpp()
    except LlamaCppNotFound as exc:
        pytest.skip(str(exc))
    path = tmp_path_factory.mktemp("gguf") / "tiny.f32.gguf"
    convert_hf_to_gguf(tiny_model_dir, path, "f32", converter)
    llm = Llama(model_path=str(path), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False, type_k=0, type_v=0)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def prompts(tiny_model_dir):
    from transformers import AutoTokenizer

    from t2g.task.prompts import build_messages

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = ["Tim Cook is the CEO of Apple.", "Paris is in France.", "Angela Merkel met Emmanuel Macron in Berlin."]
    ids = [tok.apply_chat_template(build_messages(t, ["person", "location"], ["works for"], reasoning=False),
                                   add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] for t in texts]
    return ids, [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]


def test_top_k_1_and_a_tiny_temperature_sample_the_greedy_completion(tiny_llm, prompts):
    from t2g.infer.llama_batched import BatchedGreedy, BatchedSampler

    ids, stops = prompts
    greedy = BatchedGreedy(tiny_llm)
    sampler = BatchedSampler(tiny_llm)
    try:
        expected = greedy.run(ids, [24] * len(ids))
        for kwargs in ({"top_k": 1}, {"temperature": 1e-4}):
            rows = sampler.sample(ids, 1, max_new_tokens=24, stop_ids=stops, seed=3, **kwargs)
            got = [r[:-1] if r[-1] in stops else r for r, _ in rows]
            assert got == expected, kwargs
        # n rows of one prompt, each in its own KV stream copied from the prompt's: the same greedy tokens
        rows = sampler.sample(ids, 3, max_new_tokens=24, stop_ids=stops, top_k=1)
        for g, want in enumerate(expected):
            for ids_row, _ in rows[3 * g:3 * g + 3]:
                assert (ids_row[:-1] if ids_row[-1] in stops else ids_row) == want
    finally:
        greedy.close()
        sampler.close()


def test_seeded_rows_stop_tokens_and_length_cap(tiny_llm, prompts):
    from t2g.infer.llama_batched import BatchedSampler

    ids, _ = prompts
    sampler = BatchedSampler(tiny_llm)
    try:
        free = sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 1))
        assert len(free) == 12 and all(len(r) == len(lp) == 12 for r, lp in free)
        assert free == sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 1))  # the same seed, the same rows
        other = sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 2))
        assert [r for r, _ in other] != [r for r, _ in free]
        assert len({tuple(r) for r, _ in free[:4]}) > 1  # a group's rows differ from each other
        # A stop token ends a row right after it (kept as its last id, as generate keeps the EOS); every
        # row's draws are its own, so the rows equal the free run cut at their first stop token.
        stop = free[0][0][3]
        cut = sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 1), stop_ids=[stop])
        for (want, want_lp), (row, lp) in zip(free, cut):
            end = want.index(stop) + 1 if stop in want else len(want)
            assert row == want[:end]
            assert np.allclose(lp, want_lp[:end], atol=1e-5)
        assert cut[0][0][-1] == stop and len(cut[0][0]) == 4
        # one token is the least a row gets, even when the first token is the stop
        one = sampler.sample(ids[:1], 2, max_new_tokens=1, seed=0)
        assert [len(r) for r, _ in one] == [1, 1]
    finally:
        sampler.close()


def test_first_tokens_follow_the_softmax_and_logprobs_match_teacher_forcing(tiny_llm, prompts):
    from t2g.infer.llama_batched import BatchedSampler

    ids, _ = prompts
    sampler = BatchedSampler(tiny_llm)
    try:
        z = sampler.logits(ids[0])[-1].astype(np.float64)
        temperature, top_k = 0.05, 4  # the tiny model's logits are flat: sharpen them to a few tokens
        kept = np.argsort(-z)[:top_k]
        p = np.exp((z[kept] - z.max()) / temperature)
        p /= p.sum()
        firsts = [r[0] for seed in range(8) for r, _ in sampler.sample(ids[:1], 250, max_new_tokens=1, seed=seed,
                                                                     temperature=temperature, top_k=top_k)]
        freq = np.array([firsts.count(int(t)) for t in kept]) / len(firsts)
        assert sum(freq) == 1.0
        assert np.abs(freq - p).max() < 0.04, (freq, p)
        # each sampled token's log-prob is log_softmax(logits / T) of the same sequence, teacher-forced
        rows = sampler.sample(ids, 2, max_new_tokens=10, seed=5, temperature=0.9)
        worst = 0.0
        for k, (row, lps) in enumerate(rows):
            prompt = ids[k // 2]
            full = sampler.logits(prompt + row[:-1]).astype(np.float64)[len(prompt) - 1:] / 0.9
            ref = full[np.arange(len(row)), row] - np.logaddexp.reduce(full, axis=-1)
            worst = max(worst, float(np.abs(np.array(lps) - ref).max()))
        assert worst < 1e-4, worst
    finally:
        sampler.close()


def test_rows_that_outlive_others_move_to_low_streams_and_decode_on_from_the_same_cache(tiny_llm, prompts):
    """Rows finish at different steps; the ones still going are moved onto streams 0..k-1 and decoded in
    stream order (one llama.cpp pass), and their tokens' log-probs still match teacher forcing."""
    from t2g.infer.llama_batched import BatchedSampler

    ids, _ = prompts
    sampler = BatchedSampler(tiny_llm)
    decoded: list[list[int]] = []
    decode = sampler._decode

    def spy(entries, pick):
        decoded.append([seq for seq, *_ in entries])
        return decode(entries, pick)

    sampler._decode = spy
    try:
        free = sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 1))
        # stop at tokens that early rows hold, so that rows end at several different steps
        stops = sorted({row[k] for k, (row, _) in zip((1, 3, 5, 7), free[::3])})
        decoded.clear()
        rows = sampler.sample(ids, 4, max_new_tokens=12, seed=(7, 1), stop_ids=stops)
        lengths = [len(r) for r, _ in rows]
        assert len(set(lengths)) > 2 and max(lengths) == 12, lengths
        steps = [seqs for seqs in decoded if len(seqs) < len(rows)][1:]  # after the prefill passes
        assert steps and all(seqs == list(range(len(seqs))) for seqs in steps), steps
        assert any(len(a) > len(b) for a, b in zip(steps, steps[1:]))  # rows did finish mid-way
        for (want, _), (row, _) in zip(free, rows):  # the same draws: each row is the free one cut at a stop
            end = next((i + 1 for i, t in enumerate(want) if t in stops), len(want))
            assert row == want[:end]
        worst = 0.0
        for k, (row, lps) in enumerate(rows):
            prompt = ids[k // 4]
            full = sampler.logits(prompt + row[:-1]).astype(np.float64)[len(prompt) - 1:]
            ref = full[np.arange(len(row)), row] - np.logaddexp.reduce(full, axis=-1)
            worst = max(worst, float(np.abs(np.array(lps) - ref).max()))
        assert worst < 1e-4, worst
    finally:
        sampler.close()


@pytest.mark.parametrize("kwargs,match", [
    ({"n": 0}, "completions per prompt"), ({"max_new_tokens": 0}, "never empty"), ({"temperature": 0.0}, "temperature"),
    ({"top_p": 0.0}, "top_p"), ({"min_p": 1.5}, "min_p"), ({"prompts": [[]]}, "empty"),
    ({"prompts": [[1, 10 ** 6]]}, "outside the model's vocabulary")])
def test_bad_settings_are_refused(tiny_llm, prompts, kwargs, match):
    from t2g.infer.llama_batched import BatchedSampler

    args = {"prompts": prompts[0][:1], "n": 2, "max_new_tokens": 4, **kwargs}
    sampler = BatchedSampler(tiny_llm)
    try:
        with pytest.raises(ValueError, match=match):
            sampler.sample(args.pop("prompts"), args.pop("n"), **args)
    finally:
        sampler.close()
