"""Which malloc a CPU training process runs on: glibc's, or mimalloc preloaded.

Why this exists: torch's CPU allocator asks for every tensor through `posix_memalign`, with sizes
that change from batch to batch. Under glibc 2.36's malloc, a long SFT run on CPU slowed from 2.7 to
4.5 s a step while its resident memory grew to 10 GB (docs/results.md, fourth run). A profile put a
fifth of the time in glibc's aligned allocation, and a fresh process ran at the early speed again.
mimalloc (from PyPI as `cmeel-mimalloc`, the `cpu` extra) is a drop-in replacement.
`scripts/bench_sft_cpu.py` measures both on the same SFT steps.

An allocator must be chosen before the process starts (LD_PRELOAD), so `reexec_with` restarts the
current command under it; nothing here changes a process that did not ask.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ALLOCATORS = ("glibc", "mimalloc")
INSTALL_HINT = "pip install 'cmeel-mimalloc==3.4.3' (or the t2g extra: pip install -e '.[cpu]')"


class AllocatorError(RuntimeError):
    """The asked-for allocator cannot be used; the message says what to do."""


def library(name: str) -> Path | None:
    """The shared library to preload for `name` (None for glibc, the default malloc)."""
    if name not in ALLOCATORS:
        raise AllocatorError(f"allocator {name!r}: choose one of {', '.join(ALLOCATORS)}")
    if name == "glibc":
        return None
    from importlib import metadata

    try:
        files = metadata.distribution("cmeel-mimalloc").files or []
    except metadata.PackageNotFoundError:
        raise AllocatorError(f"allocator 'mimalloc' needs the cmeel-mimalloc package: {INSTALL_HINT}") from None
    found = [path for path in (Path(f.locate()) for f in files if f.name.startswith("libmimalloc.so")) if path.is_file()]
    if not found:
        raise AllocatorError(f"cmeel-mimalloc is installed but holds no libmimalloc.so; reinstall it: {INSTALL_HINT}")
    return min(found, key=lambda path: (len(path.name), path.name))  # libmimalloc.so before its versioned aliases


def active() -> str:
    """The allocator this process runs on, read from its own memory map (not from the environment)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "glibc"
    return "mimalloc" if "libmimalloc" in maps else "glibc"


# mimalloc hands freed pages back to the OS 10 ms after they fall idle. A training step frees and
# allocates gigabytes of activations, so each step faulted them in again: 1.34x glibc's step time on
# the benchmark's SFT. Never purging keeps the pages, as glibc does, at a lower peak (docs/results.md).
MIMALLOC_DEFAULTS = {"MIMALLOC_PURGE_DELAY": "-1"}


def environment(name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) with LD_PRELOAD set for `name`; any mimalloc
    already preloaded is taken out first, so glibc means glibc. mimalloc's MIMALLOC_DEFAULTS apply
    where `base` does not set those variables itself."""
    env = dict(os.environ if base is None else base)
    kept = [p for p in env.get("LD_PRELOAD", "").split(":") if p and "libmimalloc" not in p]
    lib = library(name)
    preload = ([str(lib)] if lib else []) + kept
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    else:
        env.pop("LD_PRELOAD", None)
    if lib is not None:
        env = {**MIMALLOC_DEFAULTS, **env}
    return env


def reexec_with(name: str) -> None:
    """Restart this very command under allocator `name`, unless it already runs on it.

    Call it first thing, before threads or large imports: the process image is replaced. A restart that
    still does not run on `name` (a loader that ignores LD_PRELOAD) is an error, never a loop.
    """
    if active() == name:
        return
    if os.environ.get("T2G_ALLOCATOR_REEXEC") == name:
        raise AllocatorError(f"restarted with LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r} but the process still "
                             f"runs on {active()}; is LD_PRELOAD honoured here?")
    env = environment(name)
    env["T2G_ALLOCATOR_REEXEC"] = name
    print(f"t2g: restarting under the {name} allocator", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
