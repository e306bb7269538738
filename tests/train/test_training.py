"""The real recipe, run as a user runs it, on the tiny model on CPU: SFT then GRPO on both backends,
and a run stopped after a checkpoint that resumes to the end.

Settings keep each run to ~15-30 s alone: 8 SFT steps, 2 GRPO steps of 2 prompts x 4 completions
x 16 tokens. The data are short texts with nothing to extract (answer: the 9-token empty graph),
and lm_head is trained in full (`--lora_target_modules=...,lm_head`): the tiny model's random
tied embeddings cap its logits near uniform, so without that no completion would ever end before
the limit, every reward of a group would tie, and GRPO would (rightly) change nothing. With it,
after SFT some completions end early and some do not: the group's rewards differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import rewards
from recipe_run import lora_tensors, run_recipe_ok, tiny_args, write_nothing_to_extract
from t2g.task.prompts import PROMPT_VERSION

GRPO_NAMES = [f.__name__ for f in rewards.build(rewards.DEFAULT_WEIGHTS)[0]]


@pytest.fixture(scope="module")
def nothing_to_extract(tmp_path_factory) -> Path:
    return write_nothing_to_extract(tmp_path_factory.mktemp("data") / "empty-graphs.jsonl")


def tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(folder.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event files under {folder}"
    out: dict[str, list] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def train_steps(history: list[dict]) -> list[int]:
    return [row["step"] for row in history if "loss" in row]


# unsloth: SFT and GRPO, on a CPU that computes in bf16 (AMX / AVX512-BF16) and on one that does not, whatever
# CPU runs the test (UNSLOTH_CPU_BF16 decides what unsloth believes); hf: the whole recipe, export (GGUF,
# Modelfile, parity) and evaluation included.
UNSLOTH_4BIT = ["--load_in_4bit=True", "--stages=sft,grpo"]


@pytest.mark.slow
@pytest.mark.parametrize("backend, extra, env", [("unsloth", UNSLOTH_4BIT, {"UNSLOTH_CPU_BF16": "1"}),
                                                 ("unsloth", UNSLOTH_4BIT, {"UNSLOTH_CPU_BF16": "0"}), ("hf", [], {})],
                         ids=["unsloth-bf16-cpu", "unsloth-fp32-cpu", "hf"])
def test_recipe_sft_then_grpo(tiny_model_dir, nothing_to_extract, tmp_path, backend, extra, env):
    out = tmp_path / "run"
    proc = run_recipe_ok(*tiny_args(tiny_model_dir, nothing_to_extract, out, f"--backend={backend}", *extra), env=env)
    assert proc.stdout.rstrip().splitlines()[-1] == f"run directory: {out.resolve()}"

    # The run directory is complete.
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == backend and config["model"] == str(tiny_model_dir)
    info = json.loads((out / "run.json").read_text())
    assert info["prompt_version"] == PROMPT_VERSION and info["backend"] == backend
    assert info["versions"]["trl"] and info["versions"]["torch"]
    # bitsandbytes NF4 on CPU, trained after GRPO's generate() (the AVX512-BF16 repack is kept off)
    assert info["loaded_in_4bit"] is (backend == "unsloth")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapter"] == str((out / "grpo" / "adapter").resolve())
    for stage, steps in (("sft", 8), ("grpo", 2)):
        assert json.loads((out / stage / "done.json").read_text())["steps"] == steps
        assert (out / stage / f"checkpoint-{steps}" / "trainer_state.json").is_file()

    # LoRA B matrices start at zero: SFT moved them, GRPO moved them again.
    sft, grpo = lora_tensors(out / "sft" / "adapter"), lora_tensors(out / "grpo" / "adapter")
    assert any(v.abs().sum() > 0 for k, v in sft.items() if "lora_B" in k)
    history = json.loads((out / "grpo" / "log_history.json").read_text())
    assert train_steps(history) == [1, 2]
    assert any(row.get("frac_reward_zero_std", 1) < 1 for row in history), "no GRPO step had a learning signal"
    changed = [k for k in sft if "lora_" in k and not torch.equal(sft[k], grpo[k])]
    assert changed, "GRPO did not change the LoRA weights"

    # Reward metrics are logged under their registry names, in TensorBoard and the log history.
    scalars = tb_scalars(out / "tb" / "grpo")
    for name in GRPO_NAMES:
        assert f"train/rewards/{name}/mean" in scalars, sorted(scalars)
        assert all(f"rewards/{name}/mean" in row for row in history if "loss" in row)
    assert "train/loss" in tb_scalars(out / "tb" / "sft")

    # Samples: every step, each completion with its score per reward.
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 1} and len(samples) == 16
    assert all(set(s["rewards"]) == set(GRPO_NAMES) and isinstance(s["completion"], str) for s in samples)
    assert "[grpo step 0] sample" in proc.stdout

    if backend == "hf":  # export and evaluation ran on the final (GRPO) adapter
        export = out / "export"
        manifest = json.loads((export / "export.json").read_text())
        assert manifest["ggufs"] and all((export / name).is_file() for name in manifest["ggufs"])
        assert f"\nFROM ./{manifest['ggufs'][0]}\n" in (export / "Modelfile").read_text()
        parity = json.loads((export / "parity.json").read_text())
        assert len(parity["examples"]) == 4 and {"hf", "gguf_side", "passed"} <= set(parity)
        report = json.loads((out / "eval" / "report.json").read_text())
        assert report["run"]["model"] == str(export / manifest["ggufs"][0]) and report["n_examples"] == 8
        assert summary["export"] and summary["evaluation"]
        assert not (export / "hf").exists()  # --smoke keeps no 16-bit copy


@pytest.mark.slow
def without_trained_lm_head(args: list[str]) -> list[str]:
    """tiny_args for --rollout=llama.cpp: a LoRA adapter cannot carry a fully trained lm_head."""
    return [a.replace(",lm_head", "") if a.startswith("--lora_target_modules=") else a for a in args]


@pytest.mark.parametrize("rollout", ["trainer", "llama.cpp"])
def test_resume_continues_from_the_last_checkpoint(tiny_model_dir, nothing_to_extract, tmp_path, rollout):
    out = tmp_path / "run"
    args = tiny_args(tiny_model_dir, nothing_to_extract, out, "--backend=hf", "--stages=sft,grpo", f"--rollout={rollout}")
    if rollout == "llama.cpp":
        args = without_trained_lm_head(args)
        args.append("--dynamic_sampling_spares=1")
    run_recipe_ok(*args)  # stops at GRPO step 2 (a checkpoint every step)
    proc = run_recipe_ok(*args, "--grpo_max_steps=4", "--resume")
    assert "sft: already finished (8 steps); skipping" in proc.stderr
    assert f"grpo: resuming from {(out / 'grpo' / 'checkpoint-2').resolve()}" in proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1] == f"run directory: {out.resolve()}"

    history = json.loads((out / "grpo" / "log_history.json").read_text())
    assert train_steps(history) == [1, 2, 3, 4]  # nothing lost, nothing repeated
    assert json.loads((out / "grpo" / "done.json").read_text())["steps"] == 4
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted({s["step"] for s in samples}) == [0, 1, 2, 3]
    # The trainer state carried on from checkpoint-2 (optimizer, scheduler and weights load with it).
    state = json.loads((out / "grpo" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and train_steps(state["log_history"]) == [1, 2, 3, 4]
    assert json.loads((out / "run.json").read_text())["grpo_rollout"] == rollout
    if rollout == "llama.cpp":  # the cached f32 base GGUF (an fp32 trainer's) stays; no adapter file is left behind
        left = sorted(p.name for p in (out / "grpo" / "rollout").iterdir())
        assert left and all(name.endswith(".f32.gguf") and "adapter" not in name for name in left), left
        assert json.loads((out / "run.json").read_text())["grpo_rollout_base"] == "f32"
        assert any("dynamic_sampling/flat_groups" in row for row in history)
        assert all(row["dynamic_sampling/passes"] >= 1 for row in history if "dynamic_sampling/passes" in row)
        assert any("dynamic_sampling/passes" in row for row in history)


@pytest.mark.slow
def test_bf16_autocast_trains_on_cpu(tiny_model_dir, nothing_to_extract, tmp_path):
    """--dtype=bf16 without CUDA: the Trainer needs use_cpu for CPU autocast (it refused to start before), and
    llama.cpp samples from a bf16 GGUF of the base, the weights the trainer holds."""
    out = tmp_path / "run"
    args = tiny_args(tiny_model_dir, nothing_to_extract, out, "--backend=hf", "--stages=sft,grpo", "--dtype=bf16",
                     "--rollout=llama.cpp")
    proc = run_recipe_ok(*without_trained_lm_head(args))
    assert train_steps(json.loads((out / "grpo" / "log_history.json").read_text())) == [1, 2]
    assert "llama.cpp samples from a bf16 GGUF of the base (--rollout_base=auto)" in proc.stderr
    assert json.loads((out / "run.json").read_text())["grpo_rollout_base"] == "bf16"
    assert [p.name.endswith(".bf16.gguf") for p in (out / "grpo" / "rollout").iterdir()] == [True]
    sft, grpo = lora_tensors(out / "sft" / "adapter"), lora_tensors(out / "grpo" / "adapter")
    assert any(not torch.equal(sft[k], grpo[k]) for k in sft if "lora_" in k)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bf16"


@pytest.mark.parametrize("compute, trainable, autocast, expected", [
    (torch.float32, torch.bfloat16, False, torch.float32),  # TRL's bf16 QLoRA weights under fp32 compute: raised
    (torch.bfloat16, torch.float32, False, torch.float32),  # PEFT's fp32 LoRA beside a bf16 base: kept
    (torch.float32, torch.bfloat16, True, torch.bfloat16),  # bf16 autocast: TRL's choice stands
])
def test_trainable_weights_follow_the_compute_dtype_without_autocast(compute, trainable, autocast, expected):
    from types import SimpleNamespace

    from t2g.train.trainer_args import trainable_in_compute_dtype

    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(4, 2).to(compute).requires_grad_(False)
    model.get_input_embeddings = lambda: model.embed
    model.adapter = torch.nn.Linear(2, 2).to(trainable)
    model.frozen = torch.nn.Linear(2, 2).to(torch.bfloat16).requires_grad_(False)
    trainer = SimpleNamespace(model=model, args=SimpleNamespace(bf16=autocast, fp16=False))
    trainable_in_compute_dtype(trainer)
    assert model.adapter.weight.dtype == model.adapter.bias.dtype == expected
    assert model.frozen.weight.dtype == torch.bfloat16 and model.embed.weight.dtype == compute


def test_cpu_precision_flags_and_fp16_refused_before_loading():
    from t2g.train.config import TrainConfig
    from t2g.train.validate import ConfigError, validate
    from t2g.train.trainer_args import cpu_args, precision

    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 autocast is valid there")
    with pytest.raises(ConfigError, match="--dtype=fp16"):
        validate(TrainConfig(dtype="fp16", output_dir="unused"))
    bf16 = TrainConfig(dtype="bf16")
    assert {**precision(bf16), **cpu_args(bf16)} == {"bf16": True, "fp16": False, "use_cpu": True}
    assert {**precision(TrainConfig()), **cpu_args(TrainConfig())} == {"bf16": False, "fp16": False}


# ----------------------------------------------------------------------------------------------
# The pieces, fast


@pytest.mark.parametrize("softcap, scale, temperature", [(None, 1.0, 1.0), (30.0, 0.5, 0.7)])
def test_cpu_log_probs_match_a_full_softmax(softcap, scale, temperature):
    from t2g.train.trl_without_gpu import torch_log_probs

    torch.manual_seed(0)
    hidden = torch.randn(7, 16, requires_grad=True)
    weight, bias, targets = torch.randn(50, 16), torch.randn(50), torch.randint(0, 50, (7,))
    logp, entropy, _, _, is_top1 = torch_log_probs(hidden, weight, bias, targets, temperature, None, softcap, scale,
                                                   outputs=("entropy", "is_top1"))
    z = (hidden @ weight.t() + bias) * scale
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    ref = torch.log_softmax(z / temperature, -1)
    assert torch.allclose(logp, ref.gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy, -(ref.exp() * ref).sum(-1), atol=1e-5)
    assert torch.equal(is_top1, z.argmax(-1) == targets)
    logp.sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0


def test_last_complete_checkpoint_skips_a_half_written_one(tmp_path):
    from t2g.train.runs import last_complete_checkpoint

    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_sample_log_keeps_names_and_records_every_n_steps(tmp_path):
    from types import SimpleNamespace

    from t2g.train.runs import Run, SampleLog

    funcs, weights = rewards.build({"json_valid": 1.0, "entity_f1": 2.0})
    printed: list[str] = []
    log = SampleLog(Run(tmp_path, None), "grpo", every=2, weights=weights, print_fn=printed.append)
    wrapped = log.wrap(funcs)
    assert [f.__name__ for f in wrapped] == ["json_valid", "entity_f1"]
    gold = '{"entities": [{"text": "Ada", "type": "person"}], "relations": []}'
    batch = dict(prompts=["p", "p"], completions=[gold, "junk"], text=["Ada wrote."] * 2, entity_types=[["person"]] * 2,
                 relation_types=[[]] * 2, graph=[gold] * 2, id=["a", "a"])
    for step in range(4):
        scores = [f(**batch, trainer_state=SimpleNamespace(global_step=step)) for f in wrapped]
    assert scores == [[1.0, 0.0], [1.0, 0.0]]
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 0, 2, 2]
    assert rows[0]["rewards"] == {"json_valid": 1.0, "entity_f1": 1.0} and rows[0]["reward"] == 3.0
    assert rows[1]["reward"] == 0.0 and len(printed) == 2
