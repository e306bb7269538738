"""HF folder -> GGUF with llama.cpp's own converter; k-quants with llama.cpp's quantizer.

f32/f16/bf16/q8_0 come straight from `convert_hf_to_gguf.py` (pure Python). k-quants (q4_k_m ...)
need llama.cpp's C++ quantizer: `llama_cpp.llama_model_quantize` from an installed
llama-cpp-python, else a `llama-quantize` binary in the llama.cpp folder or on PATH. Both run in a
subprocess writing to a hidden `.tmp` file that is renamed over the target only on success, so a
crash, a kill or Ctrl-C never leaves a `*.gguf` that looks complete.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from t2g.export.llama_cpp import LlamaCpp

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")
# llama.cpp's `enum llama_ftype` values for the quantizer (include/llama.h).
QUANTIZER_TYPES = {
    "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13,
    "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18,
}
ALL_TYPES = CONVERTER_TYPES + tuple(QUANTIZER_TYPES)
# ggml's `enum ggml_type` values (ggml.h) a single tensor can be given with --tensor_types.
TENSOR_TYPES = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q2_k": 10, "q3_k": 11,
    "q4_k": 12, "q5_k": 13, "q6_k": 14, "bf16": 30,
}
_SHIM = Path(__file__).with_name("_convert_main.py")


class ExportError(RuntimeError):
    """An export step failed; the message says which and what to do."""


@dataclass(frozen=True)
class ConvertResult:
    path: Path
    outtype: str
    pretokenizer_fallback: str | None  # llama.cpp pre-tokenizer name assumed for an unknown hash
    tokenizer_repair: str | None = None  # what was changed in a staged copy of tokenizer.json, if anything


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


def misdeclared_byte_fallback(tokenizer_json: dict) -> bool:
    """A byte-level BPE (every byte is a token) that also declares SentencePiece-style byte fallback.

    transformers writes this shape when it rebuilds a GPT-2-style tokenizer from a GGUF (our SmolLM2
    folder is made that way, and so is every adapter trained on it). llama.cpp's Llama converter then
    takes it for a SentencePiece vocabulary and writes a GGUF whose tokenizer llama.cpp cannot load.
    """
    model, pre = tokenizer_json.get("model") or {}, tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    return (model.get("type") == "BPE" and bool(model.get("byte_fallback"))
            and any(step.get("type") == "ByteLevel" for step in steps))


@contextmanager
def conversion_source(hf_dir: Path, scratch: Path) -> Iterator[tuple[Path, str | None]]:
    """`hf_dir`, or a staged copy (links + a repaired tokenizer.json) when the tokenizer is misdeclared.

    The repair only removes the byte-fallback flag and the SentencePiece decoder steps, which a
    byte-level BPE never uses; HF tokenisation is unchanged, and the exporter checks afterwards that
    llama.cpp tokenizes exactly like the original HF tokenizer.
    """
    import json
    import shutil

    path = hf_dir / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if not misdeclared_byte_fallback(data):
        yield hf_dir, None
        return
    staged = Path(tempfile.mkdtemp(prefix=".convert-src-", dir=scratch))
    try:
        for item in hf_dir.iterdir():
            if item.name != "tokenizer.json":
                (staged / item.name).symlink_to(item.resolve())
        data["model"]["byte_fallback"] = False
        data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        (staged / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        yield staged, "byte-level BPE declared byte_fallback: converted without it (ByteLevel decoder)"
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def convert_hf_to_gguf(hf_dir: Path, out_path: Path, outtype: str, llama_cpp: LlamaCpp,
                       pretokenizer: str = "auto") -> ConvertResult:
    """Convert an HF model folder with llama.cpp's converter (see `_convert_main` for `pretokenizer`)."""
    if outtype not in CONVERTER_TYPES:
        raise ExportError(f"the converter writes {', '.join(CONVERTER_TYPES)}, not {outtype}; use quantize_gguf")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the converter must never reach for the hub
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with conversion_source(hf_dir, out_path.parent) as (source, repair), atomic_target(out_path) as tmp:
        cmd = [sys.executable, str(_SHIM), str(llama_cpp.root), pretokenizer, "--",
               str(source), "--outtype", outtype, "--outfile", str(tmp)]
        log = _run(cmd, f"llama.cpp converter ({llama_cpp.converter}, from {llama_cpp.source})", env)
    fallback = None
    for line in log.splitlines():
        if line.startswith("T2G_PRETOKENIZER_FALLBACK="):
            fallback = line.split("=", 1)[1].strip()
    return ConvertResult(out_path, outtype, fallback, repair)


_QUANTIZE_PY = """
import ctypes, json, sys, llama_cpp
import numpy as np
options = json.loads(sys.argv[3])
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = options["ftype"]
params.nthread = options["threads"]
if options["imatrix"]:  # an importance matrix (t2g.export.imatrix): a name-terminated array, as llama-quantize builds
    found = np.load(options["imatrix"])
    keep = [(name.encode(), np.ascontiguousarray(found[name], dtype=np.float32)) for name in found.files]
    entries = (llama_cpp.llama_model_imatrix_data * (len(keep) + 1))()
    for entry, (name, values) in zip(entries, keep):
        entry.name, entry.size = name, values.size
        entry.data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
if options["tensor_types"]:  # per-tensor types, as llama-quantize's --tensor-type: a pattern-terminated array
    overrides = (llama_cpp.llama_model_tensor_override * (len(options["tensor_types"]) + 1))()
    for entry, (pattern, ggml_type) in zip(overrides, options["tensor_types"]):
        entry.pattern, entry.type = pattern.encode(), ggml_type
    params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(llama_cpp.llama_model_tensor_override))
rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params)
sys.exit(1 if rc else 0)
"""


def _has_llama_cpp_python() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


TensorTypes = tuple[tuple[str, str], ...]


def parse_tensor_types(spec: str | Sequence[str] | None, what: str = "--tensor_types") -> TensorTypes:
    """`"ffn_down=q8_0,attn_v=q8_0"` (or those items as a sequence) -> ((pattern, type), ...), in order: each
    pattern is a regular expression searched in a tensor's GGUF name (`blk.3.ffn_down.weight`), the first
    that matches wins, as in llama-quantize's --tensor-type. Empty or None: no override."""
    import re

    items = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec or ()) if p.strip()]
    parsed = []
    for item in items:
        pattern, sep, type_name = item.rpartition("=")
        type_name = type_name.strip().lower()
        if not sep or not pattern.strip():
            raise ExportError(f"{what}: {item!r} is not PATTERN=TYPE (e.g. ffn_down=q8_0,attn_v=q8_0)")
        if type_name not in TENSOR_TYPES:
            raise ExportError(f"{what}: {item!r}: unknown tensor type {type_name!r}; use one of {', '.join(TENSOR_TYPES)}")
        try:
            re.compile(pattern.strip())
        except re.error as err:
            raise ExportError(f"{what}: {item!r}: the pattern is not a regular expression ({err})") from None
        parsed.append((pattern.strip(), type_name))
    return tuple(parsed)


def format_tensor_types(tensor_types: TensorTypes) -> str:
    """The inverse of parse_tensor_types: the flag's own spelling, for labels, manifests and cards."""
    return ",".join(f"{pattern}={type_name}" for pattern, type_name in tensor_types)


def _check_patterns_match(src: Path, tensor_types: TensorTypes) -> None:
    """llama.cpp's quantizer ignores a pattern that matches nothing: a typo would export the default mix and
    say nothing, so every pattern must match a tensor of the model (names as the GGUF spells them)."""
    import re

    from gguf import GGUFReader

    names = [t.name for t in GGUFReader(src).tensors]
    for pattern, type_name in tensor_types:
        if not any(re.search(pattern, n) for n in names):
            sample = ", ".join(sorted({re.sub(r"^blk\.\d+\.", "blk.N.", n) for n in names})[:12])
            raise ExportError(f"--tensor_types: {pattern}={type_name} matches no tensor of {src.name}; "
                              f"its tensors are named like {sample}")


def quantize_gguf(src: Path, out_path: Path, quant: str, llama_cpp: LlamaCpp | None = None,
                  threads: int = 0, imatrix: Path | None = None, tensor_types: TensorTypes = ()) -> Path:
    """Quantize a 16/32-bit GGUF to a k-quant (or legacy quant) with llama.cpp's C++ quantizer; `imatrix`:
    an importance matrix written by t2g.export.imatrix (through llama-cpp-python only); `tensor_types`:
    (pattern, type) pairs from parse_tensor_types that replace the quant's own choice for matching tensors."""
    if quant not in QUANTIZER_TYPES:
        raise ExportError(f"{quant} is written by the converter, not the quantizer")
    if tensor_types:
        _check_patterns_match(src, tensor_types)
    binary = llama_cpp.quantize_binary() if llama_cpp else None
    with atomic_target(out_path) as tmp:
        if _has_llama_cpp_python():
            options = {"ftype": QUANTIZER_TYPES[quant], "threads": threads, "imatrix": str(imatrix) if imatrix else None,
                       "tensor_types": [[pattern, TENSOR_TYPES[t]] for pattern, t in tensor_types]}
            cmd = [sys.executable, "-c", _QUANTIZE_PY, str(src), str(tmp), json.dumps(options)]
        elif imatrix is not None:
            raise ExportError(f"--imatrix for {quant} needs llama-cpp-python (its quantizer takes the matrix in memory); "
                              "install it, or pass --imatrix=none")
        elif binary is not None:
            cmd = [str(binary)] + [a for pattern, t in tensor_types for a in ("--tensor-type", f"{pattern}={t}")]
            cmd += [str(src), str(tmp), quant.upper()] + ([str(threads)] if threads > 0 else [])
        else:
            raise ExportError(
                f"--quant {quant} needs llama.cpp's quantizer and neither llama-cpp-python nor a llama-quantize "
                "binary was found. Install it with `pip install 'llama-cpp-python==0.3.36'` (compiles llama.cpp, "
                "~5 min), or build llama-quantize in your llama.cpp folder (cmake -B build -DLLAMA_CURL=OFF && "
                "cmake --build build --target llama-quantize), or export only f16/bf16/q8_0."
            )
        _run(cmd, f"quantizing {src.name} to {quant}" + (f" with {format_tensor_types(tensor_types)}" if tensor_types else ""))
        if tensor_types:
            _warn_replaced_types(tmp, tensor_types)
    return out_path


def _warn_replaced_types(quantized: Path, tensor_types: TensorTypes) -> None:
    """llama.cpp stores a matrix whose row length its asked type cannot hold (k-quants need multiples of
    256) in a compatible type instead, and says so only in its log: name each such tensor on stderr."""
    import re

    from gguf import GGUFReader

    replaced = []
    for tensor in GGUFReader(quantized).tensors:
        asked = next((t for pattern, t in tensor_types if re.search(pattern, tensor.name)), None)
        if asked and len(tensor.shape) >= 2 and tensor.tensor_type.name.lower() != asked:
            replaced.append(f"{tensor.name} ({int(tensor.shape[0])} wide) is {tensor.tensor_type.name.lower()}, not {asked}")
    if replaced:
        print(f"t2g export: warning: llama.cpp could not store {len(replaced)} tensor(s) as --tensor_types asked: "
              + "; ".join(replaced[:4]) + (f"; and {len(replaced) - 4} more" if len(replaced) > 4 else ""), file=sys.stderr)


_TOKENIZE_PY = """
import json, sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], vocab_only=True, verbose=False)
texts = json.loads(sys.stdin.read())
print(json.dumps([llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]))
"""


def gguf_tokenize(gguf_path: Path, texts: Sequence[str]) -> list[list[int]]:
    """Token ids as llama.cpp tokenizes `texts` (special tokens parsed, as HF does), in a subprocess:
    a GGUF with a broken vocabulary makes llama.cpp abort the whole process, which must become an error."""
    import json

    proc = subprocess.run([sys.executable, "-c", _TOKENIZE_PY, str(gguf_path)], input=json.dumps(texts),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise ExportError(f"llama.cpp cannot load the tokenizer of {gguf_path.name} (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
