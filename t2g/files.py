"""File and folder output that never leaves a half-written file or folder that looks complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, TextIO


def cache_dir() -> Path:
    """Where the kit keeps what it builds once and reuses (offline models, llama.cpp's converter):
    $T2G_CACHE, else ~/.cache/t2g."""
    return Path(os.environ.get("T2G_CACHE", Path.home() / ".cache" / "t2g"))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[TextIO]:
    """Write to a temporary file beside `path`, then rename it over `path` on success.

    On an exception (or a kill) the target is untouched and the temporary file is removed
    (or, after a kill, left with a `.tmp` suffix that no reader mistakes for the output).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file 0600; give the output the mode a plain open() would have
        # (the old file's, else 0666 minus the umask), so that others can read what we write.
        os.chmod(tmp, _target_mode(path))
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _target_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl_line(f: TextIO, row: dict) -> None:
    """Append one row as one write + flush + fsync, so a crash loses at most that row, never half of it."""
    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


@contextmanager
def atomic_dir(target: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """A hidden staging folder beside `target`, renamed over it only when the block succeeds.

    Saved models, adapters and exports are folders; a reader must never find one half-written. On an
    exception the staging folder is removed and `target` is untouched; after a kill it is left with
    a `.tmp` suffix that no reader mistakes for the output. `replace=False` is for caches that
    several processes may fill at once: when `target` appeared meanwhile, the other process's copy
    (which someone may be reading) is kept and this one is dropped.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            if not replace:
                shutil.rmtree(staging)
                return
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
