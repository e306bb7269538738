"""GRPO's settings: the rollout engine chosen, the fields set explicitly, dynamic sampling, auto length."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest

from t2g.train import rollouts
from t2g.train.config import ConfigError, TrainConfig, from_flags
from t2g.train.dynamic_sampling import DynamicSampling
from t2g.train.grpo import check_effective_args, grpo_settings


def config(**flags):
    return from_flags(TrainConfig, {"model": "embedded:tiny", "dataset": "examples", **flags})


@pytest.mark.parametrize("flags, cuda, engine", [
    ({"load_in_4bit": False}, False, "llama.cpp"),
    ({"load_in_4bit": True}, False, "trainer"),  # llama.cpp samples the 16-bit base, not the NF4 one
    ({"load_in_4bit": False}, True, "trainer"),
    ({"load_in_4bit": False, "lora_target_modules": "q_proj,lm_head"}, False, "trainer"),
    ({"load_in_4bit": False, "rollout": "trainer"}, False, "trainer"),
])
def test_auto_rollout_picks_llama_cpp_only_where_it_samples_the_policy(flags, cuda, engine):
    chosen, why = rollouts.resolve(config(**flags), cuda)
    assert chosen == engine and why


def test_explicit_rollouts_that_cannot_work_are_refused_naming_the_fix():
    with pytest.raises(ConfigError, match="--load_in_4bit=False"):
        config(rollout="llama.cpp", load_in_4bit=True)
    with pytest.raises(ConfigError, match="lm_head.*--lora_target_modules"):
        config(rollout="llama.cpp", load_in_4bit=False, lora_target_modules="q_proj,lm_head")
    with pytest.raises(ConfigError, match="--rollout=vllm needs --vllm_mode"):
        config(rollout="vllm")
    with pytest.raises(ConfigError, match="--shared_prefix=on needs whole groups"):
        config(shared_prefix="on", grpo_batch_size=6, grpo_grad_accum=2, num_generations=4)
    with pytest.raises(ConfigError, match="--max_completion_length='long'"):
        config(max_completion_length="long")
    with pytest.raises(ConfigError, match="--rollout_base=bf16 sets llama.cpp's base GGUF, and --rollout=trainer"):
        config(rollout="trainer", rollout_base="bf16")
    assert config(rollout="llama.cpp", load_in_4bit=False, rollout_base="bf16").rollout_base == "bf16"


def test_llama_cpp_rollout_needs_llama_cpp_python(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError, match="pip install 't2g\\[llama\\]'"):
        config(rollout="llama.cpp", load_in_4bit=False)
    assert rollouts.resolve(config(load_in_4bit=False), cuda=False)[0] == "trainer"  # auto says why, below
    assert "llama-cpp-python" in rollouts.resolve(config(load_in_4bit=False), cuda=False)[1]


def test_every_field_unsloth_fills_differently_is_set():
    cfg = config(max_completion_length=64, top_k=20, min_p=0.05, epsilon_high=0.28, grpo_weight_decay=0.01)
    settings = grpo_settings(cfg, [1.0], "llama.cpp")
    assert settings["epsilon_high"] == 0.28 and settings["weight_decay"] == 0.01
    assert settings["steps_per_generation"] == cfg.grpo_grad_accum and settings["use_vllm"] is False
    assert settings["vllm_importance_sampling_correction"] is True and settings["top_k"] == 20 and settings["min_p"] == 0.05
    assert grpo_settings(config(max_completion_length=64), [1.0], "trainer")["epsilon_high"] == 0.2  # = epsilon


def test_effective_args_check_names_what_a_backend_changed():
    args = SimpleNamespace(epsilon_high=0.28, weight_decay=0.0, optim=SimpleNamespace(value="adamw_torch_fused"))
    check_effective_args(args, {"weight_decay": 0.0, "optim": "adamw_torch_fused"})
    with pytest.raises(RuntimeError, match="epsilon_high: set 0.2, trainer has 0.28"):
        check_effective_args(args, {"epsilon_high": 0.2, "weight_decay": 0.0})


def _rows(n):
    return [{"prompt": [{"role": "user", "content": f"p{i}"}], "id": f"r{i}", "text": f"t{i}", "entity_types": ["a"],
             "relation_types": [], "graph": "{}"} for i in range(n)]


class FakeRollout:
    """Completion ids: one token, 1 for prompts whose number is in `solved` (every completion alike:
    a flat group), else the row's position in its group (rewards differ)."""

    def __init__(self, flat: set[str]):
        self.flat, self.calls = flat, []

    def __call__(self, prompts, trainer):
        self.calls.append([p[0]["content"] for p in prompts[::4]])
        ids = [[7] if p[0]["content"] in self.flat else [i % 4] for i, p in enumerate(prompts)]
        return {"prompt_ids": [[1, 2]] * len(prompts), "completion_ids": ids, "logprobs": [[-0.5]] * len(prompts)}


def _trainer():
    decode = SimpleNamespace(batch_decode=lambda ids, skip_special_tokens: [str(i[0]) for i in ids])
    return SimpleNamespace(num_generations=4, model=SimpleNamespace(training=True), processing_class=decode,
                           _metrics={"train": defaultdict(list), "eval": defaultdict(list)})


def _reward(prompts, completions, completion_ids, **kwargs):
    return [0.0 if c[0]["content"] == "7" else float(c[0]["content"]) for c in completions]


def test_dynamic_sampling_replaces_flat_groups_with_informative_ones_and_logs_it():
    rows = _rows(6)
    rollout = FakeRollout(flat={"p0", "p3"})  # p3 is also flat: it must not replace p0
    sampler = DynamicSampling(rollout, [_reward], [1.0], rows, rounds=2, seed=0)
    trainer = _trainer()
    prompts = [r["prompt"] for r in rows[:2] for _ in range(4)]
    out = sampler(prompts, trainer)
    assert out["id"][4:8] == ["r1"] * 4  # slot 1 was informative: kept
    assert out["id"][0] not in ("r0", "r3") and len(set(out["id"][:4])) == 1  # slot 0 replaced, not by flat p3
    assert out["completion_ids"][:4] == [[0], [1], [2], [3]] and len(out["completion_ids"]) == 8
    assert out["text"][:4] == [rows[int(out["id"][0][1:])]["text"]] * 4  # the gold columns follow the new prompt
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/flat_groups"] == [0.5] and metrics["dynamic_sampling/replaced"] == [0.5]
    assert metrics["dynamic_sampling/still_flat"] == [0.0]


def test_dynamic_sampling_keeps_a_flat_group_when_nothing_better_is_found():
    rows = _rows(2)
    sampler = DynamicSampling(FakeRollout(flat={"p0", "p1"}), [_reward], [1.0], rows, rounds=3, seed=0)
    trainer = _trainer()
    out = sampler([rows[0]["prompt"]] * 4, trainer)
    assert out["id"] == ["r0"] * 4 and trainer._metrics["train"]["dynamic_sampling/still_flat"] == [1.0]


def test_spare_groups_replace_flat_ones_in_the_first_pass_without_a_refill_pass():
    rows = _rows(8)
    rollout = FakeRollout(flat={"p0", "p1"})
    sampler = DynamicSampling(rollout, [_reward], [1.0], rows, rounds=2, seed=0, spares=3)
    trainer = _trainer()
    out = sampler([r["prompt"] for r in rows[:2] for _ in range(4)], trainer)
    assert len(rollout.calls) == 1 and len(rollout.calls[0]) == 2 + 3  # the batch and its spares, one pass
    spare_ids = {f"r{c[1:]}" for c in rollout.calls[0][2:]}
    assert set(out["id"]) <= spare_ids and len(out["id"]) == 8 and len(set(out["id"])) == 2  # both flat slots replaced
    assert out["completion_ids"] == [[0], [1], [2], [3]] * 2 and len(out["prompt_ids"]) == len(out["logprobs"]) == 8
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/replaced"] == [1.0] and metrics["dynamic_sampling/passes"] == [1]


def test_flat_spares_are_not_used_and_the_refill_rounds_take_over():
    rows = _rows(8)
    rollout = FakeRollout(flat={"p0"})
    sampler = DynamicSampling(rollout, [_reward], [1.0], rows, rounds=1, seed=0, spares=1)
    spare = next(r for r in sampler.pool if r["id"] != "r0")
    rollout.flat.add(spare["prompt"][0]["content"])  # the spare is flat too: a refill pass must replace slot 0
    trainer = _trainer()
    out = sampler([rows[0]["prompt"]] * 4, trainer)
    assert len(rollout.calls) == 2 and rollout.calls[0] == ["p0", spare["prompt"][0]["content"]]
    assert out["id"][0] not in ("r0", spare["id"]) and out["completion_ids"][:4] == [[0], [1], [2], [3]]
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/passes"] == [2] and metrics["dynamic_sampling/still_flat"] == [0.0]


def test_auto_completion_limit_comes_from_the_targets(tiny_model_dir):
    from transformers import AutoTokenizer

    from t2g.data.load import load_examples
    from t2g.train.session import completion_limit, target_for

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = load_examples("examples")
    cfg = config()
    limit, how = completion_limit(examples, tok, cfg)
    lengths = sorted(len(tok(target_for(ex, cfg), add_special_tokens=False)["input_ids"]) + 1 for ex in examples)
    assert lengths[-2] < limit <= cfg.max_seq_length - cfg.max_prompt_length and "p99" in how
    tight = config(max_seq_length=cfg.max_prompt_length + 16)
    assert completion_limit(examples, tok, tight)[0] == 16
