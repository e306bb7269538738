"""HF folder -> GGUF with llama.cpp's own converter; k-quants with llama.cpp's quantizer.

f32/f16/bf16/q8_0 come straight from `convert_hf_to_gguf.py` (pure Python). k-quants (q4_k_m ...)
need llama.cpp's C++ quantizer: `llama_cpp.llama_model_quantize` from an installed
llama-cpp-python, else a `llama-quantize` binary in the llama.cpp folder or on PATH. Both run in a
subprocess writing to a hidden `.tmp` file that is renamed over the target only on success, so a
crash, a kill or Ctrl-C never leaves a `*.gguf` that looks complete.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from t2g.export.llamacpp import LlamaCpp

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp's `enum llama_ftype` values for the quantizer (include/llama.h).
QUANTIZER_TYPES = {
    "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13,
    "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18,
}
ALL_TYPES = CONVERTER_TYPES + tuple(QUANTIZER_TYPES)
_SHIM = Path(__file__).with_name("_convert_main.py")


class ExportError(RuntimeError):
    """An export step failed; the message says which and what to do."""


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    outtype: str
    pretokenizer_fallback: str | None  # llama.cpp pre-tokenizer name assumed for an unknown hash


def normalize_type(name: str) -> str:
    key = name.strip().lower()
    if key not in ALL_TYPES:
        raise ExportError(f"--quant {name!r}: unknown GGUF type; choose from {', '.join(ALL_TYPES)}")
    return key


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A hidden temporary path beside `path`; renamed over `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run(cmd: Sequence[str], what: str, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise ExportError(f"{what} failed (exit {proc.returncode}); command: {' '.join(map(str, cmd))}\n{tail}")
    return proc.stdout


def convert_hf_to_gguf(hf_dir: Path, out_path: Path, outtype: str, llama_cpp: LlamaCpp,
                       pretokenizer: str = "auto") -> ConvertResult:
    """Convert an HF model folder with llama.cpp's converter (see `_convert_main` for `pretokenizer`)."""
    if outtype not in CONVERTER_TYPES:
        raise ExportError(f"the converter writes {', '.join(CONVERTER_TYPES)}, not {outtype}; use quantize_gguf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the converter must never reach for the hub
    with atomic_target(out_path) as tmp:
        cmd = [sys.executable, str(_SHIM), str(llama_cpp.root), pretokenizer, "--",
               str(hf_dir), "--outtype", outtype, "--outfile", str(tmp)]
        log = _run(cmd, f"llama.cpp converter ({llama_cpp.converter}, from {llama_cpp.source})", env)
    fallback = None
    for line in log.splitlines():
        if line.startswith("T2G_PRETOKENIZER_FALLBACK="):
            fallback = line.split("=", 1)[1].strip()
    return ConvertResult(out_path, outtype, fallback)


_QUANTIZE_PY = """
import sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = int(sys.argv[3])
params.nthread = int(sys.argv[4])
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params)
sys.exit(1 if rc else 0)
"""


def _has_llama_cpp_python() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def quantize_gguf(src: Path, out_path: Path, quant: str, llama_cpp: LlamaCpp | None = None,
                  threads: int = 0) -> Path:
    """Quantize a 16/32-bit GGUF to a k-quant (or legacy quant) with llama.cpp's C++ quantizer."""
    if quant not in QUANTIZER_TYPES:
        raise ExportError(f"{quant} is written by the converter, not the quantizer")
    binary = llama_cpp.quantize_binary() if llama_cpp else None
    with atomic_target(out_path) as tmp:
        if _has_llama_cpp_python():
            cmd = [sys.executable, "-c", _QUANTIZE_PY, str(src), str(tmp), str(QUANTIZER_TYPES[quant]), str(threads)]
        elif binary is not None:
            cmd = [str(binary), str(src), str(tmp), quant.upper()] + ([str(threads)] if threads > 0 else [])
        else:
            raise ExportError(
                f"--quant {quant} needs llama.cpp's quantizer and neither llama-cpp-python nor a llama-quantize "
                "binary was found. Install it with `pip install 'llama-cpp-python==0.3.36'` (compiles llama.cpp, "
                "~5 min), or build llama-quantize in your llama.cpp folder (cmake -B build -DLLAMA_CURL=OFF && "
                "cmake --build build --target llama-quantize), or export only f16/bf16/q8_0."
            )
        _run(cmd, f"quantizing {src.name} to {quant}")
    return out_path


def gguf_tokenize(gguf_path: Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids as llama.cpp itself tokenizes (vocab only, no special-token parsing like HF's plain text)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    try:
        return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
    finally:
        llm.close()
