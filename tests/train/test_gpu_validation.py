"""The GPU path's settings, refused in validation before any model loads, all problems in one message:
vLLM on a 4-bit base with the hf backend, unsloth's vLLM engine with fully trained embeddings, a
resumed run whose saved adapter has other LoRA settings than the flags; and unsloth's vLLM standby
(its environment before unsloth is imported, its engine put to sleep after loading).

CUDA and vLLM are faked where a test needs them present (this machine has neither); the refusals
themselves run for real, in-process and through the recipe's command line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path

import pytest

from recipe_run import MAIN_RECIPE, run_recipe, run_recipe_ok, tiny_args, write_nothing_to_extract
from t2g.train import validate
from t2g.train.config import ConfigError, env_defaults, from_flags, load_recipe

FOUR_BIT_FIX = "add --load_in_4bit=False"


@pytest.fixture(scope="module")
def Config():
    return load_recipe(MAIN_RECIPE).Config


@pytest.fixture
def gpu(monkeypatch):
    """A machine with CUDA and vllm, as far as validation can tell."""
    monkeypatch.setattr(validate, "cuda_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(validate.importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))


def _error(Config, flags: dict) -> str:
    with pytest.raises(ConfigError) as err:
        from_flags(Config, flags)
    return str(err.value)


# --- item 1: vLLM with the hf backend on a 4-bit base ---------------------------------------------


def test_cpu_machine_names_both_the_missing_gpu_and_the_4bit_conflict(Config, monkeypatch):
    monkeypatch.setattr(validate, "cuda_available", lambda: False)
    message = _error(Config, {"backend": "hf", "vllm_mode": "colocate", "load_in_4bit": True})
    assert message.startswith("2 settings cannot work:\n  - ")
    assert "--vllm_mode=colocate uses vLLM, which needs a CUDA GPU and none is visible" in message
    assert "--backend=hf --vllm_mode=colocate with --load_in_4bit=True" in message and FOUR_BIT_FIX in message


def test_the_recipe_refuses_it_before_importing_anything_heavy():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = run_recipe("--backend=hf", "--vllm_mode=colocate", "--load_in_4bit=True", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "needs a CUDA GPU" in proc.stderr and FOUR_BIT_FIX in proc.stderr
    assert "Traceback" not in proc.stderr and "Unsloth" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_hf_vllm_needs_the_16bit_base(Config, gpu, mode):
    message = _error(Config, {"backend": "hf", "vllm_mode": mode})  # the recipe's default is 4-bit
    assert message.startswith(f"--backend=hf --vllm_mode={mode} with --load_in_4bit=True") and FOUR_BIT_FIX in message
    assert "use --backend=unsloth --fast_inference" in message
    cfg = from_flags(Config, {"backend": "hf", "vllm_mode": mode, "load_in_4bit": False})
    assert cfg.vllm_mode == mode and not cfg.fast_inference


def test_unsloth_vllm_keeps_its_4bit_base(Config, gpu):
    cfg = from_flags(Config, {"fast_inference": True})  # unsloth's engine takes the LoRA without a merge
    assert cfg.load_in_4bit and cfg.vllm_mode == "colocate"


def test_unsloth_vllm_cannot_serve_a_fully_trained_lm_head(Config, gpu):
    targets = "q_proj,v_proj,lm_head"
    message = _error(Config, {"fast_inference": True, "lora_target_modules": targets})
    assert "--fast_inference: unsloth's vLLM engine cannot serve a fully trained lm_head" in message
    assert from_flags(Config, {"lora_target_modules": targets}).lora_target_modules[-1] == "lm_head"  # fine without vLLM


def test_every_problem_in_one_message(Config, monkeypatch):
    monkeypatch.setattr(validate, "cuda_available", lambda: False)
    message = _error(Config, {"num_generations": 3, "temperature": 0, "resume": True, "fast_inference": True,
                              "backend": "hf", "lora_r": 0})
    lines = message.splitlines()
    assert lines[0] == f"{len(lines) - 1} settings cannot work:"
    for expected in ("--lora_r=0 must be > 0", "--temperature must be > 0", "not divisible by --num_generations=3",
                     "--resume needs --output_dir", "--fast_inference is unsloth's built-in vLLM"):
        assert sum(expected in line for line in lines[1:]) == 1, (expected, message)


def test_one_problem_keeps_its_plain_message(Config):
    assert _error(Config, {"resume": True}) == "--resume needs --output_dir=<the run directory to continue>"


# --- item 4: a resumed run against the LoRA settings it saved --------------------------------------


def _run_dir(root: Path, *, r=16, alpha=32, dropout=0.0, where="sft/adapter",
             targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), full=None) -> Path:
    """A run directory with one adapter config as PEFT writes it."""
    from peft import LoraConfig

    run = root / "run"
    (run / where).mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"model": "Qwen/Qwen2.5-1.5B-Instruct"}))
    LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), modules_to_save=full,
               task_type="CAUSAL_LM").save_pretrained(run / where)
    return run


@pytest.mark.parametrize("where", ["sft/adapter", "sft/checkpoint-50", "grpo/checkpoint-2"])
def test_resume_with_other_lora_settings_is_refused(Config, tmp_path, where):
    run = _run_dir(tmp_path, where=where)
    message = _error(Config, {"output_dir": str(run), "resume": True, "lora_r": 8, "lora_alpha": 16})
    assert message.startswith(f"--resume: the run's saved adapter ({run / where}) was trained with --lora_r=16 "
                              f"--lora_alpha=32, and the flags give --lora_r=8 --lora_alpha=16")
    assert "Resume with --lora_r=16 --lora_alpha=32, or start a new run" in message
    assert from_flags(Config, {"output_dir": str(run), "resume": True}).resume  # the run's own settings resume


def test_dropout_and_target_changes_are_named_too(Config, tmp_path):
    run = _run_dir(tmp_path, dropout=0.05, targets=("q_proj", "v_proj"), full=["lm_head"])
    message = _error(Config, {"output_dir": str(run), "resume": True, "stages": "grpo"})
    assert "was trained with --lora_dropout=0.05 --lora_target_modules=lm_head,q_proj,v_proj" in message
    same = {"output_dir": str(run), "resume": True, "stages": "grpo", "lora_dropout": 0.05,
            "lora_target_modules": "q_proj,v_proj,lm_head"}  # lm_head trained in full: the same adapter
    assert from_flags(Config, same).lora_dropout == 0.05


def test_stages_that_load_no_adapter_for_training_are_not_checked(Config, tmp_path):
    run = _run_dir(tmp_path)
    cfg = from_flags(Config, {"output_dir": str(run), "resume": True, "stages": "export,evaluate", "lora_r": 8})
    assert cfg.lora_r == 8


def test_the_recipe_refuses_a_changed_rank_before_loading(tmp_path):
    run = _run_dir(tmp_path)
    proc = run_recipe(f"--output_dir={run}", "--resume", "--stages=grpo", "--lora_r=32", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "was trained with --lora_r=16, and the flags give --lora_r=32" in proc.stderr
    assert "Traceback" not in proc.stderr and "Unsloth" not in proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["unsloth", "hf"])
def test_a_real_run_resumes_with_its_own_settings_only(Config, tiny_model_dir, tmp_path, backend):
    """What each backend really writes: the same flags pass (no false alarm), a changed rank does not."""
    data = write_nothing_to_extract(tmp_path / "data.jsonl")
    out = tmp_path / "run"
    args = tiny_args(tiny_model_dir, data, out, f"--backend={backend}", "--stages=sft", "--sft_max_steps=2")
    run_recipe_ok(*args)
    assert validate.saved_adapter_configs(out)  # the adapter and its checkpoints
    flags = {a[2:].split("=", 1)[0]: a.split("=", 1)[1] if "=" in a else True for a in args}
    assert from_flags(Config, {**flags, "stages": "grpo", "resume": True}).resume
    message = _error(Config, {**flags, "stages": "grpo", "resume": True, "lora_r": 4})
    assert "was trained with --lora_r=16, and the flags give --lora_r=4" in message


# --- item 2: unsloth's vLLM standby ------------------------------------------------------------------


STANDBY = ("UNSLOTH_VLLM_STANDBY", "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE")


@pytest.fixture
def clean_env(monkeypatch):
    for key in STANDBY:
        monkeypatch.delenv(key, raising=False)


def test_standby_is_set_for_unsloths_vllm_only(Config, gpu, clean_env, monkeypatch):
    env_defaults(from_flags(Config, {}))
    env_defaults(from_flags(Config, {"backend": "hf", "vllm_mode": "colocate", "load_in_4bit": False}))
    assert not any(key in os.environ for key in STANDBY)
    env_defaults(from_flags(Config, {"vllm_mode": "colocate"}))  # = --fast_inference on unsloth
    assert [os.environ[key] for key in STANDBY] == ["1", "1"]
    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "0")  # the user's environment wins
    env_defaults(from_flags(Config, {"fast_inference": True}))
    assert os.environ["UNSLOTH_VLLM_STANDBY"] == "0"


def test_the_recipe_command_sets_standby_before_main_runs(Config, gpu, clean_env):
    from t2g.train.config import cli

    seen = cli(Config, lambda cfg: {key: os.environ.get(key) for key in STANDBY}, argv=["--fast_inference"])
    assert seen == {"UNSLOTH_VLLM_STANDBY": "1", "UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE": "1"}


class FakeEngine:
    """The parts of vllm.LLM that standby touches."""

    def __init__(self, sleep_mode: bool):
        config = types.SimpleNamespace(enable_sleep_mode=sleep_mode)
        self.llm_engine = types.SimpleNamespace(vllm_config=types.SimpleNamespace(model_config=config))
        self.slept: list[int] = []

    def sleep(self, level):
        self.slept.append(level)


def _fake_cuda(monkeypatch, free_after_sleep: float):
    import torch

    gib = 2 ** 30
    readings = iter([(10 * gib, 80 * gib), (free_after_sleep * gib, 80 * gib)])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: next(readings))


def test_the_engine_sleeps_after_loading_and_says_what_it_freed(monkeypatch, capsys):
    from t2g.train.model_loading import vllm_standby

    engine = FakeEngine(sleep_mode=True)
    _fake_cuda(monkeypatch, free_after_sleep=52.5)
    assert vllm_standby(types.SimpleNamespace(vllm_engine=engine)) is True
    assert engine.slept == [1]  # level 1: KV cache released, the weights shared with training kept
    assert "vLLM standby: asleep until GRPO generates; GPU memory free 10.00 -> 52.50 GiB of 80.00 GiB" in capsys.readouterr().err


def test_without_sleep_mode_it_warns_and_leaves_the_engine_awake(monkeypatch, capsys):
    from t2g.train.model_loading import vllm_standby

    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "0")
    engine = FakeEngine(sleep_mode=False)
    assert vllm_standby(types.SimpleNamespace(vllm_engine=engine)) is False
    assert engine.slept == []
    assert "vLLM holds --gpu_memory_utilization of the GPU through SFT" in capsys.readouterr().err


def test_unsloth_loading_with_fast_inference_puts_vllm_to_sleep(Config, gpu, monkeypatch, tiny_model_dir):
    """_load_unsloth against a stand-in FastLanguageModel: the vLLM settings reach from_pretrained and
    the engine sleeps once the LoRA is on."""
    import torch

    from t2g.train import model_loading

    engine, calls = FakeEngine(sleep_mode=True), {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(model_name, **kwargs):
            calls["load"] = kwargs
            model = torch.nn.Linear(2, 2)
            model.vllm_engine = engine
            return model, types.SimpleNamespace(pad_token=None, eos_token="</s>")

        @staticmethod
        def get_peft_model(model, **kwargs):
            assert engine.slept == []  # the LoRA goes on while vLLM is awake
            return model

    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FastLanguageModel))
    _fake_cuda(monkeypatch, free_after_sleep=40)
    cfg = from_flags(Config, {"fast_inference": True, "gpu_memory_utilization": 0.5})
    loaded = model_loading._load_unsloth(cfg, str(tiny_model_dir), None)
    assert calls["load"]["fast_inference"] is True and calls["load"]["gpu_memory_utilization"] == 0.5
    assert engine.slept == [1] and loaded.tokenizer.pad_token == "</s>"


# --- the documented GPU commands validate (on a machine with CUDA and vllm) ------------------------


def documented_recipe_commands() -> list[tuple[str, list[str]]]:
    """(file, flags) of every `recipes/grpo_qwen_1_5b.py ...` command in the GPU docs' code blocks."""
    import re
    import shlex

    found = []
    for doc in ("docs/scaling.md", "docs/gpu.md"):
        text = (MAIN_RECIPE.parents[1] / doc).read_text()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for command in block.replace("\\\n", " ").splitlines():
                words = shlex.split(command.split(" #")[0])
                if "recipes/grpo_qwen_1_5b.py" in words:
                    found.append((doc, words[words.index("recipes/grpo_qwen_1_5b.py") + 1:]))
    return found


def test_the_documented_gpu_commands_validate(Config, gpu):
    from t2g.flags import read_command_line

    commands = documented_recipe_commands()
    vllm = [flags for _, flags in commands if any("vllm_mode" in f or "fast_inference" in f for f in flags)]
    assert len(vllm) >= 4, commands  # server, colocate (one GPU and DDP), fast_inference
    for doc, flags in commands:
        given = {k: v for k, v in read_command_line(flags, "recipe").items() if k not in ("output_dir", "resume")}
        assert from_flags(Config, given), (doc, flags)
