"""Several processes, one run: what the training stages need under `accelerate launch`.

The `hf` backend runs a recipe unchanged under `accelerate launch` (DDP, DeepSpeed ZeRO-2/3 or
FSDP: configs/accelerate/*.yaml); TRL's trainers do the data-parallel work. What is left to us:

- one run directory for all ranks: rank 0 names it (the timestamped default) and broadcasts it;
- only rank 0 writes the run's files (config.json, run.json, samples.jsonl, done.json, adapters,
  summary.json). The Trainer already saves checkpoints and TensorBoard logs from the main process
  only, except each rank's RNG state (`checkpoint-N/rng_state_<rank>.pth`, needed to resume);
- rank 0 goes first where a shared file is built once (the embedded tiny model, SmolLM2's folder);
- with `T2G_RANK_REPORT=<folder>`, each rank writes `<stage>-rank<k>.json` with a hash of its LoRA
  weights at the end of each stage (tests compare ranks with it; DDP must keep them identical).

Single-process runs never import accelerate from here: every helper is a no-op then. Rank facts
come from the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK: accelerate launch and torchrun
set them), so they can be checked before torch is imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

RANK_REPORT_ENV = "T2G_RANK_REPORT"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """Rank 0 of all processes (of all nodes): the one that writes the run directory."""
    return rank() == 0


def sharded_engine() -> str | None:
    """"deepspeed" / "fsdp" when accelerate launch was given such a config, else None."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "deepspeed"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "fsdp"
    return None


def _state():
    import torch
    from accelerate import PartialState

    # cpu=True without CUDA: otherwise accelerate sees no accelerator and no --cpu flag and makes
    # every rank a separate single-process run (DistributedType.NO) instead of one gloo group.
    return PartialState(cpu=not torch.cuda.is_available())  # initialises the process group once


def check_trainer(trainer) -> None:
    """Fail when the Trainer's accelerator does not span every launched process: each rank would
    then train its own model on all the data and the ranks would overwrite each other's files."""
    seen = trainer.accelerator.num_processes
    if seen != world_size():
        raise RuntimeError(f"{world_size()} processes were launched (WORLD_SIZE) but the trainer's accelerator "
                           f"sees {seen}; nothing trained yet. On a machine without GPUs launch with "
                           f"`accelerate launch --multi_gpu --num_processes N` (gloo) or torchrun")


def processes_asked_of_launcher() -> int | None:
    """`--num_processes N` on the command line of the `accelerate launch` that started this process."""
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "launch" not in argv:
        return None
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--num_processes" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--num_processes=") else None)
        if value is not None and value.isdigit():
            return int(value)
    return None


def warn_single_cpu_launch(print_fn=None) -> bool:
    """`accelerate launch --cpu --num_processes N` starts ONE process (accelerate 1.15 starts several CPU
    processes only through MPI, --mpirun_hostfile). Say so loudly rather than let N look like N."""
    import sys

    if is_distributed() or os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true"):
        return False
    asked = processes_asked_of_launcher()
    if not asked or asked < 2:
        return False
    (print_fn or (lambda m: print(m, file=sys.stderr)))(
        f"t2g: warning: accelerate launch --cpu was asked for {asked} processes but started ONE (accelerate "
        f"starts several CPU processes only through MPI: --mpirun_hostfile). This run trains in one process. "
        f"For {asked} CPU processes over gloo: accelerate launch --multi_gpu --num_processes {asked} ... "
        f"(or --config_file configs/accelerate/ddp.yaml; no GPU needed), or torchrun --nproc_per_node {asked} ...")
    return True


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (a picklable object)."""
    if not is_distributed():
        return obj
    _state()
    from accelerate.utils import broadcast_object_list

    box = [obj if is_main() else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def barrier() -> None:
    if is_distributed():
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. builds a cached file); the others then run it and find it."""
    if not is_distributed():
        yield
        return
    with _state().main_process_first():
        yield


def lora_digest(model) -> tuple[str, int]:
    """sha256 over the LoRA tensors (name and fp32 bytes, sorted by name) and how many there are."""
    digest = hashlib.sha256()
    names = sorted(k for k in model.state_dict() if "lora_" in k)
    state = model.state_dict()
    for name in names:
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest(), len(names)


def report_rank_state(stage: str, model, steps: int, run_dir: Path) -> Path | None:
    """With T2G_RANK_REPORT set: this rank's view of the stage's end, one JSON file per rank."""
    folder = os.environ.get(RANK_REPORT_ENV)
    if not folder:
        return None
    sha, count = lora_digest(model)
    path = Path(folder) / f"{stage}-rank{rank()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stage": stage, "rank": rank(), "world_size": world_size(), "steps": steps,
                                "lora_sha256": sha, "lora_tensors": count, "run_dir": str(run_dir)}) + "\n")
    return path
