"""The run directory: everything one training run leaves behind, and how a run resumes.

    <run>/config.json        the resolved configuration (every flag, after --smoke and overrides)
    <run>/run.json           package versions, PROMPT_VERSION, model actually loaded, 4-bit or not
    <run>/samples.jsonl      sample completions with their per-reward scores, every N steps
    <run>/tb/<stage>/        TensorBoard event files
    <run>/<stage>/checkpoint-N/   trainer checkpoints (adapter, optimizer, scheduler, RNG, state)
    <run>/<stage>/adapter/   the stage's final LoRA adapter + tokenizer
    <run>/<stage>/done.json  written last: the stage finished (steps, final metrics)
    <run>/summary.json       where things are (the final adapter: the last finished stage's), final numbers

Under `accelerate launch` (several processes) all ranks share one directory, named by rank 0, and
only rank 0 writes these files (`t2g.train.distributed`); the others only read them (done.json on resume).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

from t2g.train import distributed
from t2g.train.config import TrainConfig
from t2g.files import append_jsonl_line, write_json_atomic
from t2g.models.folders import RunDir
from t2g.task.parsing import completion_text  # the text the rewards scored, logged as they read it
from t2g.task.prompts import PROMPT_VERSION

PACKAGES = ("t2g", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
            "unsloth", "unsloth_zoo", "vllm", "tensorboard", "wandb")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class Run:
    dir: Path
    cfg: TrainConfig

    @property
    def samples_path(self) -> Path:
        return self.dir / "samples.jsonl"

    def stage_dir(self, stage: str) -> Path:
        return self.dir / stage

    def tb_dir(self, stage: str) -> Path:
        return self.dir / "tb" / stage

    @property
    def layout(self) -> RunDir:
        """The same directory as its readers (inference, export) see it."""
        return RunDir(self.dir)

    def adapter_dir(self, stage: str) -> Path:
        return self.layout.adapter_dir(stage)

    def done(self, stage: str) -> dict | None:
        path = self.stage_dir(stage) / "done.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def mark_done(self, stage: str, info: dict) -> None:
        if distributed.is_main():
            write_json_atomic(self.stage_dir(stage) / "done.json", info)

    def last_checkpoint(self, stage: str) -> Path | None:
        return last_complete_checkpoint(self.stage_dir(stage))

    def record(self, **info: Any) -> None:
        """Merge facts learned while running (model loaded, 4-bit or not) into run.json (rank 0 only)."""
        if not distributed.is_main():
            return
        path = self.dir / "run.json"
        data = json.loads(path.read_text()) if path.is_file() else {}
        data.update(info)
        write_json_atomic(path, data)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N that was written completely. The Trainer writes trainer_state.json
    last, so a run killed in the middle of a save leaves a folder without it, which is skipped."""
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        if child.name.startswith("checkpoint-") and child.name[len("checkpoint-"):].isdigit():
            if (child / "trainer_state.json").is_file():
                found.append((int(child.name.split("-")[1]), child))
    return max(found)[1] if found else None


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.run_name}-{stamp}"


# Settings that may change between a run and its resumption (more steps, other logging).
RESUMABLE_CHANGES = {"resume", "sft_max_steps", "sft_epochs", "grpo_max_steps", "save_steps", "save_total_limit",
                     "logging_steps", "sample_every", "report_to", "output_dir", "stages"}


def open_run(cfg: TrainConfig, extra: dict | None = None) -> Run:
    """Create a fresh run directory, or reopen one for --resume (warning on changed settings).

    Several processes: rank 0 picks the name (its timestamp) and every rank gets that same path;
    rank 0 creates and writes it, the others wait for it.
    """
    path = Path(distributed.broadcast(str(Path(cfg.output_dir) if cfg.output_dir else default_run_dir(cfg))))
    if not distributed.is_main():
        distributed.barrier()  # rank 0 has written config.json and run.json
        return Run(path.resolve(), cfg)
    if cfg.resume:
        old = json.loads((path / "config.json").read_text())
        changed = {k: (old.get(k), v) for k, v in cfg.to_dict().items()
                   if k not in RESUMABLE_CHANGES and old.get(k) != v}
        if changed:
            print(f"t2g: warning: resuming {path} with changed settings: "
                  + "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()), file=sys.stderr)
    path.mkdir(parents=True, exist_ok=True)
    run = Run(path.resolve(), cfg)
    write_json_atomic(path / "config.json", cfg.to_dict())
    run.record(prompt_version=PROMPT_VERSION, versions=package_versions(), argv=sys.argv,
               started=time.strftime("%Y-%m-%dT%H:%M:%S"), world_size=distributed.world_size(),
               **(extra or {}))
    distributed.barrier()
    return run


# ----------------------------------------------------------------------------------------------
# Sample completions with their rewards


class SampleLog:
    """Wraps reward functions so that every `every` steps one generation batch is written to
    samples.jsonl with each completion's per-reward scores, and one sample is printed.

    The wrappers keep each function's __name__, so TRL still logs `rewards/<name>/mean`.
    """

    def __init__(self, run: Run, stage: str, every: int, weights: Sequence[float], print_fn: Callable[[str], None] = print):
        self.run, self.stage, self.every, self.weights = run, stage, every, list(weights)
        self.print = print_fn
        self._next_step = 0
        self._batch: dict[str, list] = {}

    def wrap(self, funcs: Sequence[Callable]) -> list[Callable]:
        names = [f.__name__ for f in funcs]
        return [self._wrap_one(f, names, i == len(funcs) - 1) for i, f in enumerate(funcs)]

    def _wrap_one(self, fn: Callable, names: list[str], last: bool) -> Callable:
        def wrapped(prompts, completions, **kwargs):
            scores = fn(prompts=prompts, completions=completions, **kwargs)
            if self.every:
                self._batch[fn.__name__] = list(scores)
                if last:
                    self._flush(names, completions, kwargs)
            return scores

        wrapped.__name__ = fn.__name__
        wrapped.__qualname__ = fn.__qualname__
        wrapped.__doc__ = fn.__doc__
        return wrapped

    def _flush(self, names: list[str], completions: list, kwargs: dict) -> None:
        state = kwargs.get("trainer_state")
        step = int(getattr(state, "global_step", 0))
        batch, self._batch = self._batch, {}
        if step < self._next_step or not distributed.is_main():
            return  # several ranks: rank 0 logs its share of the batch
        self._next_step = step + self.every
        ids = kwargs.get("id") or [None] * len(completions)
        with open(self.samples_path, "a", encoding="utf-8") as f:
            for i, completion in enumerate(completions):
                scores = {n: _num(batch[n][i]) for n in names}
                total = sum(w * s for w, s in zip(self.weights, scores.values()) if s is not None)
                append_jsonl_line(f, {"stage": self.stage, "step": step, "id": ids[i], "completion": completion_text(completion),
                                      "rewards": scores, "reward": total})
        first = {n: _num(batch[n][0]) for n in names}
        shown = completion_text(completions[0]).replace("\n", " ")
        self.print(f"[{self.stage} step {step}] sample {ids[0]}: {shown[:300]!r}\n  rewards: "
                   + ", ".join(f"{n}={v:.3f}" if v is not None else f"{n}=None" for n, v in first.items()))

    @property
    def samples_path(self) -> Path:
        return self.run.samples_path


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if value != value else value  # NaN -> None (JSON has no NaN)


# ----------------------------------------------------------------------------------------------
# The end of a run


def write_summary(run: Run, stages: dict[str, dict]) -> dict:
    """summary.json (written by rank 0; every rank gets the same dict back)."""
    adapter = run.layout.final_adapter()
    final_adapter = str(adapter) if adapter else None
    summary = {
        "run_dir": str(run.dir),
        "adapter": final_adapter,
        "stages": stages,
        "samples": str(run.samples_path) if run.samples_path.is_file() else None,
        "tensorboard": str(run.dir / "tb") if (run.dir / "tb").is_dir() else None,
        "export": str(run.dir / "export") if (run.dir / "export" / "export.json").is_file() else None,
        "evaluation": str(run.dir / "eval" / "report.md") if (run.dir / "eval" / "report.md").is_file() else None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if distributed.is_main():
        write_json_atomic(run.dir / "summary.json", summary)
    return summary


def print_summary(summary: dict) -> None:
    print("\n== t2g run summary ==")
    for stage, info in summary["stages"].items():
        numbers = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items() if k != "adapter")
        print(f"  {stage}: {numbers}")
    print(f"  adapter:     {summary['adapter']}")
    print(f"  samples:     {summary['samples']}")
    if summary["tensorboard"]:
        print(f"  tensorboard: tensorboard --logdir {summary['tensorboard']}")
    if summary.get("export"):
        print(f"  export:      {summary['export']} (GGUF, Modelfile: ollama create t2g -f {summary['export']}/Modelfile)")
    if summary.get("evaluation"):
        print(f"  evaluation:  {summary['evaluation']}")


def announce(run_dir: Path | str) -> None:
    """The last line of every run: where it is (scripts parse this line). Rank 0's only."""
    if not distributed.is_main():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"run directory: {run_dir}", flush=True)


def set_tracking_env(run: Run, stage: str) -> None:
    """Per-stage TensorBoard folder; a W&B project/run name when W&B is asked for."""
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run.tb_dir(stage))
    if "wandb" in run.cfg.report_to:
        os.environ.setdefault("WANDB_PROJECT", "t2g")
