"""t2g.train.malloc (glibc or mimalloc, chosen at process start) and t2g.train.cpu_features (native bf16 or not)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from t2g.train import malloc as allocator
from t2g.train import cpu_features as cpu
from t2g.train import validate as validation
from t2g.train.config import TrainConfig, validate

REPO = Path(__file__).resolve().parents[2]
PROBE = "from t2g.train import malloc; print(malloc.active())"


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)


@pytest.fixture()
def mimalloc_lib() -> Path:
    try:
        return allocator.library("mimalloc")
    except allocator.AllocatorError as exc:
        pytest.fail(f"the cpu extra is part of the test environment (scripts/setup_env.sh): {exc}")


def test_glibc_needs_no_library_and_unknown_names_are_refused():
    assert allocator.library("glibc") is None
    with pytest.raises(allocator.AllocatorError, match="choose one of glibc, mimalloc"):
        allocator.library("jemalloc")


def test_environment_preloads_mimalloc_and_keeps_other_preloads(mimalloc_lib):
    env = allocator.environment("mimalloc", {"LD_PRELOAD": "/opt/other.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"].split(":") == [str(mimalloc_lib), "/opt/other.so"]
    assert env["PATH"] == "/bin"
    assert env["MIMALLOC_PURGE_DELAY"] == "-1"  # keep freed pages (purging them cost a third of a step)
    assert allocator.environment("mimalloc", {"MIMALLOC_PURGE_DELAY": "10"})["MIMALLOC_PURGE_DELAY"] == "10"
    back = allocator.environment("glibc", env)  # glibc means glibc: the preloaded mimalloc is taken out
    assert back["LD_PRELOAD"] == "/opt/other.so"
    assert "LD_PRELOAD" not in allocator.environment("glibc", {"LD_PRELOAD": str(mimalloc_lib)})


def test_active_reads_the_process_not_the_environment(mimalloc_lib):
    assert run_python(PROBE, allocator.environment("mimalloc")).stdout.strip() == "mimalloc"
    assert run_python(PROBE, allocator.environment("glibc")).stdout.strip() == "glibc"
    # LD_PRELOAD naming a library that is not there: the loader skips it, the process runs on glibc.
    env = dict(os.environ, LD_PRELOAD="/nonexistent/libmimalloc.so")
    assert run_python(PROBE, env).stdout.strip() == "glibc"


def test_reexec_restarts_the_command_under_mimalloc_once(mimalloc_lib, tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import sys
        from t2g.train import malloc as allocator
        allocator.reexec_with(sys.argv[1])
        print(allocator.active(), sys.argv[2:])
    """))
    env = allocator.environment("glibc")
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, str(script), "mimalloc", "--keep", "args"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "mimalloc ['--keep', 'args']"
    assert proc.stderr.count("restarting under the mimalloc allocator") == 1
    # Already on glibc: no restart at all.
    proc = subprocess.run([sys.executable, str(script), "glibc"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "glibc []" and "restarting" not in proc.stderr


def test_reexec_that_does_not_take_is_an_error_not_a_loop(monkeypatch):
    monkeypatch.setenv("T2G_ALLOCATOR_REEXEC", "mimalloc")  # as after a restart whose preload did not load
    with pytest.raises(allocator.AllocatorError, match="still runs on glibc"):
        allocator.reexec_with("mimalloc")


def test_missing_mimalloc_names_the_install(monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(allocator.AllocatorError, match=r"pip install 'cmeel-mimalloc==3\.4\.3'"):
        allocator.library("mimalloc")


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse2 avx2 fma", False),  # an AVX2-only EPYC: bf16 is emulated
    ("fpu avx512f avx512_bf16", True),
    ("fpu avx512f amx_bf16 amx_tile", True),
])
def test_native_bf16_from_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Test CPU", "flags": flags})
    assert cpu.native_bf16() is expected
    assert cpu.training_dtype() == ("bf16" if expected else "fp32")


def test_unknown_cpu_trains_in_fp32(monkeypatch):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {})
    assert cpu.native_bf16() is None and cpu.training_dtype() == "fp32"
    assert cpu.model_name() == "unknown CPU"


def test_bf16_on_a_cpu_that_emulates_it_warns(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(validation, "cuda_available", lambda: False)
    for flags, warned in (("avx2", True), ("avx512_bf16", False)):
        monkeypatch.setattr(cpu, "_cpuinfo", lambda flags=flags: {"model name": "Test CPU", "flags": flags})
        validate(TrainConfig(dtype="bf16", output_dir=str(tmp_path)))
        err = capsys.readouterr().err
        assert ("--dtype=bf16 on a CPU without AMX or AVX512-BF16 (Test CPU)" in err) is warned, err
    validate(TrainConfig(dtype="fp32", output_dir=str(tmp_path)))
    assert "bf16" not in capsys.readouterr().err
