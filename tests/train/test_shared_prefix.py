"""The shared-prefix GRPO loss (t2g.train.shared_prefix) against TRL's own computation.

On a GRPO-shaped batch (3 prompts of different lengths, left-padded; G=4 completions each of
different lengths, right-padded; rows ended early by EOS with tokens after it; one truncated row
fully masked), in fp32 with a LoRA whose B matrices are random (so every LoRA weight has a
gradient), on the model objects of both t2g backends (hf; unsloth, whose CPU backend is stock TRL:
in a subprocess, since unsloth must be imported before transformers), without and with gradient
checkpointing (use_reentrant False as t2g sets it, True as unsloth's CUDA trainer forces it):

- the per-token log-probs and entropies equal TRL's within LOGP_RTOL;
- the gradient of sum(logp * a) + 0.1 * sum(entropy * b) (random a, b) equals TRL's for every LoRA
  parameter within GRAD_RTOL of that parameter's largest gradient;

and the group-preserving shuffle keeps groups whole and follows torch's seed. `test_speed_on_a_conll04_batch`
measures (prints; asserts only the token count) forward+backward time on SmolLM2 for 4 prompts x 4
completions of CoNLL04 GRPO size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

# fp32. Per-token log-probs and entropies: |shared - TRL| <= LOGP_RTOL * max(1, |TRL|). On SmolLM2 (30 layers,
# |logp| up to ~23 on random tokens) TRL's own values move by 2.8e-5 (1.2e-6 relative) when the batch is only
# left-padded by 7 more columns; the shared computation differs from TRL's by less (1.7e-5, 1.3e-6 relative).
LOGP_RTOL = 1e-5
# fp32; per LoRA parameter, of its largest gradient. Within 1e-4 on AVX512 CPUs; on a 2-core AVX2-only EPYC, whose
# fp32 kernels sum in another order, SmolLM2's grouped case (no checkpointing) reached 1.55e-4 and 1.62e-4 (hf,
# unsloth): the bound covers float summation order, 3x the worst seen.
GRAD_RTOL = 3e-4
GC_MODES = ("off", "non-reentrant", "reentrant")
HERE = Path(__file__).resolve()
SUBPROCESS_ENV = dict(UNSLOTH_AUTO_INSTALL="0", UNSLOTH_LLAMA_CPP_OFFLINE="1", HF_HUB_OFFLINE="1",
                      TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


# ---------------------------------------------------------------------------------------------
# Building a model, a trainer and a batch


def load_model(model_dir: Path, backend: str):
    from t2g.train.config import TrainConfig
    from t2g.train.model_loading import load

    cfg = TrainConfig(model=str(model_dir), backend=backend, load_in_4bit=False, dtype="fp32",
                      gradient_checkpointing=True, lora_r=8, lora_alpha=16, seed=0)
    loaded = load(cfg)
    generator = torch.Generator().manual_seed(1)
    for name, param in loaded.model.named_parameters():
        if "lora_B" in name:  # B starts at zero: without this no A would get a gradient
            param.data.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return loaded


def make_trainer(loaded, tmp_dir: Path, batch_size: int = 12, grad_accum: int = 1, generations: int = 4):
    from datasets import Dataset
    from trl import GRPOConfig

    from t2g.train.shared_prefix import shared_prefix_trainer

    def reward(completions, **kwargs):
        return [0.0] * len(completions)

    args = GRPOConfig(output_dir=str(tmp_dir), per_device_train_batch_size=batch_size,
                      gradient_accumulation_steps=grad_accum, num_generations=generations, max_completion_length=16,
                      report_to="none", save_strategy="no", bf16=False, fp16=False, seed=0, logging_steps=1)
    return shared_prefix_trainer()(model=loaded.model, reward_funcs=[reward], args=args,
                                   train_dataset=Dataset.from_list([{"prompt": "a b c"}] * 16),
                                   processing_class=loaded.tokenizer)


def set_checkpointing(model, mode: str) -> None:
    base = model.get_base_model()
    if mode == "off":
        base.gradient_checkpointing_disable()
        return
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": mode == "reentrant"})
    base.enable_input_require_grads()  # reentrant checkpoints need an input that requires grad (t2g's hf loader does this)


def grpo_batch(vocab: int, pad: int, eos: int, prompt_lengths=(9, 14, 5), completion_width=12, generations=4,
               seed: int = 0, shuffle_rows: bool = False):
    """TRL's `cat(prompt, completion)` rows and mask for len(prompt_lengths) groups of `generations` rows."""
    g = torch.Generator().manual_seed(seed)
    special = {pad, eos}

    def tokens(n):
        t = torch.randint(0, vocab, (n,), generator=g)
        return torch.where(torch.isin(t, torch.tensor(sorted(special))), torch.full_like(t, 7), t)

    width = max(prompt_lengths)
    rows, masks = [], []
    for k, length in enumerate(prompt_lengths):
        prompt = tokens(length)
        for i in range(generations):
            completion = tokens(completion_width)
            valid = completion_width - (3 * i + k) % completion_width  # different lengths, one full row per group
            if i == 1:  # ended early by EOS; what follows it is junk the mask hides
                valid = 1 + (k + 2) % (completion_width - 1)
                completion[valid - 1] = eos
            if k == 2 and i == 3:  # truncated, masked out (mask_truncated_completions)
                valid = 0
            completion[valid:] = torch.where(torch.arange(completion_width - valid) % 2 == 0, pad, completion[valid:])
            rows.append(torch.cat([torch.full((width - length,), pad), prompt, completion]))
            masks.append(torch.cat([torch.zeros(width - length), torch.ones(length),
                                    (torch.arange(completion_width) < valid).float()]).long())
    input_ids, attention_mask = torch.stack(rows), torch.stack(masks)
    if shuffle_rows:  # TRL's row shuffle: groups mixed; rows must still find their prompt
        order = torch.randperm(len(rows), generator=g)
        input_ids, attention_mask = input_ids[order], attention_mask[order]
    return input_ids, attention_mask, completion_width


def plain_call(trainer, *args, **kwargs):
    from trl import GRPOTrainer

    return GRPOTrainer._get_per_token_logps_and_entropies(trainer, *args, **kwargs)


def lora_parameters(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def logps_and_grads(call, trainer, model, input_ids, attention_mask, keep, batch_size=None):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(input_ids.size(0), keep, generator=g), torch.randn(input_ids.size(0), keep, generator=g)
    logps, entropies, _ = call(trainer, model, input_ids, attention_mask, keep, batch_size=batch_size,
                               compute_entropy=True)
    loss = (logps * a).sum() + 0.1 * (entropies * b).sum()
    params = lora_parameters(model)
    for _, p in params:
        p.grad = None
    loss.backward()  # not autograd.grad: reentrant checkpoints only pass gradients to .grad
    return logps.detach(), entropies.detach(), {n: p.grad for n, p in params}


def compare(trainer, model, batch, batch_size=None, call=None) -> dict:
    """Largest differences between the shared-prefix computation (or `call`) and TRL's."""
    shared = call or (lambda t, *a, **k: t._get_per_token_logps_and_entropies(*a, **k))
    model.train()
    ref = logps_and_grads(plain_call, trainer, model, *batch, batch_size=batch_size)
    new = logps_and_grads(shared, trainer, model, *batch, batch_size=batch_size)
    grads = {}
    for name, g_ref in ref[2].items():
        g_new = new[2][name]
        if g_ref is None or g_new is None:
            grads[name] = float("inf") if (g_ref is None) != (g_new is None) else 0.0
            continue
        grads[name] = ((g_new - g_ref).abs().max() / g_ref.abs().max().clamp(min=1e-30)).item()
    def rel(a, b):
        return ((a - b).abs() / b.abs().clamp(min=1)).max().item()

    return {"logp": (new[0] - ref[0]).abs().max().item(), "entropy": (new[1] - ref[1]).abs().max().item(),
            "logp_rel": rel(new[0], ref[0]), "entropy_rel": rel(new[1], ref[1]),
            "grad_rel": max(grads.values()), "params": len(grads), "zero_grads": sum(
                1 for g in ref[2].values() if g is None or not g.abs().max() > 0)}


CASES = {"grouped": ({}, None), "shuffled": ({"shuffle_rows": True}, None), "chunked": ({}, 5)}
# SmolLM2 (one pass ~10-30 s on a shared CPU core): each checkpointing mode once, each case once
SMOLLM2_RUNS = (("off", "grouped"), ("non-reentrant", "shuffled"), ("reentrant", "chunked"))


def parity_report(model_dir: Path, backend: str, tmp_dir: Path, big: bool) -> dict:
    """Tiny model: every checkpointing mode x case (grouped rows, TRL-shuffled rows, chunked by
    batch_size); SmolLM2 (`big`): SMOLLM2_RUNS, with longer prompts."""
    loaded = load_model(model_dir, backend)
    trainer = make_trainer(loaded, tmp_dir)
    tok = loaded.tokenizer
    shape = dict(prompt_lengths=(23, 31, 14), completion_width=12) if big else {}
    from trl.trainer import utils as trl_utils

    report = {"attention": loaded.model.config._attn_implementation, "backend": loaded.backend,
              "logprob_head": trl_utils._ChunkedLogProbFunction.__qualname__}  # t2g's or unsloth's CPU routing
    for mode, case in SMOLLM2_RUNS if big else [(m, c) for m in GC_MODES for c in CASES]:
        set_checkpointing(loaded.model, mode)
        kwargs, batch_size = CASES[case]
        batch = grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id, seed=len(report), **shape, **kwargs)
        report[f"{mode}/{case}"] = compare(trainer, loaded.model, batch, batch_size=batch_size)
    report["fallbacks"] = trainer.shared_prefix_totals["fallback_calls"]
    set_checkpointing(loaded.model, "off")  # no_grad: a reentrant checkpoint would warn
    report["trl_padding_noise"] = padding_noise(trainer, loaded.model, batch, tok.pad_token_id)
    return report


def padding_noise(trainer, model, batch, pad: int, extra: int = 7) -> float:
    """How far TRL's own log-probs move when the rows are only left-padded `extra` columns more:
    the float noise the shared computation's differences are to be read against."""
    input_ids, mask, keep = batch
    more_ids = torch.cat([torch.full((input_ids.size(0), extra), pad), input_ids], 1)
    more_mask = torch.cat([torch.zeros(input_ids.size(0), extra, dtype=mask.dtype), mask], 1)
    with torch.no_grad():
        a = plain_call(trainer, model, input_ids, mask, keep)[0]
        b = plain_call(trainer, model, more_ids, more_mask, keep)[0]
    return (a - b).abs().max().item()


def unsloth_report(model_dir: Path, tmp_dir: Path, big: bool) -> dict:
    """parity_report for backend=unsloth, in a fresh process that imports unsloth first."""
    proc = subprocess.run([sys.executable, str(HERE), str(model_dir), str(tmp_dir), str(int(big))],
                          capture_output=True, text=True, timeout=900, env={**os.environ, **SUBPROCESS_ENV})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_parity(report: dict) -> None:
    print(json.dumps(report, indent=1))
    assert report["fallbacks"] == 0
    for key, r in report.items():
        if isinstance(r, dict):
            assert r["logp_rel"] <= LOGP_RTOL and r["entropy_rel"] <= LOGP_RTOL, (key, r)
            assert r["grad_rel"] <= GRAD_RTOL, (key, r)
            assert r["params"] > 0 and r["zero_grads"] == 0, (key, r)


# ---------------------------------------------------------------------------------------------
# Parity


@pytest.fixture
def one_thread():
    """One torch thread (the CPU is shared; oversubscribed threads make SmolLM2 passes several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_hf(tiny_model_dir, tmp_path_factory):
    loaded = load_model(tiny_model_dir, "hf")
    return loaded, make_trainer(loaded, tmp_path_factory.mktemp("trainer"))


def test_parity_tiny_hf(tiny_model_dir, tmp_path):
    assert_parity(parity_report(tiny_model_dir, "hf", tmp_path, big=False))


def test_parity_tiny_unsloth_cpu(tiny_model_dir, tmp_path):
    report = unsloth_report(tiny_model_dir, tmp_path, big=False)
    assert report["backend"] == "unsloth" and "patch_trl_fused_lm_head" in report["logprob_head"]  # unsloth's CPU head
    assert_parity(report)


@pytest.mark.slow
def test_parity_smollm2_hf(smollm2_hf_dir, tmp_path, one_thread):
    assert_parity(parity_report(smollm2_hf_dir, "hf", tmp_path, big=True))


@pytest.mark.slow
def test_parity_smollm2_unsloth_cpu(smollm2_hf_dir, tmp_path):
    assert_parity(unsloth_report(smollm2_hf_dir, tmp_path, big=True))


def test_grpo_loss_and_its_gradients_equal_trl(tiny_hf):
    """Through TRL's own compute_loss (clipping, masking, normalisation), only the log-prob method swapped."""
    loaded, trainer = tiny_hf
    tok, model = loaded.tokenizer, loaded.model
    input_ids, mask, keep = grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id, shuffle_rows=True)
    inputs = {"prompt_ids": input_ids[:, :-keep], "prompt_mask": mask[:, :-keep], "completion_ids": input_ids[:, -keep:],
              "completion_mask": mask[:, -keep:], "advantages": torch.randn(input_ids.size(0), generator=torch.Generator().manual_seed(5)),
              "num_items_in_batch": mask[:, -keep:].sum()}
    set_checkpointing(model, "non-reentrant")
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); the loss normalisation reads it
    results = []
    for plain in (True, False):
        if plain:
            trainer._get_per_token_logps_and_entropies = lambda *a, **k: plain_call(trainer, *a, **k)
        else:
            del trainer._get_per_token_logps_and_entropies
        for _, p in lora_parameters(model):
            p.grad = None
        loss = trainer.compute_loss(model, dict(inputs))
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in lora_parameters(model)}))
    (ref_loss, ref_grads), (loss, grads) = results
    assert torch.allclose(loss, ref_loss, rtol=LOGP_RTOL, atol=1e-7), (loss, ref_loss)
    for name, g in grads.items():
        assert (g - ref_grads[name]).abs().max() <= GRAD_RTOL * ref_grads[name].abs().max(), name


def test_a_grpo_training_step_runs_on_the_shared_prefix(tiny_model_dir, tmp_path):
    """trainer.train(): generation, the group shuffle and the loss, and the counters in the logs."""
    from datasets import Dataset

    loaded = load_model(tiny_model_dir, "hf")
    trainer = make_trainer(loaded, tmp_path, batch_size=8, grad_accum=2)
    trainer.args.max_steps, trainer.args.max_completion_length = 1, 8
    trainer.max_completion_length = 8
    trainer.train_dataset = Dataset.from_list([{"prompt": f"text number {i} " * (1 + i % 3)} for i in range(16)])
    trainer.train()
    totals = trainer.shared_prefix_totals
    assert totals["calls"] >= 2 and totals["fallback_calls"] == 0 and totals["tokens"] < totals["plain_tokens"]
    logged = [row for row in trainer.state.log_history if "shared_prefix/tokens" in row]
    assert logged and logged[0]["shared_prefix/tokens"] < logged[0]["shared_prefix/plain_tokens"]


def test_eager_attention_takes_the_float_mask(tiny_hf):
    loaded, trainer = tiny_hf
    tok, base = loaded.tokenizer, loaded.model.get_base_model()
    set_checkpointing(loaded.model, "non-reentrant")
    base.set_attn_implementation("eager")
    try:
        r = compare(trainer, loaded.model, grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id))
    finally:
        base.set_attn_implementation("sdpa")
    assert r["logp_rel"] <= LOGP_RTOL and r["entropy_rel"] <= LOGP_RTOL and r["grad_rel"] <= GRAD_RTOL, r


def test_a_wrong_mask_fails_the_check(tiny_hf, monkeypatch):
    """The comparison can fail: let each branch also see the branches before it (a plain causal mask)."""
    from t2g.train import shared_prefix

    loaded, trainer = tiny_hf
    tok = loaded.tokenizer
    right = shared_prefix.attention_mask_4d
    monkeypatch.setattr(shared_prefix, "attention_mask_4d",
                        lambda segments, dtype=None: right(torch.zeros_like(segments), dtype))
    set_checkpointing(loaded.model, "off")
    r = compare(trainer, loaded.model, grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id))
    assert r["logp"] > 1e-3 and r["grad_rel"] > 1e-2, r


def test_on_a_cpu_each_group_is_a_forward_of_its_own(tiny_hf):
    """Groups packed together are padded to the longest; on a CPU, where a forward costs what its positions
    cost, each group goes alone and nothing is padded."""
    from t2g.train.shared_prefix import PAD, plan_packs

    loaded, trainer = tiny_hf
    tok = loaded.tokenizer
    input_ids, mask, keep = grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id)
    together = plan_packs(input_ids, mask, keep)
    alone = plan_packs(input_ids, mask, keep, group_per_pack=True)
    assert len(together) == 1 and len(alone) == 3  # three prompts of four rows each
    assert (together[0].segments == PAD).any() and all((p.segments != PAD).all() for p in alone)
    assert sum(p.input_ids.numel() for p in alone) < together[0].input_ids.numel()
    metrics = trainer._metrics["train"]
    metrics.clear()
    loaded.model.train()
    with torch.no_grad():
        trainer._get_per_token_logps_and_entropies(loaded.model, input_ids, mask, keep)
    assert metrics["shared_prefix/tokens"] == [float(sum(p.input_ids.numel() for p in alone))]


def test_counters_and_fallback(tiny_hf):
    loaded, trainer = tiny_hf
    tok = loaded.tokenizer
    input_ids, mask, keep = grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id)
    metrics = trainer._metrics["train"]
    metrics.clear()
    loaded.model.train()
    with torch.no_grad():
        trainer._get_per_token_logps_and_entropies(loaded.model, input_ids, mask, keep)
    tokens, plain = metrics["shared_prefix/tokens"][-1], metrics["shared_prefix/plain_tokens"][-1]
    assert plain == input_ids.numel() and tokens < plain / 2 and metrics["shared_prefix/fallback"] == [0.0]

    holed = mask.clone()
    holed[0, -keep - 2] = 0  # a hole in a prompt: not TRL's layout, so TRL computes it
    with torch.no_grad():
        got = trainer._get_per_token_logps_and_entropies(loaded.model, input_ids, holed, keep)[0]
        want = plain_call(trainer, loaded.model, input_ids, holed, keep)[0]
    assert metrics["shared_prefix/fallback"][-1] == 1.0 and torch.equal(got, want)


def test_refuses_a_trainer_that_rewrote_the_loss():
    from trl import GRPOTrainer

    from t2g.train.shared_prefix import shared_prefix_trainer

    class Rewritten(GRPOTrainer):  # as unsloth's CUDA UnslothGRPOTrainer does
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            raise NotImplementedError

    with pytest.raises(TypeError, match="compute_loss"):
        shared_prefix_trainer(Rewritten)


# ---------------------------------------------------------------------------------------------
# Whole-group shuffle


def test_group_permutation_moves_whole_groups_and_is_seeded():
    from t2g.train.shared_prefix import group_permutation

    sizes = [4, 4, 8, 2, 4]  # a prompt drawn twice in a row is one block; a group split between processes, shorter
    prompt_ids = torch.cat([torch.full((n, 3), k) for k, n in enumerate(sizes)])
    mask = torch.ones_like(prompt_ids)
    orders = set()
    for seed in range(6):
        torch.manual_seed(seed)
        perm = group_permutation(prompt_ids, mask)
        torch.manual_seed(seed)
        assert torch.equal(perm, group_permutation(prompt_ids, mask))
        assert sorted(perm.tolist()) == list(range(len(prompt_ids)))
        labels = prompt_ids[perm][:, 0].tolist()
        runs = [k for i, k in enumerate(labels) if i == 0 or labels[i - 1] != k]
        assert sorted(runs) == list(range(len(sizes)))  # each group contiguous, in one piece
        orders.add(tuple(runs))
    assert len(orders) > 1


def test_prepare_inputs_buffers_whole_groups(tiny_hf, tmp_path):
    loaded, _ = tiny_hf
    trainer = make_trainer(loaded, tmp_path, batch_size=4, grad_accum=4)
    prompts = 4
    batch = {
        "prompt_ids": torch.arange(prompts).repeat_interleave(4)[:, None].expand(-1, 5).contiguous(),
        "prompt_mask": torch.ones(16, 5, dtype=torch.long),
        "completion_ids": torch.arange(16)[:, None].expand(-1, 3).contiguous(),
        "completion_mask": torch.ones(16, 3, dtype=torch.long),
        "advantages": torch.arange(16, dtype=torch.float),
        "num_items_in_batch": torch.tensor(48),
    }
    trainer._generate_and_score_completions = lambda generation_batch: dict(batch)
    loaded.model.train()
    seen, firsts = [], []
    for seed in (0, 0, 1, 2):
        torch.manual_seed(seed)
        trainer._step, trainer._buffered_inputs = 0, None
        trainer._prepare_inputs(None)
        parts = trainer._buffered_inputs
        assert len(parts) == 4
        for part in parts:
            assert part["prompt_ids"][:, 0].unique().numel() == 1  # one whole group per micro-batch
            assert torch.equal(part["advantages"], part["completion_ids"][:, 0].float())  # rows moved together
            assert part["num_items_in_batch"].item() == 48
        seen.append([int(p["prompt_ids"][0, 0]) for p in parts])
        firsts.append(sorted(int(r) for p in parts for r in p["completion_ids"][:, 0]))
    assert seen[0] == seen[1] and len({tuple(s) for s in seen}) > 1
    assert all(f == list(range(16)) for f in firsts)


# ---------------------------------------------------------------------------------------------
# Speed on a CoNLL04-sized batch (measured and printed; only the token count is asserted)


@pytest.mark.slow
def test_speed_on_a_conll04_batch(smollm2_hf_dir, tmp_path, one_thread):
    """Positions the shared computation saves on a CoNLL04-sized batch; with T2G_MEASURE_SHARED_PREFIX=1 also
    forward+backward seconds, printed (a measurement, not an assertion: `pytest -s -k speed` with it set).
    Measured once (1 thread on a shared 2-core CPU, load ~2.5-4): checkpointing on 117.8 s plain vs 38.5 s
    shared, off 89.0 s vs 24.9 s; 6656 positions (16 rows x 416) vs 2612 (4 packed rows x 653)."""
    loaded = load_model(smollm2_hf_dir, "hf")
    trainer = make_trainer(loaded, tmp_path, batch_size=16)
    tok = loaded.tokenizer
    batch = grpo_batch(len(tok), tok.pad_token_id, tok.eos_token_id, prompt_lengths=(262, 275, 281, 288),
                       completion_width=128, seed=3)
    calls = {"plain": plain_call,
             "shared": lambda t, *a, **k: t._get_per_token_logps_and_entropies(*a, **k)}
    results = {}
    measure = os.environ.get("T2G_MEASURE_SHARED_PREFIX") == "1"  # minutes of CPU: not in every test run
    for mode in ("non-reentrant", "off") if measure else ():  # t2g's default first
        set_checkpointing(loaded.model, mode)
        loaded.model.train()
        for name, call in calls.items():
            start = time.perf_counter()
            logps_and_grads(call, trainer, loaded.model, *batch)
            results[f"{mode}/{name}"] = round(time.perf_counter() - start, 2)
    trainer._metrics["train"].clear()
    with torch.no_grad():
        trainer._get_per_token_logps_and_entropies(loaded.model, *batch)
    metrics = trainer._metrics["train"]
    tokens, plain = metrics["shared_prefix/tokens"][-1], metrics["shared_prefix/plain_tokens"][-1]
    real = int(batch[1].sum())
    results.update(tokens_shared=tokens, tokens_plain=plain, tokens_real_unpadded=real)
    print("shared-prefix speed (s, forward+backward, 1 thread):", json.dumps(results))
    (tmp_path / "speed.json").write_text(json.dumps(results))
    assert tokens < plain / 2


if __name__ == "__main__":  # the unsloth side of the parity tests: unsloth before anything imports transformers
    from t2g.train.model_loading import import_backend

    import_backend("unsloth")
    torch.set_num_threads(1)
    print(json.dumps(parity_report(Path(sys.argv[1]), "unsloth", Path(sys.argv[2]), big=sys.argv[3] == "1")))
