"""The training configuration: flags, reward weights by name, and bad settings refused early.

In-process tests build configs directly; subprocess tests run the real recipe and check that a bad
flag fails with a clear message before unsloth/torch are imported (no "Unsloth" banner, rc 2).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re

import pytest

import rewards
from recipe_run import MAIN_RECIPE, run_recipe
from t2g.flags import FlagError
from t2g.train import validate
from t2g.train.config import ConfigError, TrainConfig, from_flags, help_text, load_recipe, resolved_weights


@pytest.fixture(scope="module")
def Config():
    return load_recipe(MAIN_RECIPE).Config


def test_defaults_are_the_real_thing(Config):
    cfg = from_flags(Config, {})
    assert cfg.model == "Qwen/Qwen2.5-1.5B-Instruct" and cfg.load_in_4bit and cfg.backend == "unsloth"
    assert cfg.dataset == "Ihor/Text2Graph-Open-R1" and cfg.augment_copies >= 1
    assert cfg.stages == ("sft", "grpo", "export", "evaluate")
    assert resolved_weights(cfg) == rewards.DEFAULT_WEIGHTS


def test_a_stage_the_recipe_does_not_run_is_refused(Config):
    class SftOnly(Config):
        RECIPE_STAGES = ("sft",)

    with pytest.raises(ConfigError, match="this recipe runs sft; it has no grpo stage"):
        from_flags(SftOnly, {"stages": "sft,grpo"})


def test_smoke_overrides_then_explicit_flags_win(Config):
    cfg = from_flags(Config, {"smoke": True, "grpo_max_steps": 3})
    assert cfg.on_parity_fail == "warn" and cfg.export_hf is False and cfg.eval_limit == 8  # common smoke export/eval
    assert cfg.model == "embedded:smollm2" and cfg.dataset == "examples" and cfg.load_in_4bit is False
    assert cfg.grpo_max_steps == 3  # the explicit flag beats the smoke setting


def test_every_reward_has_its_own_weight_flag(Config):
    names = list(rewards.REGISTRY)
    cfg = from_flags(Config, {f"w_{n}": i + 0.5 for i, n in enumerate(names)})
    assert cfg.reward_weights == {n: i + 0.5 for i, n in enumerate(names)}
    text = help_text(Config, "recipe.py")
    for i, n in enumerate(names):
        assert re.search(rf"^  --w_{n} +\(float, {rewards.DEFAULT_WEIGHTS[n]!r}\) weight of {n} \(0 = off\): \S", text, re.M), n


@pytest.mark.parametrize("flags, expected", [
    ({"num_generation": 4}, "did you mean --num_generations"),
    ({"smok": True}, "did you mean --smoke"),
    ({"w_relation_f": 2}, "did you mean --w_relation_f1"),
    ({"learning_rate": 1e-5}, "--sft_learning_rate or --grpo_learning_rate"),
])
def test_unknown_flags_name_the_nearest(Config, flags, expected):
    with pytest.raises(ConfigError, match="unknown") as err:
        from_flags(Config, flags)
    assert expected in str(err.value)


@pytest.mark.parametrize("flags, expected", [
    ({"grpo_batch_size": 6, "grpo_grad_accum": 1, "num_generations": 4}, "not divisible by --num_generations=4"),
    ({"stages": ("sft", "rl")}, "--stages='rl' is not one of"),
    ({"backend": "vllm"}, "--backend='vllm' is not one of"),
    ({"max_prompt_length": 1800, "max_completion_length": 512}, "exceeds --max_seq_length=2048"),
    ({"num_generations": 1, "grpo_batch_size": 1, "grpo_grad_accum": 1}, "--num_generations must be >= 2"),
    ({"w_entity_f1": -1}, "must be numbers >= 0"),
    ({"max_steps": 3}, "unknown flag --max_steps"),
    ({"grpo_max_steps": "many"}, "--grpo_max_steps: expected a whole number"),
    ({"resume": True}, "--resume needs --output_dir"),
    ({"report_to": "tensorboard,neptune"}, "--report_to='neptune' is not one of"),
    ({"augment_rename_prob": 1.5}, "--augment_rename_prob=1.5: give a share between 0 and 1"),
    ({"augment_synonyms": "builtin", "augment_copies": 0}, "--augment_copies=0 makes none"),
    ({"augment_empty_prob": -0.1}, "--augment_empty_prob=-0.1: give a share between 0 and 1"),
    ({"augment_drop_prob": 2}, "--augment_drop_prob=2.0: give a share between 0 and 1"),
    ({"augment_distractors": "builtin", "augment_copies": 0}, "offers foreign types in the augmented copies"),
    ({"augment_keep_all_prob": 1.2}, "--augment_keep_all_prob=1.2: give a share between 0 and 1"),
    ({"augment_keep_all_prob": 0.5, "augment_copies": 0}, "--augment_keep_all_prob=0.5 keeps whole answers in the augmented "
                                                           "copies, and --augment_copies=0 makes none"),
])
def test_bad_settings_fail(Config, flags, expected):
    with pytest.raises(ConfigError) as err:
        from_flags(Config, flags)
    assert expected in str(err.value)


def test_config_errors_are_flag_errors(Config):
    assert issubclass(ConfigError, FlagError)
    with pytest.raises(ConfigError, match="--w_entity_f1: expected a number"):  # raised by t2g.flags, as ConfigError
        from_flags(Config, {"w_entity_f1": "lots"})


def test_a_recipe_default_keeps_the_flags_help_and_choices():
    @dataclasses.dataclass
    class Recipe(TrainConfig):
        backend: str = "hf"
        lora_r: int = 32
        report_to: tuple = "none"  # a list default may be written "a,b"

    declared = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for f in dataclasses.fields(Recipe):
        assert f.metadata == declared[f.name].metadata, f.name
    cfg = from_flags(Recipe, {})
    assert (cfg.backend, cfg.lora_r, cfg.report_to) == ("hf", 32, ("none",))
    with pytest.raises(ConfigError, match="--backend='vllm' is not one of unsloth, hf"):
        from_flags(Recipe, {"backend": "vllm"})

    @dataclasses.dataclass
    class Misdeclared(TrainConfig):
        dtype: str = "fp8"

    with pytest.raises(ConfigError, match="--dtype='fp8' is not one of auto, bf16, fp16, fp32"):
        from_flags(Misdeclared, {})  # a recipe's own default is checked like a flag


def test_unknown_reward_in_recipe_weights():
    class Bad(TrainConfig):
        pass

    cfg_flags = {"reward_weights": {"entity_f1": 1.0, "relation_f": 1.0}}
    with pytest.raises(ConfigError, match="unknown reward 'relation_f'") as err:
        from_flags(Bad, cfg_flags)
    assert "--w_relation_f1" in str(err.value)


def test_all_weights_zero_is_refused(Config):
    zero = {f"w_{n}": 0 for n in rewards.REGISTRY}
    with pytest.raises(ConfigError, match="no reward left"):
        from_flags(Config, zero)
    # SFT alone needs no reward.
    assert from_flags(Config, {**zero, "stages": "sft"}).stages == ("sft",)


def test_existing_output_dir_needs_resume(Config, tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="pass --resume"):
        from_flags(Config, {"output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="not a run directory"):
        from_flags(Config, {"output_dir": str(tmp_path), "resume": True})


@pytest.mark.parametrize("args, expected", [
    (["--smoke", "--num_generation=2"], "unknown flag --num_generation: did you mean --num_generations"),
    (["--w_relaton_f1=2"], "did you mean --w_relation_f1"),
    (["--num_generations=3"], "is not divisible by --num_generations=3"),
    (["--fast_inference"], "needs a CUDA GPU"),
    (["--smoke", "--dataset=/nonexistent/train.jsonl"], "/nonexistent/train.jsonl: no such file"),
    (["stray", "--smoke"], "unexpected argument(s) stray: every setting is a --flag=value"),
])
def test_recipe_rejects_bad_config_before_loading_anything(args, expected):
    if "--fast_inference" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    proc = run_recipe(*args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Unsloth" not in proc.stdout + proc.stderr  # failed before the backend was imported
    assert "run directory:" not in proc.stdout  # and before a run directory was made


def test_recipe_rejects_a_prompt_over_the_limit(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    proc = run_recipe("--smoke", f"--model={tiny_model_dir}", "--backend=hf", "--max_prompt_length=64",
                      f"--output_dir={out}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "tokens > --max_prompt_length=64" in proc.stderr and "--drop_long_examples" in proc.stderr
    assert "example 'news-01'" in proc.stderr  # names the first offending example
    assert not out.exists()  # nothing trained, no run directory


# --- several processes, vLLM: refused early with the flag to use instead ------------------------


def test_unsloth_refuses_a_multi_process_launch(Config, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"--backend=unsloth trains on one GPU.*2-process launch.*use --backend=hf"):
        from_flags(Config, {})
    assert from_flags(Config, {"backend": "hf"}).backend == "hf"  # the hf backend is the multi-process one
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert from_flags(Config, {}).backend == "unsloth"


@pytest.mark.parametrize("flags, match", [
    ({"vllm_mode": "server"}, "--vllm_mode=server (generations from trl vllm-serve) runs with --backend=hf"),
    ({"fast_inference": True, "backend": "hf"}, "with --backend=hf use --vllm_mode=colocate"),
    ({"fast_inference": True, "vllm_mode": "server", "backend": "hf"}, "contradicts --vllm_mode=server"),
    ({"vllm_mode": "sever"}, "--vllm_mode='sever' is not one of off, colocate, server; did you mean server"),
])
def test_vllm_flags_that_cannot_work_together(Config, flags, match):
    with pytest.raises(ConfigError, match=re.escape(match)):
        from_flags(Config, flags)


@pytest.mark.parametrize("flags, flag", [
    ({"vllm_mode": "server", "backend": "hf"}, "--vllm_mode=server"),
    ({"vllm_mode": "colocate", "backend": "hf"}, "--vllm_mode=colocate"),
    ({"vllm_mode": "colocate"}, "--vllm_mode=colocate"),
    ({"fast_inference": True}, "--fast_inference"),
])
def test_vllm_modes_need_cuda_then_vllm(Config, monkeypatch, flags, flag):
    monkeypatch.setattr(validate, "cuda_available", lambda: False)
    with pytest.raises(ConfigError, match=re.escape(f"{flag} uses vLLM, which needs a CUDA GPU and none is visible")):
        from_flags(Config, flags)
    monkeypatch.setattr(validate, "cuda_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(validate.importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=re.escape(f"{flag} needs vLLM: pip install vllm")):
        from_flags(Config, flags)


def test_vllm_settings_reach_grpo_config(Config, monkeypatch):
    """With CUDA and vllm present (faked here), the modes map onto TRL's GRPOConfig fields."""
    from t2g.train.grpo import vllm_args

    monkeypatch.setattr(validate, "cuda_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(validate.importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    server = from_flags(Config, {"backend": "hf", "load_in_4bit": False, "vllm_mode": "server",
                                 "vllm_server_host": "10.0.0.5", "vllm_server_port": 8001})
    assert vllm_args(server) == {"use_vllm": True, "vllm_gpu_memory_utilization": 0.6, "vllm_mode": "server",
                                 "vllm_server_host": "10.0.0.5", "vllm_server_port": 8001, "vllm_server_timeout": 240.0}
    hf_colocated = from_flags(Config, {"backend": "hf", "load_in_4bit": False, "vllm_mode": "colocate"})
    assert vllm_args(hf_colocated)["vllm_mode"] == "colocate"
    colocated = from_flags(Config, {"vllm_mode": "colocate"})  # unsloth: its own engine, one switch
    assert colocated.fast_inference and vllm_args(colocated) == {"use_vllm": True, "vllm_gpu_memory_utilization": 0.6}
    assert from_flags(Config, {"fast_inference": True}).vllm_mode == "colocate"
    assert vllm_args(from_flags(Config, {})) == {"use_vllm": False}


def test_augment_synonyms_rename_some_training_copies(Config):
    from t2g.data.synonyms import TRAINING_SYNONYMS
    from t2g.train.session import load_data

    plain = load_data(from_flags(Config, {"dataset": "examples", "augment_copies": 2}))
    cfg = from_flags(Config, {"dataset": "examples", "augment_copies": 2, "augment_synonyms": "builtin",
                              "augment_rename_prob": 1.0})
    renamed = load_data(cfg)
    names = {n for names in TRAINING_SYNONYMS.values() for n in names}
    vocabulary = {t for ex in plain for t in ex.entity_types + ex.relation_types}
    new = {t for ex in renamed for t in ex.entity_types + ex.relation_types} - vocabulary
    assert len(renamed) == len(plain)
    assert new and new <= names  # the shipped examples' person, organization, location renamed
    assert renamed[:len(renamed) // 3] == plain[:len(plain) // 3]  # the originals are never renamed


def test_load_data_prints_the_answer_mix_of_originals_and_copies(Config, capsys):
    from t2g.data.augment import answer_mix
    from t2g.train.session import load_data

    examples = load_data(from_flags(Config, {"dataset": "examples", "augment_copies": 2, "augment_empty_prob": 1.0}))
    n = len(examples) // 3
    originals, copies = answer_mix(examples[:n]), answer_mix(examples[n:])
    assert copies == {"relations": 0, "entities_only": 0, "empty": 2 * n}  # every copy asks only for absent types
    assert sum(originals.values()) == n and originals["empty"] < n
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "augmented copies" in l)
    assert line == (f"t2g: answers of the {n} examples / {2 * n} augmented copies: relations {originals['relations']} / 0, "
                    f"entities only {originals['entities_only']} / 0, empty {originals['empty']} / {2 * n}")
    assert "foreign relation type" not in out  # no foreign types offered (--augment_distractors=none): no such line


def test_load_data_prints_how_often_a_foreign_relation_type_comes_without_relations(Config, capsys):
    from t2g.data.augment import foreign_relation_mix
    from t2g.data.synonyms import TRAINING_DISTRACTORS
    from t2g.train.session import load_data

    examples = load_data(from_flags(Config, {"dataset": "examples", "augment_copies": 2, "augment_distractors": "builtin"}))
    mix = foreign_relation_mix(examples, TRAINING_DISTRACTORS["relations"])
    (offered, offered_none), (others, others_none) = mix["offered"], mix["not_offered"]
    assert offered > 0 and offered + others == len(examples)
    line = next(l for l in capsys.readouterr().out.splitlines() if "foreign relation type" in l)
    assert line.startswith(f"t2g: {offered} examples list a foreign relation type, {offered_none} of them (")
    assert line.endswith(f"with no gold relation; the other {others}: {others_none} ({others_none / others:.0%})")


def test_keep_all_copies_offer_foreign_relation_types_beside_relations(Config):
    """--augment_keep_all_prob is issue 18's fix for the mix above: prompts offering a foreign relation type
    must not mostly come without relations, or GRPO learns that such a type means "leave relations out"."""
    from t2g.data.augment import foreign_relation_mix
    from t2g.data.synonyms import TRAINING_DISTRACTORS
    from t2g.train.session import load_data

    flags = {"dataset": "examples", "augment_copies": 2, "augment_distractors": "builtin", "augment_drop_prob": 0.3,
             "augment_empty_prob": 0.25}
    share = {}
    for keep in (0.0, 1.0):
        offered, without = foreign_relation_mix(load_data(from_flags(Config, {**flags, "augment_keep_all_prob": keep})),
                                                TRAINING_DISTRACTORS["relations"])["offered"]
        share[keep] = without / offered
    assert share[1.0] < share[0.0] - 0.2, share
