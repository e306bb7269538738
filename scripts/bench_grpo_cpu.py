"""GRPO on CPU: today's step against each of issue 17's pieces alone and all together, same run.

    python scripts/bench_grpo_cpu.py                         # every arm, 2 rounds of 3 steps, both cores
    python scripts/bench_grpo_cpu.py --arms today,all --steps 2 --rounds 1   # a quick look

Every arm starts GRPO from the same SFT adapter (a short CoNLL04 SFT of SmolLM2-135M-Instruct,
trained once into --out and reused), with the quality benchmark's settings (scripts/quality_stages.py:
4 prompts x 4 completions a step, temperature 0.7, lr 1e-4) and the same seed, so every arm sees the
same prompts. The arms:

    today             model.generate, the prompt computed once per completion, 256 tokens at most
    llama.cpp         --rollout=llama.cpp: completions sampled by llama.cpp from the current policy
    shared_prefix     --shared_prefix=on: each group's prompt computed once in the loss
    auto_length       --max_completion_length=auto: the limit from the training targets
    dynamic_sampling  llama.cpp + --dynamic_sampling=2: groups that teach nothing replaced
    spares            dynamic_sampling + --dynamic_sampling_spares=2: replacements sampled in the first pass
    all               all of the above but spares (the defaults)
    all_f32_base      all, llama.cpp sampling from an f32 base whatever the trainer's dtype (before the base
                      followed it: on a CPU with native bf16 the trainer holds its base in bf16)
    all_spares        all of the above
    all_streams_kept  all, with llama.cpp's rows left on their KV streams as rows finish (before the twenty-first
                      session: llama.cpp then decodes the rows still going in one pass per run of consecutive streams)
    all_groups_padded all, with the groups of a micro-batch in one padded forward of the loss (before the
                      twenty-first session; now each group is a forward of its own on a CPU)

Arms run in a fresh process each (peak memory is the process's), alternating: round 1 runs every arm,
then round 2 again (seed + 1), so that a machine that slows or speeds up over the run weighs on every
arm alike. Printed per arm, over all its steps: seconds a step, completion tokens a second (the
trained completions), informative completions a second (completions in groups whose rewards differ:
the only ones with a gradient), each as a ratio to `today` measured in the same run, llama.cpp's
sampling seconds a step, and the peak resident memory. Finished (arm, round) results are kept in
--out, so a run that was cut off continues.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from t2g.flags import FlagError, flag, run  # noqa: E402  (light)

BASE = dict(rollout="trainer", shared_prefix="off", dynamic_sampling=0, max_completion_length=256)
ARMS = {
    "today": BASE,
    "llama.cpp": {**BASE, "rollout": "llama.cpp"},
    "shared_prefix": {**BASE, "shared_prefix": "on"},
    "auto_length": {**BASE, "max_completion_length": "auto"},
    "dynamic_sampling": {**BASE, "rollout": "llama.cpp", "dynamic_sampling": 2},
    "spares": {**BASE, "rollout": "llama.cpp", "dynamic_sampling": 2, "dynamic_sampling_spares": 2},
    "all": dict(rollout="llama.cpp", shared_prefix="on", dynamic_sampling=2, max_completion_length="auto"),
    "all_f32_base": dict(rollout="llama.cpp", shared_prefix="on", dynamic_sampling=2, max_completion_length="auto",
                         rollout_base="f32"),
    "all_spares": dict(rollout="llama.cpp", shared_prefix="on", dynamic_sampling=2, dynamic_sampling_spares=2,
                       max_completion_length="auto"),
}
# `all` with one of the twenty-first session's changes undone, to measure what each gives (`undo`).
ARMS["all_streams_kept"] = ARMS["all_groups_padded"] = ARMS["all"]


@dataclass
class Flags:
    """GRPO on CPU: today's step against each of issue 17's pieces alone and all together, same run."""

    arms: tuple[str, ...] = flag(tuple(ARMS), "arms to run, comma-separated; the first is the baseline",
                                 choices=tuple(ARMS))
    steps: int = flag(3, "GRPO steps per arm and round")
    rounds: int = flag(2, "rounds (every arm once a round, in order; round r uses seed + r)")
    sft_steps: int = flag(24, "steps of the SFT that every arm starts from (trained once, reused)")
    adapter: str = flag("", "start every arm from this SFT LoRA adapter instead (e.g. a quality-study checkpoint: "
                        "a well-trained model solves more prompts outright, so it has more flat groups)")
    threads: int = flag(2, "cores every arm is pinned to")
    seed: int = flag(42, "the seed of round 0 (data order, sampling)")
    out: str = flag("/tmp/t2g-bench-grpo-cpu", "where the SFT adapter and each (arm, round) result are kept")


WORKER = r"""
import sys
sys.path[:0] = [{scripts!r}, {repo!r}]
import bench_grpo_cpu
bench_grpo_cpu.worker({out!r}, {arm!r}, steps={steps}, threads={threads}, seed={seed}, sft={sft!r})
"""


def peak_rss_mb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]) / 1024


def sft_adapter(flags: Flags) -> Path:
    """The SFT adapter every arm starts from, trained on first use (in its own process, both cores)."""
    if flags.adapter:
        if not (Path(flags.adapter) / "adapter_config.json").is_file():
            raise FlagError(f"--adapter={flags.adapter}: no adapter_config.json there; pass a LoRA adapter folder")
        return Path(flags.adapter)
    folder = Path(flags.out) / "sft"
    adapter = folder / "run" / "sft" / "adapter"
    if not (folder / "run" / "sft" / "done.json").is_file():
        code = SFT.format(scripts=str(REPO / "scripts"), repo=str(REPO), out=str(folder), steps=flags.sft_steps,
                          threads=flags.threads, seed=flags.seed)
        print(f"bench_grpo_cpu: training the SFT adapter ({flags.sft_steps} steps), started {time.strftime('%H:%M:%S')}",
              flush=True)
        if subprocess.run([sys.executable, "-c", code]).returncode != 0:
            sys.exit("bench_grpo_cpu: the SFT run failed; its output is above")
    return adapter


SFT = r"""
import sys
sys.path[:0] = [{scripts!r}, {repo!r}]
from dataclasses import replace
from pathlib import Path
from quality_stages import FULL, set_threads, train_config
set_threads({threads}, 0)
from t2g.train import pipeline
sizes = replace(FULL, sft_steps={steps}, select_every={steps})
pipeline.sft(pipeline.start(train_config(Path({out!r}) / "run", sizes, {seed}, "sft")))
"""


def undo(arm: str) -> None:
    """For the arms that undo a change, the earlier behaviour, by patching the one function that decides it
    (in this arm's process only)."""
    if arm == "all_streams_kept":
        from t2g.infer.llama_batched import _BatchedContext

        _BatchedContext._compact = lambda self, stream, going: list(going)  # rows stay where they are
    elif arm == "all_groups_padded":
        from t2g.train import shared_prefix

        plan = shared_prefix.plan_packs
        shared_prefix.plan_packs = lambda *args, group_per_pack=False, **kwargs: plan(*args, **kwargs)


def worker(out: str, arm: str, steps: int, threads: int, seed: int, sft: str) -> None:
    """One arm's GRPO run from the SFT adapter; writes <out>/result.json."""
    from bench_grpo_overhead import step_timer
    from quality_stages import FULL, set_threads, train_config

    set_threads(threads, 0)
    undo(arm)
    from transformers import TrainerCallback

    from t2g.files import write_json_atomic
    from t2g.train import pipeline
    from t2g.train.session import ensure_model
    from t2g.train.validate import validate

    class Logs(TrainerCallback):
        def __init__(self):
            self.rows: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "frac_reward_zero_std" in logs:
                self.rows.append(dict(logs))

    out_dir = Path(out)
    sizes = replace(FULL, grpo_steps=steps, grpo_select_every=steps)
    cfg = replace(train_config(out_dir / "run", sizes, seed, "grpo"), **ARMS[arm], sample_every=0)
    validate(cfg)
    session = pipeline.start(cfg)
    ensure_model(session, adapter=Path(sft))
    timer, logs = step_timer(), Logs()
    session.callbacks += [timer, logs]
    pipeline.grpo(session)
    completions = cfg.grpo_batch_size * cfg.grpo_grad_accum
    write_json_atomic(out_dir / "result.json", {
        "arm": arm, "seed": seed, "step_s": timer.durations(), "completions_per_step": completions,
        "mean_length": [r.get("completions/mean_length") for r in logs.rows],
        "frac_reward_zero_std": [r["frac_reward_zero_std"] for r in logs.rows],
        "sample_s": [r.get("rollout/sample_seconds") for r in logs.rows],
        "flat_groups": [r.get("dynamic_sampling/flat_groups") for r in logs.rows],
        "passes": [r.get("dynamic_sampling/passes") for r in logs.rows],
        "max_completion_length": cfg.max_completion_length, "peak_rss_mb": round(peak_rss_mb()),
        "rollout": json.loads((session.run.dir / "run.json").read_text()).get("grpo_rollout"),
    })


def summarize(arm: str, results: list[dict]) -> dict:
    seconds = sum(sum(r["step_s"]) for r in results)
    steps = sum(len(r["step_s"]) for r in results)
    tokens = sum(length * r["completions_per_step"] for r in results for length in r["mean_length"] if length)
    informative = sum((1 - z) * r["completions_per_step"] for r in results for z in r["frac_reward_zero_std"])
    sampled = [s for r in results for s in r["sample_s"] if s is not None]  # logged by the llama.cpp rollout only
    return {"arm": arm, "steps": steps, "s_per_step": seconds / steps, "tokens_per_s": tokens / seconds,
            "informative_per_s": informative / seconds,
            "sample_s_per_step": sum(sampled) / len(sampled) if len(sampled) == steps else None,
            "zero_std": statistics.mean(z for r in results for z in r["frac_reward_zero_std"]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results), "limit": results[0]["max_completion_length"]}


def round_ratios(arm: list[dict], base: list[dict]) -> list[float]:
    """The arm's informative completions a second over the baseline's, round by round: the spread behind the
    ratio of the totals (a step's cost follows its longest completion, so rounds differ)."""
    return [summarize("", [a])["informative_per_s"] / max(summarize("", [b])["informative_per_s"], 1e-9)
            for a, b in zip(arm, base)]


def bench(flags: Flags) -> list[dict]:
    if flags.steps < 1 or flags.rounds < 1:
        raise FlagError("--steps and --rounds must be >= 1")
    sft = sft_adapter(flags)
    results: dict[str, list[dict]] = {arm: [] for arm in flags.arms}
    for round_ in range(flags.rounds):
        for arm in flags.arms:
            folder = Path(flags.out) / f"round{round_}" / arm
            if not (folder / "result.json").is_file():
                code = WORKER.format(scripts=str(REPO / "scripts"), repo=str(REPO), out=str(folder), arm=arm,
                                     steps=flags.steps, threads=flags.threads, seed=flags.seed + round_, sft=str(sft))
                print(f"bench_grpo_cpu: round {round_}, {arm}: {flags.steps} GRPO steps, started "
                      f"{time.strftime('%H:%M:%S')}", flush=True)
                if subprocess.run([sys.executable, "-c", code]).returncode != 0:
                    sys.exit(f"bench_grpo_cpu: round {round_}, {arm} failed; its output is above (rerun to continue)")
            results[arm].append(json.loads((folder / "result.json").read_text()))
    base = flags.arms[0]
    rows = [{**summarize(arm, results[arm]), "round_x": round_ratios(results[arm], results[base])} for arm in flags.arms]
    print(report(rows, flags))
    (Path(flags.out) / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def report(rows: list[dict], flags: Flags) -> str:
    base = rows[0]
    start = f"the adapter {flags.adapter}" if flags.adapter else f"a {flags.sft_steps}-step CoNLL04 SFT"
    lines = [f"\nGRPO on CPU: SmolLM2-135M-Instruct from {start}, 4 prompts x 4 "
             f"completions a step, {flags.rounds} round(s) x {flags.steps} step(s) an arm on {flags.threads} core(s); "
             f"ratios against {base['arm']} measured in this run.",
             f"{'arm':<17} {'limit':>5} {'s/step':>7} {'x':>5} {'tokens/s':>8} {'x':>5} {'informative/s':>13} {'x':>5} "
             f"{'sample s':>8} {'zero-std':>8} {'peak MB':>7} {'x':>5}"]
    for r in rows:
        lines.append(f"{r['arm']:<17} {r['limit']!s:>5} {r['s_per_step']:>7.1f} {base['s_per_step'] / r['s_per_step']:>5.2f} "
                     f"{r['tokens_per_s']:>8.1f} {r['tokens_per_s'] / base['tokens_per_s']:>5.2f} "
                     f"{r['informative_per_s']:>13.3f} {r['informative_per_s'] / max(base['informative_per_s'], 1e-9):>5.2f} "
                     f"{_seconds(r['sample_s_per_step']):>8} {r['zero_std']:>8.2f} {r['peak_rss_mb']:>7} {r['peak_rss_mb'] / base['peak_rss_mb']:>5.2f}")
    lines.append("informative/s x by round: " + "; ".join(
        f"{r['arm']} {' '.join(f'{x:.2f}' for x in r['round_x'])}" for r in rows[1:]))
    lines.append("x: the ratio to the baseline (> 1: faster, for s/step the baseline's time over the arm's; for peak "
                 "memory the arm's over the baseline's). limit: the completion limit in tokens (auto: from the targets). "
                 "sample s: llama.cpp's sampling seconds a step (the rest of the step is the loss and the trainer; "
                 "- where generate samples).")
    return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> list[dict] | None:
    return run(Flags, bench, argv)


if __name__ == "__main__":
    main()
