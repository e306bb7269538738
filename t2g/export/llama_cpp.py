"""Find llama.cpp's converter (and, optionally, a `llama-quantize` binary) without the network.

A usable llama.cpp folder is any folder with `convert_hf_to_gguf.py` beside its `gguf-py/` (and,
in recent versions, `conversion/`) packages: a git checkout, unsloth's `~/.unsloth/llama.cpp`, or
the `vendor/llama.cpp` folder inside the llama-cpp-python source distribution from PyPI, which
`t2g fetch-llama-cpp` unpacks into the cache. Nothing here downloads or compiles anything; when no
folder is found, the error says exactly which command provides one.

Search order: the `llama_cpp` argument (the `--llama_cpp` flag), `$T2G_LLAMA_CPP`,
`$UNSLOTH_LLAMA_CPP_PATH`, `~/.unsloth/llama.cpp`, `$T2G_CACHE/llama.cpp-src` (default
`~/.cache/t2g/llama.cpp-src`). A location named explicitly (flag or variable) that is not usable is
an error, never silently skipped: the user meant that one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from t2g.files import atomic_dir, cache_dir

CONVERTER = "convert_hf_to_gguf.py"
# The llama.cpp whose converter matches the llama-cpp-python runtime we pin (pyproject `llama` extra).
DEFAULT_SDIST_VERSION = "0.3.36"
_SDIST_MEMBERS = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")


class LlamaCppNotFound(RuntimeError):
    """No usable llama.cpp converter; the message names what was tried and the command that fixes it."""


@dataclass(frozen=True)
class LlamaCpp:
    root: Path  # folder holding convert_hf_to_gguf.py
    source: str  # how it was found ("--llama_cpp", "$T2G_LLAMA_CPP", ...), for reports

    @property
    def converter(self) -> Path:
        return self.root / CONVERTER

    def quantize_binary(self) -> Path | None:
        """A built `llama-quantize` in this folder (cmake build dirs) or on PATH, if any."""
        for rel in ("build/bin/llama-quantize", "llama-quantize", "bin/llama-quantize"):
            if (self.root / rel).is_file() and os.access(self.root / rel, os.X_OK):
                return self.root / rel
        found = shutil.which("llama-quantize")
        return Path(found) if found else None


def default_fetch_dir() -> Path:
    return cache_dir() / "llama.cpp-src"


def fetch_command() -> str:
    return "t2g fetch-llama-cpp"


def _usable(path: Path) -> Path | None:
    """The converter folder at or under `path` (a checkout, or an unpacked llama-cpp-python sdist)."""
    for candidate in (path, path / "vendor" / "llama.cpp"):
        if (candidate / CONVERTER).is_file() and (candidate / "gguf-py").is_dir():
            return candidate
    return None


def _candidates(explicit: str | os.PathLike | None) -> list[tuple[str, Path, bool]]:
    """(source, path, named_explicitly) in search order."""
    out: list[tuple[str, Path, bool]] = []
    if explicit:
        out.append(("--llama_cpp", Path(explicit).expanduser(), True))
    for var in ("T2G_LLAMA_CPP", "UNSLOTH_LLAMA_CPP_PATH"):
        if os.environ.get(var):
            out.append((f"${var}", Path(os.environ[var]).expanduser(), True))
    out.append(("~/.unsloth/llama.cpp", Path.home() / ".unsloth" / "llama.cpp", False))
    out.append((f"{default_fetch_dir()}", default_fetch_dir(), False))
    return out


def find_llama_cpp(explicit: str | os.PathLike | None = None) -> LlamaCpp:
    """The first usable llama.cpp folder, or LlamaCppNotFound with the command that provides one."""
    tried = []
    for source, path, named in _candidates(explicit):
        root = _usable(path)
        if root is not None:
            return LlamaCpp(root=root, source=source)
        if named:
            raise LlamaCppNotFound(
                f"{source} points at {path}, which has no {CONVERTER} with its gguf-py/ folder "
                f"(expected a llama.cpp checkout or an unpacked llama-cpp-python sdist). "
                f"Fix the path, or unset it and run `{fetch_command()}`."
            )
        tried.append(str(path))
    raise LlamaCppNotFound(
        "llama.cpp's converter (convert_hf_to_gguf.py) was not found; looked in: "
        + ", ".join(tried)
        + f". Get it from PyPI (no GitHub, nothing compiled) with `{fetch_command()}` (downloads the llama-cpp-python "
        f"{DEFAULT_SDIST_VERSION} source distribution from PyPI, ~77 MB, and unpacks the converter into "
        f"{default_fetch_dir()}), or point --llama_cpp / $T2G_LLAMA_CPP at a llama.cpp checkout. "
        f"Manual equivalent: pip download --no-deps --no-binary llama-cpp-python llama-cpp-python=={DEFAULT_SDIST_VERSION} -d DIR "
        f"&& t2g fetch-llama-cpp --sdist DIR/llama_cpp_python-{DEFAULT_SDIST_VERSION}.tar.gz"
    )


def _download_sdist(version: str, into: Path) -> Path:
    # --no-binary for this package only: with :all: pip also builds the sdist's build dependencies
    # (scikit-build-core and its own) from source to read its metadata, minutes instead of seconds.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python",
           f"llama-cpp-python=={version}", "-d", str(into)]
    print("running:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    found = sorted(into.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        raise LlamaCppNotFound(f"pip download finished but no llama_cpp_python-{version}.tar.gz is in {into}")
    return found[0]


def _extract_converter(sdist: Path, dest: Path) -> Path:
    """Unpack only the converter and its Python packages (~2 MB of the 77 MB sdist), atomically."""
    with atomic_dir(dest) as staging, tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            parts = m.name.split("/", 1)
            rel = parts[1] if len(parts) == 2 else ""
            if not rel.startswith("vendor/llama.cpp/"):
                continue
            inner = rel[len("vendor/llama.cpp/"):]
            if any(inner == p or (p.endswith("/") and inner.startswith(p)) for p in _SDIST_MEMBERS):
                m.name = inner
                members.append(m)
        if not any(m.name == CONVERTER for m in members):
            raise LlamaCppNotFound(f"{sdist} has no vendor/llama.cpp/{CONVERTER}: not a llama-cpp-python sdist")
        tar.extractall(staging, members=members, filter="data")
    return dest


def fetch_llama_cpp(sdist: str | os.PathLike | None = None, version: str = DEFAULT_SDIST_VERSION,
                    dest: str | os.PathLike | None = None, force: bool = False) -> LlamaCpp:
    """Unpack llama.cpp's converter from the llama-cpp-python sdist (downloaded from PyPI unless given).

    Idempotent: an existing converter in `dest` is kept unless `force` (or an explicit `sdist`)."""
    dest = Path(dest) if dest else default_fetch_dir()
    if sdist is None and not force and _usable(dest) is not None:
        return LlamaCpp(root=dest, source=str(dest))
    if sdist is None:
        with tempfile.TemporaryDirectory(prefix="t2g-sdist-") as tmp:
            root = _extract_converter(_download_sdist(version, Path(tmp)), dest)
    else:
        sdist = Path(sdist)
        if not sdist.is_file():
            raise LlamaCppNotFound(f"--sdist {sdist}: no such file")
        root = _extract_converter(sdist, dest)
    return LlamaCpp(root=root, source=str(dest))
