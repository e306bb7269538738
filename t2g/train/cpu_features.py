"""What this CPU does well, read from /proc/cpuinfo (Linux); nothing here imports torch.

bf16 training on a CPU is fast only where the cores compute in bf16 themselves (AMX or
AVX512-BF16, on recent Xeons); elsewhere torch emulates it, and `scripts/bench_sft_cpu.py`
measured an SFT step on an AVX2-only EPYC at 28.7x its fp32 time (docs/results.md).
unsloth_zoo's `cpu_bf16_supported` reads the same flags, but importing it loads unsloth, and
config validation and the hf backend must not need that.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields ({} where /proc/cpuinfo cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    first = text.split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines()) if k.strip()}


def model_name() -> str:
    return _cpuinfo().get("model name", "unknown CPU")


def native_bf16() -> bool | None:
    """True: the cores compute bf16 (AMX or AVX512-BF16); False: torch would emulate it;
    None: unknown (no /proc/cpuinfo, e.g. not Linux)."""
    info = _cpuinfo()
    if "flags" not in info:
        return None
    flags = set(info["flags"].split())
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def training_dtype() -> str:
    """The faster CPU training dtype here: bf16 where native, else fp32 (also when unknown)."""
    return "bf16" if native_bf16() else "fp32"
