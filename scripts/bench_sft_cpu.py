"""SFT step time and memory on CPU: malloc (glibc or mimalloc) and dtype (fp32 or bf16), same steps, same run.

    python scripts/bench_sft_cpu.py                                   # glibc vs mimalloc, this CPU's dtype, 160 steps
    python scripts/bench_sft_cpu.py --arms glibc/fp32,glibc/bf16 --steps 3   # bf16 against fp32 on this CPU

Each arm trains the quality benchmark's SFT (scripts/bench_quality.py: SmolLM2-135M-Instruct, LoRA,
CoNLL04 train with its type-augmented copies, batch 4, seed 42) for --steps steps in a fresh process
of its own: an allocator is chosen at process start (t2g.train.malloc), and a process's heap carries its
history. Every arm runs on the same cores, and the seed fixes the batches, so every arm trains on
the same sequences. An arm is `allocator/dtype`; dtype `auto` is bf16 on cores with AMX or AVX512-BF16
and fp32 elsewhere (t2g.train.cpu_features).

Printed per arm: the first step (warm-up) apart, then the mean seconds a step over the first and the
last quarter of the remaining steps and over all of them, the resident memory at the end and at its
peak, and each against the first arm (the baseline), measured in this run; and whether the arm trained
the same adapter bytes as the baseline (an allocator must not change the numbers; a dtype does).
Why: the docs' fourth run slowed from 2.7 to 4.5 s a step as its resident memory grew to 10 GB under
glibc's malloc.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from t2g.flags import FlagError, flag, run  # noqa: E402  (light)
from t2g.train import cpu_features as cpu  # noqa: E402  (light: no torch)
from t2g.train import malloc as allocator  # noqa: E402

DTYPES = ("auto", "fp32", "bf16")


@dataclass
class Flags:
    """SFT step time and memory on CPU: malloc (glibc or mimalloc) and dtype (fp32 or bf16), same steps, same run."""

    arms: tuple[str, ...] = flag(("glibc/auto", "mimalloc/auto"), "comma-separated allocator/dtype pairs; the first "
                                                                  "is the baseline")
    steps: int = flag(160, "SFT steps per arm (the docs' run slowed after ~100)")
    threads: int = flag(2, "cores each arm is pinned to (the quality benchmark's SFT uses 2)")
    first_core: int = flag(0, "the first of those cores")
    seed: int = flag(42, "the training seed (it fixes the batches)")
    out: str = flag("/tmp/t2g-bench-sft-cpu", "scratch folder (emptied per arm)")


# One arm in a process of its own, started under its allocator (LD_PRELOAD in its environment).
WORKER = r"""
import sys
sys.path[:0] = [{scripts!r}, {repo!r}]
import bench_sft_cpu
bench_sft_cpu.worker({out!r}, steps={steps}, threads={threads}, first_core={first_core}, seed={seed}, dtype={dtype!r})
"""


def rss_mb() -> tuple[float, float]:
    """(resident now, resident peak) of this process in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def worker(out: str, steps: int, threads: int, first_core: int, seed: int, dtype: str) -> None:
    """One arm's SFT run (this process was started under its allocator); writes <out>/result.json."""
    from bench_grpo_overhead import step_timer
    from quality_stages import FULL, set_threads, train_config

    set_threads(threads, first_core)
    from t2g.files import write_json_atomic
    from t2g.train import pipeline as train

    out = Path(out)
    sizes = replace(FULL, sft_steps=steps, select_every=steps)
    session = train.start(train_config(out / "run", sizes, seed, "sft", dtype=dtype))
    timer = step_timer()
    session.callbacks.append(timer)
    train.sft(session)
    now, peak = rss_mb()
    weights = (session.run.adapter_dir("sft") / "adapter_model.safetensors").read_bytes()
    write_json_atomic(out / "result.json", {"allocator": allocator.active(), "step_s": timer.durations(),
                                            "rss_end_mb": round(now), "rss_peak_mb": round(peak),
                                            "adapter_sha256": hashlib.sha256(weights).hexdigest()})


def parse_arms(items: tuple[str, ...]) -> list[tuple[str, str]]:
    arms = []
    for item in items:
        name, _, dtype = item.partition("/")
        dtype = dtype or "auto"
        if name not in allocator.ALLOCATORS or dtype not in DTYPES:
            raise FlagError(f"--arms: {item!r} is not allocator/dtype with allocator one of "
                            f"{', '.join(allocator.ALLOCATORS)} and dtype one of {', '.join(DTYPES)}")
        arms.append((name, cpu.training_dtype() if dtype == "auto" else dtype))
    if not arms:
        raise FlagError("--arms is empty; e.g. --arms glibc/fp32,mimalloc/fp32")
    return arms


def summarize(label: str, result: dict) -> dict:
    steps = result["step_s"]
    rest = steps[1:] or steps
    quarter = max(1, len(rest) // 4)
    return {"arm": label, "steps": len(steps), "warmup_s": steps[0], "first_s": statistics.mean(rest[:quarter]),
            "last_s": statistics.mean(rest[-quarter:]), "mean_s": statistics.mean(rest),
            "rss_end_mb": result["rss_end_mb"], "rss_peak_mb": result["rss_peak_mb"], "adapter_sha256": result["adapter_sha256"]}


def bench(flags: Flags) -> list[dict]:
    if flags.steps < 2:
        raise FlagError("--steps must be >= 2 (the first step is warm-up, reported apart)")
    arms = parse_arms(flags.arms)
    envs = {name: allocator.environment(name) for name, _ in arms}  # a missing mimalloc fails here, before training
    rows = []
    for name, dtype in arms:
        label = f"{name}/{dtype}"
        out = Path(flags.out) / label.replace("/", "-")
        shutil.rmtree(out, ignore_errors=True)
        code = WORKER.format(scripts=str(REPO / "scripts"), repo=str(REPO), out=str(out), steps=flags.steps,
                             threads=flags.threads, first_core=flags.first_core, seed=flags.seed, dtype=dtype)
        print(f"bench_sft_cpu: {label}: {flags.steps} SFT steps on {flags.threads} core(s), started {time.strftime('%H:%M:%S')}",
              flush=True)
        done = subprocess.run([sys.executable, "-c", code], env=envs[name])
        if done.returncode != 0:
            sys.exit(f"bench_sft_cpu: the {label} run failed (exit {done.returncode}); its output is above")
        result = json.loads((out / "result.json").read_text())
        if result["allocator"] != name:
            sys.exit(f"bench_sft_cpu: the {label} run ran on {result['allocator']} (LD_PRELOAD not honoured?)")
        rows.append(summarize(label, result))
    print(report(rows, flags))
    return rows


def report(rows: list[dict], flags: Flags) -> str:
    base = rows[0]
    lines = [f"\nSFT on CoNLL04, SmolLM2-135M-Instruct, batch 4, {flags.steps} steps on {flags.threads} core(s) of "
             f"{cpu.model_name()} (native bf16: {cpu.native_bf16()}); ratios against {base['arm']} measured in this run "
             f"(< 1: faster / smaller). Step times exclude the first (warm-up) step.",
             f"{'arm':<15} {'warm-up s':>9} {'first 1/4 s/step':>16} {'last 1/4 s/step':>15} {'mean s/step':>11} "
             f"{'vs base':>7} {'RSS end MB':>10} {'RSS peak MB':>11} {'vs base':>7}  same weights as base"]
    for r in rows:
        lines.append(f"{r['arm']:<15} {r['warmup_s']:>9.1f} {r['first_s']:>16.2f} {r['last_s']:>15.2f} {r['mean_s']:>11.2f} "
                     f"{r['mean_s'] / base['mean_s']:>7.2f} {r['rss_end_mb']:>10} {r['rss_peak_mb']:>11} "
                     f"{r['rss_peak_mb'] / base['rss_peak_mb']:>7.2f}  {'yes' if r['adapter_sha256'] == base['adapter_sha256'] else 'no'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    return run(Flags, bench, argv, errors=(allocator.AllocatorError,)) or []


if __name__ == "__main__":
    main()
