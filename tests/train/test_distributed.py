"""The recipe under `accelerate launch` with 2 CPU processes (DDP over gloo) on the tiny model.

Each rank writes a hash of its LoRA weights at the end of each stage (T2G_RANK_REPORT): DDP must
keep them identical. Only rank 0 may write the run directory (one directory, one sample log, one
TensorBoard file per stage; the Trainer's per-rank RNG states in checkpoints are the exception).

`accelerate launch --cpu --num_processes 2` starts ONE process in accelerate 1.15 (several CPU
processes need MPI), so the 2-process launch here uses the shipped configs/accelerate/ddp.yaml
(MULTI_GPU), which on a machine without GPUs runs torchrun with a gloo group; t2g tells the Trainer
it is on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from recipe_run import (ACCELERATE, ACCELERATE_CONFIGS, MAIN_RECIPE, REPO, accelerate_launch, lora_tensors,
                        run_recipe, tiny_args, write_nothing_to_extract)


def launch(*args: str, cwd, env: dict | None = None, timeout: float = 240):
    """The recipe as 2 processes; one thread each, as the machine's cores are shared between the ranks."""
    return run_recipe(*args, launcher=accelerate_launch(2), cwd=cwd, env={"OMP_NUM_THREADS": "1", **(env or {})},
                      timeout=timeout)


@pytest.fixture()
def empty_graphs(tmp_path):
    return write_nothing_to_extract(tmp_path / "empty-graphs.jsonl")


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="needs the accelerate CLI beside this python")
def test_two_processes_train_one_adapter_and_rank0_writes(tiny_model_dir, empty_graphs, tmp_path):
    reports, work = tmp_path / "ranks", tmp_path / "work"
    work.mkdir()
    # No --output_dir: the timestamped default must come out the same on both ranks.
    args = tiny_args(tiny_model_dir, empty_graphs, None)
    proc = launch(*args, "--backend=hf", "--run_name=dist", cwd=work, env={"T2G_RANK_REPORT": str(reports)})
    assert proc.returncode == 0, f"launch failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    runs = list((work / "runs").iterdir())
    assert len(runs) == 1, f"ranks made different run directories: {runs}"
    run = runs[0].resolve()
    announced = [line for line in proc.stdout.splitlines() if line.startswith("run directory:")]
    assert announced == [f"run directory: {run}"]  # rank 0 alone, once

    # Both ranks trained, in one group, to the same weights; GRPO moved them after SFT.
    digests = {}
    for stage, steps in (("sft", 8), ("grpo", 2)):
        found = [json.loads((reports / f"{stage}-rank{r}.json").read_text()) for r in (0, 1)]
        assert [f["rank"] for f in found] == [0, 1] and {f["world_size"] for f in found} == {2}
        assert {f["steps"] for f in found} == {steps} and {f["run_dir"] for f in found} == {str(run)}
        assert found[0]["lora_tensors"] > 0
        assert found[0]["lora_sha256"] == found[1]["lora_sha256"], f"{stage}: the ranks' LoRA weights differ"
        digests[stage] = found[0]["lora_sha256"]
    assert digests["sft"] != digests["grpo"], "GRPO did not change the LoRA weights"
    sft, grpo = lora_tensors(run / "sft" / "adapter"), lora_tensors(run / "grpo" / "adapter")
    assert any(not (sft[k] == grpo[k]).all() for k in sft)

    # The run directory is complete, and written once.
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    assert json.loads((run / "config.json").read_text())["backend"] == "hf"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["adapter"] == str(run / "grpo" / "adapter")
    for stage, steps in (("sft", 8), ("grpo", 2)):
        assert json.loads((run / stage / "done.json").read_text())["steps"] == steps
        events = list((run / "tb" / stage).rglob("events.out.tfevents.*"))
        assert len(events) == 1, f"{stage}: TensorBoard files from more than one rank: {events}"
        ckpt = run / stage / f"checkpoint-{steps}"
        assert (ckpt / "trainer_state.json").is_file()
        assert {p.name for p in ckpt.glob("rng_state*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}  # Trainer: one per rank
    # 2 GRPO steps x 8 completions per device, logged by rank 0 only (both ranks would make 32 rows).
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and {s["step"] for s in samples} == {0, 1}
    assert not list(run.rglob("*.tmp")), "a temporary adapter folder was left behind"


@pytest.mark.slow
@pytest.mark.skipif(not ACCELERATE.exists(), reason="needs the accelerate CLI beside this python")
def test_unsloth_backend_refuses_a_two_process_launch(tmp_path):
    proc = launch("--smoke", cwd=tmp_path, timeout=180)
    assert proc.returncode != 0
    assert "--backend=unsloth trains on one GPU in one process, and this is a 2-process launch" in proc.stderr
    assert "use --backend=hf" in proc.stderr
    assert "Traceback (most recent call last):\n  File \"" + str(MAIN_RECIPE) not in proc.stderr  # a message, not a crash
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("deepspeed_zero2", "DEEPSPEED"),
                                        ("deepspeed_zero3", "DEEPSPEED"), ("fsdp", "FSDP")])
def test_shipped_accelerate_configs_load(name, kind):
    """accelerate's own loader accepts each file (it rejects unknown keys) with the intended engine."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(kind) and config.mixed_precision == "no"
    if name.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])
    if name == "fsdp":
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_a_cpu_launch_that_starts_one_process_says_so(monkeypatch):
    """`accelerate launch --cpu --num_processes 2` runs the script once: t2g warns instead of letting
    a one-process run pass for two."""
    from t2g.train import distributed

    code = ("import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', "
            "'from t2g.train.distributed import processes_asked_of_launcher as p; print(p())']).returncode)")
    for launcher_args, expected in ((["launch", "--cpu", "--num_processes", "3"], "3"),
                                    (["launch", "--num_processes=2"], "2"), (["run", "--num_processes", "2"], "None")):
        out = subprocess.run([sys.executable, "-c", code, *launcher_args], capture_output=True, text=True, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert out.stdout.strip() == expected, (launcher_args, out.stdout, out.stderr)

    messages: list[str] = []
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setattr(distributed, "processes_asked_of_launcher", lambda: 2)
    assert distributed.warn_single_cpu_launch(messages.append)
    assert "asked for 2 processes but started ONE" in messages[0] and "--multi_gpu --num_processes 2" in messages[0]
    monkeypatch.setenv("WORLD_SIZE", "2")  # a real 2-process launch: nothing to say
    assert not distributed.warn_single_cpu_launch(messages.append) and len(messages) == 1
