"""GRPO rollouts through llama.cpp (t2g.train.llama_rollout.LlamaCppRollout): TRL's rollout_func contract,
the LoRA synced after every optimizer step (greedy completions equal transformers', near-ties counted),
llama.cpp's sampling log-probs against the trainer's own, seeds that a resumed run repeats, clear errors,
and no file left behind but the cached base GGUF.

Measured on SmolLM2 (f32 base and KV cache, one thread), 2 syncs x 4 prompts: 8/8 greedy completions
equal transformers' (0 near-ties); sampled log-probs differ from transformers' recomputation by 3e-6 on
average, 3e-5 at most. On the tiny model, inside a real GRPOTrainer run of 3 steps: 12/12 identical,
0 near-ties, log-probs within 5e-7 of the trainer's own `_get_per_token_logps_and_entropies`.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from t2g.train.llama_rollout import LLAMA_MISSING, LlamaCppRollout, RolloutError, base_type_of

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TEXTS = ["Tim Cook is the CEO of Apple.", "Paris is in France.", "Angela Merkel met Emmanuel Macron in Berlin.",
         "Sundar Pichai leads Google, based in Mountain View."]


def messages(text):
    from t2g.task.prompts import build_messages

    return build_messages(text, ["person", "organization", "location"], ["works for", "located in"], reasoning=False)


def lora_model(hf_dir, **lora):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    return get_peft_model(model, LoraConfig(**{"r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                                               "target_modules": ALL_LINEAR, **lora}))


def perturb(model, seed, scale):
    """What an optimizer step does to the LoRA, for the tests that do not train: new random B (and A)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn(p.shape, generator=g) * (scale if "lora_B" in name else 0.01))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread, as llama.cpp gets one: on a shared 2-core machine two threads ran 3-5x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeTrainer:
    """The GRPOTrainer attributes the rollout reads, without `_tokenize_prompts` (the fallback templating)."""

    def __init__(self, model, tokenizer, group=4, max_new=12, **args):
        self.model, self.processing_class = model, tokenizer
        self.args = SimpleNamespace(**{"seed": 0, "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": None,
                                       "repetition_penalty": 1.0, "max_completion_length": max_new,
                                       "generation_kwargs": None, **args})
        self.state = SimpleNamespace(global_step=0)
        self.num_generations = self.num_generations_eval = group
        self.eos_token_ids = [tokenizer.eos_token_id]
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from transformers import AutoTokenizer

    from t2g.export.llama_cpp import LlamaCppNotFound, find_llama_cpp

    try:
        find_llama_cpp()
    except LlamaCppNotFound as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("rollout")
    rollout = LlamaCppRollout(tiny_model_dir, work, n_threads=1)
    yield SimpleNamespace(dir=tiny_model_dir, work=work, rollout=rollout, tok=AutoTokenizer.from_pretrained(tiny_model_dir))
    rollout.close()


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def hf_logprobs(model, prompt, completion, temperature):
    """The trainer's definition: log_softmax(logits / T) of each completion token, teacher-forced."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion]), logits_to_keep=len(completion) + 1).logits[0, :-1]
    logits = logits.double() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None])[:, 0].numpy()


def greedy_agreement(model, rollout, prompts, max_new, stops, tie):
    """(identical completions, near-ties): llama.cpp's greedy (top_k=1) against transformers' generate; a
    difference counts as a near-tie only where transformers' own top two logits are within `tie`."""
    import torch

    ours, _ = rollout.sample(prompts, 1, max_new_tokens=max_new, top_k=1, stop_ids=stops)
    # transformers decodes the prompts together, left-padded (its batched generate: far faster than one
    # at a time with PEFT on a CPU); a finished row is padded with stops[0], cut at its first stop here
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[stops[0]] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new, eos_token_id=stops,
                             pad_token_id=stops[0], temperature=None, top_p=None, top_k=None)[:, width:].tolist()
    same = ties = 0
    for prompt, row, hf in zip(prompts, ours, out):
        hf = hf[:next((i + 1 for i, t in enumerate(hf) if t in stops), len(hf))]
        if hf == row:
            same += 1
            continue
        k = next(i for i, (a, b) in enumerate(zip(hf + [-1], row + [-2])) if a != b)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + hf[:k]])).logits[0, -1]
        gap = float(logits[hf[k]] - logits[row[k]]) if k < min(len(hf), len(row)) else float("inf")
        assert gap < tie, f"llama.cpp's greedy left transformers' at token {k} by a logit gap of {gap}: not a near-tie"
        ties += 1
    return same, ties


def test_missing_llama_cpp_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(RolloutError) as err:
        LlamaCppRollout(tmp_path, tmp_path / "work")
    assert str(err.value) == LLAMA_MISSING == "--rollout=llama.cpp needs llama-cpp-python: pip install 't2g[llama]'"


def test_contract_sync_on_step_and_nothing_left_behind(tiny):
    rollout, tok = tiny.rollout, tiny.tok
    model = lora_model(tiny.dir)
    trainer = FakeTrainer(model, tok, group=4, max_new=12)
    prompts = [messages(t) for t in TEXTS[:2] for _ in range(4)]
    syncs = len(rollout.timings["sync"])
    out = rollout(prompts, trainer)
    assert set(out) == {"prompt_ids", "completion_ids", "logprobs"} and len(out["prompt_ids"]) == 8
    for p, ids in zip(prompts, out["prompt_ids"]):  # the trainer tokenizer's own templating
        assert ids == tok.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    for ids, lps in zip(out["completion_ids"], out["logprobs"]):
        assert 1 <= len(ids) == len(lps) <= 12 and (ids[-1] == tok.eos_token_id or len(ids) == 12)
        assert all(lp <= 0 for lp in lps) and tok.eos_token_id not in ids[:-1]
    assert rollout.tokenizer_checked and rollout.synced_step == 0 and len(rollout.timings["sync"]) == syncs + 1
    again = rollout(prompts, trainer)  # same step: no new sync, but a seed of its own
    assert len(rollout.timings["sync"]) == syncs + 1 and again["completion_ids"] != out["completion_ids"]
    perturb(model, 0, 0.3)
    trainer.state.global_step = 1
    rollout(prompts, trainer)
    assert rollout.synced_step == 1 and len(rollout.timings["sync"]) == syncs + 2
    assert trainer._metrics["train"]["rollout/sync_seconds"]
    # one value a step: step 0's two calls summed, step 1's one call
    assert trainer._metrics["train"]["rollout/sample_seconds"] == pytest.approx(
        [sum(rollout.timings["sample"][-3:-1]), rollout.timings["sample"][-1]])
    assert [f for f in files(tiny.work) if not f.startswith("base-")] == []  # the adapter file is gone


def test_a_resumed_run_samples_what_the_first_did(tiny):
    model = lora_model(tiny.dir)
    perturb(model, 1, 0.3)
    prompts = [messages(t) for t in TEXTS[2:] for _ in range(3)]
    outs = []
    for _ in range(2):  # a fresh rollout, as after a restart, at the same global step
        with LlamaCppRollout(tiny.dir, tiny.work, n_threads=1) as rollout:
            trainer = FakeTrainer(model, tiny.tok, group=3, max_new=10, top_p=0.9, top_k=20, min_p=0.01)
            trainer.state.global_step = 7
            outs.append(rollout(prompts, trainer))
    assert outs[0] == outs[1]


def test_tokenizer_mismatches_are_named(tiny):
    from tokenizers import normalizers
    from transformers import AutoTokenizer

    lower = AutoTokenizer.from_pretrained(tiny.dir)
    lower.backend_tokenizer.normalizer = normalizers.Lowercase()  # same vocabulary, other ids for "Tim Cook"
    with pytest.raises(RolloutError, match=r"differs from the trainer's on 'Tim Cook is the CEO of Apple\.': from token 0 "
                                           r"the trainer has \[\d+.*llama\.cpp \[\d+"):
        tiny.rollout.check_tokenizer(lower)
    bigger = AutoTokenizer.from_pretrained(tiny.dir)
    bigger.add_tokens(["<extra_token_a>", "<extra_token_b>"])
    with pytest.raises(RolloutError, match=r"has 1026 tokens, the base GGUF 1024"):
        tiny.rollout.check_tokenizer(bigger)
    tiny.rollout.check_tokenizer(tiny.tok, ["any text at all"])  # the trainer's own tokenizer passes


def test_what_llama_cpp_cannot_sample_is_refused(tiny):
    rollout = tiny.rollout
    saved = lora_model(tiny.dir, target_modules=["q_proj"], modules_to_save=["lm_head"])
    with pytest.raises(RolloutError, match=r"cannot carry this LoRA: .*modules_to_save \['lm_head'\]"):
        rollout.sync(saved, 3)
    from transformers import AutoModelForCausalLM

    with pytest.raises(RolloutError, match="no PEFT LoRA adapter"):
        rollout.sync(AutoModelForCausalLM.from_pretrained(tiny.dir), 3)
    trainer = FakeTrainer(lora_model(tiny.dir), tiny.tok, group=2)
    with pytest.raises(RolloutError, match="prompt 1 differs from the first of its group of 2"):
        rollout.prompt_ids([messages(TEXTS[0]), messages(TEXTS[1])], trainer, 2)
    with pytest.raises(RolloutError, match="do not form groups of 2"):
        rollout.prompt_ids([messages(TEXTS[0])] * 3, trainer, 2)
    with pytest.raises(RolloutError, match="repetition_penalty=1.2"):
        rollout.settings(FakeTrainer(None, tiny.tok, repetition_penalty=1.2))
    with pytest.raises(RolloutError, match=r"generation settings \['typical_p'\]"):
        rollout.settings(FakeTrainer(None, tiny.tok, generation_kwargs={"typical_p": 0.9}))
    with pytest.raises(RolloutError, match="kv_type='q8'"):
        LlamaCppRollout(tiny.dir, tiny.work, kv_type="q8")
    assert [f for f in files(tiny.work) if not f.startswith("base-")] == []  # also after the failed syncs


def test_the_base_gguf_is_held_in_the_trainers_weight_dtype(tiny):
    """A bf16 trainer (--dtype=bf16, as scripts/bench_quality.py trains where bf16 is native) samples from a
    bf16 base: the trainer's own weights. Its log-probs sit as close to the bf16 trainer's as an f32 base's do."""
    import torch

    model = lora_model(tiny.dir)
    assert base_type_of(model) == "f32"
    model = model.to(torch.bfloat16)
    assert base_type_of(model) == "bf16"
    perturb(model, 3, 0.3)
    trainer = FakeTrainer(model, tiny.tok, group=2, max_new=12, temperature=0.9)
    prompts = [messages(t) for t in TEXTS[:2] for _ in range(2)]
    mean = {}
    for base_type in ("bf16", "f32"):
        with LlamaCppRollout(tiny.dir, tiny.work, n_threads=1, base_type=base_type) as rollout:
            assert rollout.base_gguf.name.endswith(f".{base_type}.gguf")
            out = rollout(prompts, trainer)
        diffs = [np.abs(hf_logprobs(model, p, c, 0.9) - np.array(lps))
                 for p, c, lps in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"])]
        mean[base_type] = float(np.concatenate(diffs).mean())
    print(f"tiny in bf16: |llama.cpp - trainer log-prob| mean, bf16 base {mean['bf16']:.2e}, f32 base {mean['f32']:.2e}")
    assert mean["bf16"] < 0.05 and mean["bf16"] < 1.5 * mean["f32"]
    model.base_model.model.model.layers[0].mlp.down_proj.base_layer.to(torch.float16)
    with pytest.raises(RolloutError, match=r"this model's are bfloat16, float16 \(use --rollout=trainer\)"):
        base_type_of(model)
    with pytest.raises(RolloutError, match=r"--rollout=llama.cpp: a base GGUF of type 'q8_0': adapters apply to f32, "
                                           r"bf16, f16 bases"):
        LlamaCppRollout(tiny.dir, tiny.work, base_type="q8_0")
    assert [f for f in files(tiny.work) if not f.startswith("base-")] == []


def test_close_leaves_only_the_base_gguf_and_stale_adapters_are_swept(tiny, tmp_path):
    import shutil

    shutil.copy(tiny.rollout.base_gguf, tmp_path)  # the cached conversion, found by its key: no new one
    tiny_model_dir = tiny.dir
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".adapter-{dead.stdout.strip()}-4.gguf").write_bytes(b"left by a killed run")
    rollout = LlamaCppRollout(tiny_model_dir, tmp_path, n_threads=1)
    model = lora_model(tiny_model_dir)
    perturb(model, 2, 0.1)
    rollout([messages(TEXTS[0])] * 2, FakeTrainer(model, tiny.tok, group=2, max_new=4))
    rollout.close()
    rollout.close()  # twice is fine
    assert files(tmp_path) == [rollout.base_gguf.name]


def rollout_tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.mark.slow
def test_policy_sync_inside_a_real_grpo_run(tiny_model_dir, tmp_path, monkeypatch):
    """A real GRPOTrainer on the tiny model, llama.cpp as its rollout_func: after every optimizer step
    the LoRA reaches llama.cpp (greedy completions equal transformers'), and the sampling log-probs
    equal the trainer's own `_get_per_token_logps_and_entropies`."""
    pytest.importorskip("llama_cpp")
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from t2g.train.trl_without_gpu import patch_trl_fused_lm_head

    patch_trl_fused_lm_head()
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    tok = rollout_tok(tiny_model_dir)
    rollout = LlamaCppRollout(tiny_model_dir, tmp_path / "rollout", n_threads=1)
    probes = [tok.apply_chat_template(messages(t), add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"] for t in TEXTS]
    seen: list[dict] = []

    def checked(prompts, trainer):
        out = rollout(prompts, trainer)
        model = trainer.model
        was_training = model.training
        model.eval()
        same, ties = greedy_agreement(model, rollout, probes, 12, trainer.eos_token_ids, tie=1e-4)
        diffs = []
        for p, c, lps in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"]):
            with torch.no_grad():
                ref, _, _ = trainer._get_per_token_logps_and_entropies(model, torch.tensor([p + c]),
                                                                      torch.ones(1, len(p) + len(c), dtype=torch.long), len(c))
            diffs += np.abs(ref[0].double().numpy() - np.array(lps)).tolist()
        model.train(was_training)
        lora = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if "lora_B" in n]).clone()
        seen.append({"step": trainer.state.global_step, "same": same, "ties": ties, "diffs": diffs, "lora": lora})
        return out

    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=3, learning_rate=0.05, per_device_train_batch_size=4,
                      gradient_accumulation_steps=1, num_generations=4, max_completion_length=12, beta=0.0,
                      report_to="none", save_strategy="no", logging_steps=1, seed=0, bf16=False, use_vllm=False,
                      dataloader_num_workers=0)
    trainer = GRPOTrainer(model=lora_model(tiny_model_dir), args=args, processing_class=tok, rollout_func=checked,
                          train_dataset=Dataset.from_list([{"prompt": messages(t)} for t in TEXTS]),
                          reward_funcs=lambda completions, **kw: [float(len(c[0]["content"])) for c in completions])
    trainer.train()
    rollout.close()
    assert [s["step"] for s in seen] == [0, 1, 2]
    assert all(not torch.equal(a["lora"], b["lora"]) for a, b in zip(seen, seen[1:]))  # the policy moved each step
    assert all(s["same"] + s["ties"] == len(TEXTS) for s in seen)
    print("tiny: identical", [s["same"] for s in seen], "near-ties", [s["ties"] for s in seen])
    diffs = np.concatenate([s["diffs"] for s in seen])
    print(f"tiny: |llama.cpp - trainer log-prob| mean {diffs.mean():.2e} max {diffs.max():.2e} over {diffs.size} tokens")
    assert diffs.max() < 1e-4 and sum(s["ties"] for s in seen) <= 1
    assert files(tmp_path / "rollout") == [rollout.base_gguf.name]


@pytest.mark.slow
def test_policy_sync_and_logprob_mismatch_on_smollm2(smollm2_hf_dir):
    pytest.importorskip("llama_cpp")
    from t2g.files import cache_dir

    tok = rollout_tok(smollm2_hf_dir)
    model = lora_model(smollm2_hf_dir).eval()
    trainer = FakeTrainer(model, tok, group=2, max_new=24, temperature=0.9)
    prompts = [messages(t) for t in TEXTS[:2] for _ in range(2)]
    probes = [tok.apply_chat_template(messages(t), add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"] for t in TEXTS]
    same = ties = 0
    diffs = []
    with LlamaCppRollout(smollm2_hf_dir, cache_dir() / "llama-rollout-tests", n_threads=1) as rollout:
        for step in range(2):
            perturb(model, 10 + step, 0.02)  # an "optimizer step": the LoRA moves, the step count too
            trainer.state.global_step = step
            out = rollout(prompts, trainer)
            assert rollout.synced_step == step
            s, t = greedy_agreement(model, rollout, probes, 16, trainer.eos_token_ids, tie=5e-3)
            same, ties = same + s, ties + t
        for p, c, lps in zip(out["prompt_ids"], out["completion_ids"], out["logprobs"]):  # the last step's
            diffs += np.abs(hf_logprobs(model, p, c, 0.9) - np.array(lps)).tolist()
    diffs = np.array(diffs)
    print(f"smollm2: identical {same}, near-ties {ties}; |llama.cpp - HF log-prob| mean {diffs.mean():.2e} "
          f"max {diffs.max():.2e} over {diffs.size} tokens; sync {rollout.timings['sync']}")
    assert same + ties == 2 * len(TEXTS) and ties <= 1
    assert diffs.mean() < 1e-4 and diffs.max() < 2e-3
