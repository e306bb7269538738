"""The kit's pins on CUDA machines, read from pyproject.toml: the GPU install line and the offline wheel list.

    python scripts/gpu_pins.py requirements          # the README's GPU install line, one requirement a line
    python scripts/gpu_pins.py resolve               # CI: pip's resolver, dry run, on that line for CUDA Linux
    python scripts/gpu_pins.py closure --torch 2.11.0   # maintainers: regenerate scripts/gpu_wheels.txt
    python scripts/gpu_pins.py pack DIR              # scripts/gpu_wheels.sh: the bundle into folders under 60 MB
    python scripts/gpu_pins.py check-bundle DIR      # scripts/gpu_check.sh: DIR holds every listed wheel

The GPU install line is `pip install -e ".[unsloth,vllm,export,llama]"`: the kit's dependencies
(torch 2.13.0, whose PyPI wheels for Linux are CUDA 13 builds) and those extras. vLLM wheels pin
one exact torch, so the `vllm` extra must name the vLLM built for the kit's torch; `resolve` proves
that the whole line resolves together, for Python 3.12 on manylinux x86_64 (a GPU machine, whatever
this one is), without downloading or installing a wheel.

Why not `pip install --dry-run .[...]` as it stands: pip only learns a wheel's dependencies from its
metadata, and this index serves no separate metadata files, so the dry run downloaded every wheel
(4.0 GB in 2.7 min, measured with pip 23.2; 26.3 does the same). pip 26.3 with `--use-feature=fast-deps`
reads the metadata out of each remote wheel with HTTP range requests instead (86 MB, 75 of them index
pages; 40 s to 2 min, measured); `resolve` runs that pip (RESOLVER_PIP) from a small venv of its own. llama-cpp-python is a source distribution (77 MB)
whose metadata only a build yields; its requirements are read from the installed copy of the same
pinned version instead (scripts/setup_env.sh installs it), or left out, saying so.

`closure` is the list scripts/gpu_wheels.sh downloads for scripts/gpu_check.sh: everything the GPU
install line needs except vLLM (its wheels pin torch 2.13 and weigh ~0.6 GB) and the llama extra
(built by gpu_wheels.sh), resolved against the machine's own torch and without the packages that
come with that torch (torch, triton, nvidia-*, its torchvision and xformers builds).

Stdlib only, with argparse rather than t2g.flags: it runs before the kit's dependencies are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEEL_LIST = REPO / "scripts" / "gpu_wheels.txt"
GPU_EXTRAS = ("unsloth", "vllm", "export")  # + llama, read from the installed llama-cpp-python
LLAMA = "llama-cpp-python"
RESOLVER_PIP = "pip==26.3"  # its fast-deps dry run reads remote metadata; 23.2's still downloads every wheel
RESOLVER_VENV = REPO / ".venv" / "pip-resolver"
PYTHON_VERSION = "3.12"
# manylinux x86_64 down from glibc 2.35 (Ubuntu 22.04, the oldest a current CUDA 13 driver stack runs on)
PLATFORMS = ([f"manylinux_2_{minor}_x86_64" for minor in range(35, 16, -1)]
             + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"])
# Shipped with (or built for) the machine's torch: never carried, never replaced.
TORCH_FAMILY = re.compile(r"^(torch|torchvision|torchaudio|triton|xformers|nvidia-.*|cuda-.*|sympy|mpmath|networkx|setuptools)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def pins(requirements: list[str]) -> dict[str, str]:
    """name -> version for the `name==version` requirements (markers and extras stripped)."""
    out = {}
    for req in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*==\s*([^\s;,]+)", req)
        if match:
            out[canonical(match.group(1))] = match.group(3)
    return out


def kit_requirements(extras: tuple[str, ...] = GPU_EXTRAS) -> list[str]:
    project = pyproject()["project"]
    out = list(project["dependencies"])
    for extra in extras:
        out += project["optional-dependencies"][extra]
    return out


def llama_requirements(extras: tuple[str, ...] = ("server",)) -> tuple[list[str], str]:
    """llama-cpp-python's own requirements (base and `extras`) from the installed pinned version, and
    a note on where they came from."""
    from importlib import metadata

    pinned = pins(pyproject()["project"]["optional-dependencies"]["llama"]).get(LLAMA)
    try:
        dist = metadata.distribution(LLAMA)
    except metadata.PackageNotFoundError:
        return [], f"{LLAMA} is not installed here: its requirements are left out of the check"
    if dist.version != pinned:
        return [], f"{LLAMA} {dist.version} is installed, not the pinned {pinned}: its requirements are left out"
    reqs = []
    for req in dist.requires or []:
        spec, _, marker = req.partition(";")
        extra = re.fullmatch(r"""extra\s*==\s*["']([^"']+)["']""", marker.strip())
        if not marker.strip() or (extra and extra.group(1) in extras):
            reqs.append(spec.strip())
    return reqs, f"{LLAMA}=={pinned}'s requirements read from its installed metadata (an sdist: no wheel metadata)"


def gpu_install_requirements() -> tuple[list[str], str]:
    llama, note = llama_requirements()
    return kit_requirements() + llama, note


def resolver_pip() -> Path:
    """A pip that reads remote wheel metadata in a dry run, in a venv of its own (made once)."""
    pip = RESOLVER_VENV / "bin" / "pip"
    want = RESOLVER_PIP.split("==")[1]
    probe = subprocess.run([str(pip), "--version"], capture_output=True, text=True) if pip.exists() else None
    if probe is None or probe.returncode or f"pip {want} " not in probe.stdout:
        subprocess.run([sys.executable, "-m", "venv", str(RESOLVER_VENV)], check=True)
        subprocess.run([str(pip), "install", "-q", RESOLVER_PIP], check=True)
    return pip


def dry_run(requirements: list[str], python_version: str = PYTHON_VERSION) -> dict:
    """pip's resolution of `requirements` for a CUDA Linux machine, as its --report JSON; nothing installed."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [str(resolver_pip()), "install", "--dry-run", "--ignore-installed", "--quiet", "--use-feature=fast-deps",
                   "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
                   *[arg for p in PLATFORMS for arg in ("--platform", p)], "--report", str(report), *requirements]
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PIP_NO_INPUT": "1"})
        if proc.returncode:
            said = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("WARNING: Location"))
            raise SystemExit(f"gpu_pins: pip could not resolve the GPU install line for Python {python_version}:\n"
                             f"{said.strip()[-4000:]}")
        return json.loads(report.read_text())


def resolved(report: dict) -> dict[str, str]:
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]}


def check_resolution(versions: dict[str, str], requirements: list[str]) -> list[str]:
    """Every pin of the line resolved at its own version (pip would fail otherwise; this catches a
    pin that a marker or an extra silently dropped)."""
    return [f"{name}: pinned {want}, resolved {versions.get(name, 'nothing')}"
            for name, want in pins(requirements).items() if versions.get(name) != want]


def cmd_requirements(args) -> None:
    reqs, note = gpu_install_requirements()
    print("\n".join(reqs))
    print(f"# {note}", file=sys.stderr)


def cmd_resolve(args) -> None:
    reqs, note = gpu_install_requirements()
    print(f"gpu_pins: resolving the GPU install line ({len(reqs)} requirements; {note}) for Python {args.python_version}, "
          f"manylinux x86_64, with {RESOLVER_PIP} (dry run: nothing is installed)", file=sys.stderr)
    start = time.time()
    versions = resolved(dry_run(reqs, args.python_version))
    wrong = check_resolution(versions, reqs)
    if wrong:
        raise SystemExit("gpu_pins: the GPU install line resolved, but not to its pins: " + "; ".join(wrong))
    shown = ", ".join(f"{n} {versions[n]}" for n in ("torch", "vllm", "unsloth", "transformers", "trl", "bitsandbytes"))
    print(f"gpu_pins: the GPU install line resolves: {len(versions)} packages, {shown} ({time.time() - start:.0f} s)")


def cmd_closure(args) -> None:
    project = pyproject()["project"]
    kit = [r for r in kit_requirements(("unsloth", "export")) if canonical(re.split(r"[=<>!~\[; ]", r)[0]) != "torch"]
    llama, note = llama_requirements(extras=())  # gpu_check decodes GGUFs in-process: no server
    versions = resolved(dry_run([f"torch=={args.torch}", *kit, *llama], args.python_version))
    carried = sorted((n, v) for n, v in versions.items() if not TORCH_FAMILY.match(n))
    print(WHEEL_LIST_HEADER.format(n=len(carried), python=args.python_version, torch=args.torch,
                                   version=project["version"], note=note))
    print("\n".join(f"{n}=={v}" for n, v in carried))


WHEEL_LIST_HEADER = """\
# The {n} wheels scripts/gpu_check.sh installs on a CUDA machine without internet access (t2g {version}):
# the kit's pins and everything they need, for CPython {python} on manylinux x86_64 (glibc >= 2.34),
# beside the machine's own torch {torch}. The machine's torch and what comes with it (triton, nvidia-*,
# torchvision, xformers, sympy, networkx) are never carried. vLLM is not carried: its wheels pin torch
# 2.13 and weigh ~0.6 GB (docs/gpu.md). scripts/gpu_wheels.sh downloads these, builds a portable
# llama-cpp-python wheel, and packs them into folders under 60 MB; tests/scripts/test_gpu_check.py
# checks this list against pyproject.toml.
# {note}.
# Made by: python scripts/gpu_pins.py closure --torch {torch} > scripts/gpu_wheels.txt"""


def listed_wheels(path: Path = WHEEL_LIST) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return pins([line for line in lines if line])


def wheel_name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return canonical(name), version


def missing_from_bundle(bundle: Path, wanted: dict[str, str]) -> list[str]:
    have = {wheel_name_version(p.name) for p in bundle.rglob("*.whl")}
    return [f"{n}=={v}" for n, v in sorted(wanted.items()) if (n, v) not in have]


def cmd_check_bundle(args) -> None:
    missing = missing_from_bundle(Path(args.bundle), listed_wheels())
    if missing:
        raise SystemExit(f"gpu_pins: {args.bundle} lacks {len(missing)} wheel(s) of scripts/gpu_wheels.txt: "
                         f"{', '.join(missing)} (make the bundle with scripts/gpu_wheels.sh)")
    print(f"gpu_pins: {args.bundle} holds every wheel of scripts/gpu_wheels.txt")


FOLDER_LIMIT = 60_000_000  # bytes per folder: one carry to a machine without internet (64 MiB) with room to spare


def pack(files: list[Path], limit: int = FOLDER_LIMIT) -> list[list[Path]]:
    """Files into as few folders of fewer than `limit` bytes as first-fit by decreasing size finds."""
    folders: list[tuple[int, list[Path]]] = []
    for path in sorted(files, key=lambda p: (-p.stat().st_size, p.name)):
        size = path.stat().st_size
        if size >= limit:
            raise SystemExit(f"gpu_pins: {path.name} is {size / 1e6:.1f} MB, more than one folder may hold "
                             f"({limit / 1e6:.0f} MB); split it")
        for i, (used, members) in enumerate(folders):
            if used + size < limit:
                folders[i] = (used + size, members + [path])
                break
        else:
            folders.append((size, [path]))
    return [members for _, members in folders]


def cmd_pack(args) -> None:
    """Move every file of DIR/.download into DIR/carry-1, carry-2, ...; print what each holds."""
    bundle = Path(args.bundle)
    for i, members in enumerate(pack(sorted((bundle / ".download").iterdir())), 1):
        folder = bundle / f"carry-{i}"
        folder.mkdir(exist_ok=True)
        for path in members:
            path.rename(folder / path.name)
        sizes = {p.name: (folder / p.name).stat().st_size for p in members}
        print(f"{folder.name}: {len(members)} files, {sum(sizes.values()) / 1e6:.1f} MB")
        for name, size in sizes.items():
            print(f"  {name}  {size / 1e6:.1f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("requirements", help="the GPU install line's requirements").set_defaults(run=cmd_requirements)
    resolve = sub.add_parser("resolve", help="resolve the GPU install line (dry run)")
    resolve.add_argument("--python-version", default=PYTHON_VERSION)
    resolve.set_defaults(run=cmd_resolve)
    closure = sub.add_parser("closure", help="the wheel list for a machine with its own torch")
    closure.add_argument("--torch", required=True, help="the machine's torch version, e.g. 2.11.0")
    closure.add_argument("--python-version", default=PYTHON_VERSION)
    closure.set_defaults(run=cmd_closure)
    packer = sub.add_parser("pack", help="DIR/.download into folders under 60 MB (scripts/gpu_wheels.sh)")
    packer.add_argument("bundle")
    packer.set_defaults(run=cmd_pack)
    check = sub.add_parser("check-bundle", help="does a folder hold every listed wheel?")
    check.add_argument("bundle")
    check.set_defaults(run=cmd_check_bundle)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
