"""The Python half of scripts/gpu_check.sh: a recipe run that reports its peak GPU memory, the model's
parts joined, and the figures and table of a finished (or failed) check.

    python scripts/gpu_check.py preflight                                  # Python, torch, CUDA, the GPU
    python scripts/gpu_check.py imports                                    # the installed stack, unsloth first
    python scripts/gpu_check.py recipe -- --smoke --backend=unsloth ...   # the recipe, then "GPU_CHECK peak ..."
    python scripts/gpu_check.py join FILE PART...                          # concatenate parts into FILE
    python scripts/gpu_check.py sha256 FILE SHA256SUMS                      # FILE's digest as listed, or exit 1
    python scripts/gpu_check.py figures OUT [--failed STEP] [--budget S]    # OUT/figures.json, then the table

Stdlib only, with argparse rather than t2g.flags: parts of it run before the kit's dependencies are
installed, and `recipe` must not import anything before the recipe imports unsloth.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "grpo_qwen_1_5b.py"
# gpu_check.sh's step -> its recipe run, OUT/runs/<run> (the log is OUT/logs/<step>.log)
RUNS = {"unsloth": "unsloth-4bit", "hf": "hf-4bit", "vllm": "unsloth-vllm"}
PEAK = re.compile(r"^GPU_CHECK peak_allocated_gib=([\d.]+) peak_reserved_gib=([\d.]+)$", re.M)
STANDBY = re.compile(r"vLLM standby: asleep until GRPO generates; GPU memory free ([\d.]+) -> ([\d.]+) GiB of ([\d.]+) GiB")
BENCH_BACKEND = re.compile(r"^  (unsloth|hf): ([\d.]+) s/step, peak ([\d.]+) GiB$", re.M)
BENCH_RATIO = re.compile(r"^unsloth/hf: step time ([\d.]+), peak memory ([\d.]+)$", re.M)
BENCH_BATCH = 4  # completions per GRPO step in the bench run (gpu_check.sh passes --batch_size=4)


def cmd_recipe(args) -> None:
    """The recipe in this process, as `python recipes/grpo_qwen_1_5b.py ARGS` runs it; at exit, torch's
    peak GPU memory over the whole run (all stages)."""
    import atexit
    import runpy

    def peak() -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            print(f"GPU_CHECK peak_allocated_gib={torch.cuda.max_memory_allocated() / 2**30:.3f} "
                  f"peak_reserved_gib={torch.cuda.max_memory_reserved() / 2**30:.3f}", flush=True)

    atexit.register(peak)
    sys.argv = [str(RECIPE), *args.recipe_args]
    runpy.run_path(str(RECIPE), run_name="__main__")


def cmd_preflight(args) -> None:
    """The machine's Python and torch, and a CUDA GPU that torch sees (or exit 1)."""
    import torch

    print("python", sys.version.split()[0])
    print("torch", torch.__version__, "cuda", torch.version.cuda)
    if not torch.cuda.is_available():
        if args.allow_cpu:
            print("gpu none: a CPU rehearsal (--allow-cpu), no GPU figures")
            return
        raise SystemExit("gpu_check: this torch sees no CUDA GPU (a CPU rehearsal needs --allow-cpu)")
    props = torch.cuda.get_device_properties(0)
    print("gpu", props.name, f"{props.total_memory / 2**30:.1f} GiB", f"sm_{props.major}{props.minor}")


def cmd_imports(args) -> None:
    """The stack as installed: unsloth first (it patches the others), then each version."""
    import unsloth  # noqa: F401
    import importlib

    for name in ("torch", "transformers", "trl", "peft", "accelerate", "unsloth", "unsloth_zoo", "bitsandbytes",
                 "datasets", "fire", "llama_cpp"):
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "?"), Path(module.__file__).parent)


def cmd_join(args) -> None:
    target = Path(args.file)
    with open(target, "wb") as out:
        for part in sorted(args.parts):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
    print(f"gpu_check: {target.name}: {target.stat().st_size / 1e6:.1f} MB from {len(args.parts)} parts")


def cmd_sha256(args) -> None:
    target = Path(args.file)
    listed = {line.split()[1].lstrip("*"): line.split()[0] for line in Path(args.sums).read_text().splitlines() if line.strip()}
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if listed.get(target.name) != digest:
        raise SystemExit(f"gpu_check: {target} does not match {args.sums} (a part missing or damaged in transit?)")
    print(f"gpu_check: {target.name}: sha256 as listed")


# ----------------------------------------------------------------------------------------------
# Figures


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def smi_peak_gib(path: Path) -> float | None:
    """The largest memory.used nvidia-smi sampled (MiB), in GiB."""
    try:
        values = [float(v) for v in path.read_text().split() if re.fullmatch(r"[\d.]+", v)]
    except OSError:
        return None
    return round(max(values) / 1024, 2) if values else None


def run_figures(out: Path, step: str) -> dict | None:
    """What one step's recipe run left: stage times, GRPO completions/s, export, evaluation, memory."""
    run = out / "runs" / RUNS[step]
    summary, config = _json(run / "summary.json"), _json(run / "config.json")
    if summary is None or config is None:
        return None
    stages = summary.get("stages", {})
    fig: dict = {"run_dir": str(run)}
    for stage in ("sft", "grpo"):
        info = stages.get(stage) or {}
        if info:
            fig[stage] = {"steps": info.get("steps"), "train_runtime_s": info.get("train_runtime")}
    grpo = fig.get("grpo") or {}
    if grpo.get("steps") and grpo.get("train_runtime_s"):
        per_step = config["grpo_batch_size"] * config["grpo_grad_accum"]
        grpo["completions_per_s"] = round(grpo["steps"] * per_step / grpo["train_runtime_s"], 2)
    if stages.get("export"):
        fig["export"] = stages["export"]
    if stages.get("evaluate"):
        fig["evaluate"] = {k: stages["evaluate"].get(k) for k in ("entity_f1", "relation_f1", "json_valid_rate")}
    log = out / "logs" / f"{step}.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    peak = PEAK.findall(text)
    if peak:
        fig["peak_allocated_gib"], fig["peak_reserved_gib"] = (float(v) for v in peak[-1])
    fig["nvidia_smi_peak_gib"] = smi_peak_gib(out / "logs" / f"{step}.smi")
    standby = STANDBY.search(text)
    if standby:
        fig["vllm_standby_free_gib"] = {"before_sleep": float(standby[1]), "asleep": float(standby[2]),
                                        "total": float(standby[3])}
    return fig


def bench_figures(out: Path) -> dict | None:
    log = out / "logs" / "bench.log"
    if not log.is_file():
        return None
    text = log.read_text(errors="replace")
    fig: dict = {}
    for backend, step_s, peak in BENCH_BACKEND.findall(text):
        fig[backend] = {"step_s": float(step_s), "peak_gib": float(peak),
                        "completions_per_s": round(BENCH_BATCH / float(step_s), 2)}
    ratio = BENCH_RATIO.search(text)
    if ratio:
        fig["unsloth_over_hf"] = {"step_time": float(ratio[1]), "peak_memory": float(ratio[2])}
    return fig or None


def read_steps(out: Path) -> list[dict]:
    rows = []
    path = out / "steps.tsv"
    for line in (path.read_text().splitlines() if path.is_file() else []):
        name, status, seconds, note = (line.split("\t") + ["", "", "", ""])[:4]
        rows.append({"step": name, "status": status, "seconds": int(seconds or 0), "note": note})
    return rows


def machine(out: Path) -> dict:
    log = out / "logs" / "preflight.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    found = {key: re.search(rf"^{key} (.+)$", text, re.M) for key in ("python", "torch", "gpu")}
    return {key: m[1] for key, m in found.items() if m}


def figures(out: Path, failed: str | None = None, budget: int | None = None) -> dict:
    steps = read_steps(out)
    data = {"machine": machine(out), "steps": steps, "failed_step": failed,
            "seconds": sum(s["seconds"] for s in steps), "budget_s": budget,
            "runs": {step: fig for step in RUNS if (fig := run_figures(out, step))},
            "bench": bench_figures(out)}
    (out / "figures.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def _run_cell(fig: dict | None) -> str:
    if not fig:
        return ""
    parts = []
    for stage in ("sft", "grpo"):
        if fig.get(stage, {}).get("train_runtime_s") is not None:
            parts.append(f"{stage} {fig[stage]['steps']} steps {fig[stage]['train_runtime_s']:.1f} s")
    if fig.get("grpo", {}).get("completions_per_s"):
        parts.append(f"{fig['grpo']['completions_per_s']} compl/s")
    if "export" in fig:
        parts.append(f"parity {'passed' if fig['export'].get('parity') else 'warned'}")
    if fig.get("evaluate", {}).get("entity_f1") is not None:
        parts.append(f"entity F1 {fig['evaluate']['entity_f1']:.2f}")
    memory = [f"{fig[k]:.2f}" for k in ("peak_allocated_gib", "nvidia_smi_peak_gib") if fig.get(k) is not None]
    if memory:
        parts.append("peak " + " / ".join(memory) + " GiB")
    if "vllm_standby_free_gib" in fig:
        s = fig["vllm_standby_free_gib"]
        parts.append(f"standby frees {s['asleep'] - s['before_sleep']:.1f} GiB")
    return ", ".join(parts)


def table(data: dict) -> str:
    bench = data.get("bench") or {}
    cells = {step: _run_cell(fig) for step, fig in data["runs"].items()}
    if bench:
        per = [f"{b} {bench[b]['step_s']:.3f} s/step {bench[b]['completions_per_s']} compl/s {bench[b]['peak_gib']:.2f} GiB"
               for b in ("unsloth", "hf") if b in bench]
        ratio = bench.get("unsloth_over_hf")
        cells["bench"] = "; ".join(per) + (f"; unsloth/hf step time {ratio['step_time']:.2f}, peak VRAM "
                                           f"{ratio['peak_memory']:.2f}" if ratio else "")
    m = data["machine"]
    verdict = f"FAILED at {data['failed_step']}" if data["failed_step"] else "every step passed"
    lines = [f"gpu_check: {m.get('gpu', '?')}, torch {m.get('torch', '?')}, python {m.get('python', '?')}: "
             f"{verdict} in {data['seconds']} s (budget {data['budget_s']} s)",
             "| step | result | s | figures |", "|---|---|---|---|"]
    for row in data["steps"]:
        lines.append(f"| {row['step']} | {row['status']} | {row['seconds']} | {cells.get(row['step'], '') or row['note']} |")
    return "\n".join(lines)


def cmd_figures(args) -> None:
    out = Path(args.out)
    data = figures(out, args.failed, args.budget)
    text = table(data)
    (out / "table.md").write_text(text + "\n")
    print(text)
    if args.failed:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    recipe = sub.add_parser("recipe", help="the recipe, then its peak GPU memory")
    recipe.add_argument("recipe_args", nargs=argparse.REMAINDER)
    recipe.set_defaults(run=cmd_recipe)
    preflight = sub.add_parser("preflight", help="Python, torch, the GPU")
    preflight.add_argument("--allow-cpu", action="store_true")
    preflight.set_defaults(run=cmd_preflight)
    sub.add_parser("imports", help="the installed stack imports").set_defaults(run=cmd_imports)
    join = sub.add_parser("join", help="parts into one file")
    join.add_argument("file")
    join.add_argument("parts", nargs="+")
    join.set_defaults(run=cmd_join)
    sha = sub.add_parser("sha256", help="a file against a SHA256SUMS list")
    sha.add_argument("file")
    sha.add_argument("sums")
    sha.set_defaults(run=cmd_sha256)
    fig = sub.add_parser("figures", help="figures.json and the table of a check")
    fig.add_argument("out")
    fig.add_argument("--failed", default=None)
    fig.add_argument("--budget", type=int, default=None)
    fig.set_defaults(run=cmd_figures)
    args = parser.parse_args(argv)
    if args.command == "recipe" and args.recipe_args[:1] == ["--"]:
        args.recipe_args = args.recipe_args[1:]
    args.run(args)


if __name__ == "__main__":
    main()
