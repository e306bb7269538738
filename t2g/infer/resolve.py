"""Which runtime loads what, for a model named on the command line or in Python.

`model` is one of
- `smollm2`: the embedded SmolLM2-135M-Instruct (its GGUF for llama.cpp, its HF folder for hf);
- a `.gguf` file (llama.cpp by default; `runtime="hf"` dequantizes it through transformers);
- a folder: a merged HF model (`config.json`), a LoRA adapter (`adapter_config.json`, loaded on its
  base model and merged), or a training run directory (its final adapter on the base model its
  `config.json` recorded; `t2g.models.folders` answers both), or a folder holding one of these in
  `final/`, `merged/` or `adapter/`;
- a hub name, for `hf` (from the local HF cache when offline), or the server's model name for
  `openai` (with `base_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from t2g.infer.options import RUNTIMES
from t2g.models.folders import FINAL_FIRST, MODEL_SUBDIRS, RunDir, adapter_base_model, is_adapter, is_hf_model, model_folders
from t2g.models.names import resolve_model_name

SMOLLM2 = "smollm2"


@dataclass(frozen=True)
class ModelSpec:
    runtime: str  # hf | llama.cpp | openai
    path: str  # HF folder or hub name, GGUF file, or the server's model name
    adapter: str | None = None  # LoRA adapter folder to load on `path`
    gguf_file: str | None = None  # hf runtime on a GGUF: the file name inside `path`


def resolve_model(model: str, runtime: str = "auto", base_url: str | None = None, base_model: str | None = None) -> ModelSpec:
    """Turn a model name into (runtime, what to load); errors say what to pass instead."""
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime={runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime == "openai" or (runtime == "auto" and base_url):
        if not base_url:
            raise ValueError("--runtime=openai needs --base_url (e.g. http://127.0.0.1:8000/v1)")
        return ModelSpec("openai", model)
    if model == SMOLLM2:
        from t2g.models import offline as assets

        if runtime == "hf":
            return ModelSpec("hf", str(assets.smollm2_hf_dir()))
        return ModelSpec("llama.cpp", str(assets.smollm2_gguf_path()))
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ValueError(f"--model={model}: no such GGUF file")
        if runtime == "hf":
            return ModelSpec("hf", str(path.parent), gguf_file=path.name)
        return ModelSpec("llama.cpp", str(path))
    if path.is_dir():
        return _resolve_dir(path, runtime, base_model)
    if runtime == "llama.cpp":
        raise ValueError(f"--model={model}: --runtime=llama.cpp needs a .gguf file (or smollm2)")
    if path.exists() or model.startswith((".", "/", "~")):
        raise ValueError(f"--model={model}: no such folder or file")
    return ModelSpec("hf", model)  # a hub name


def _resolve_dir(folder: Path, runtime: str, base_model: str | None) -> ModelSpec:
    ggufs = sorted(folder.glob("*.gguf"))
    if runtime == "llama.cpp":
        if len(ggufs) != 1:
            raise ValueError(f"--model={folder}: --runtime=llama.cpp needs a .gguf file; this folder has "
                             f"{len(ggufs)} ({', '.join(g.name for g in ggufs) or 'none'}): pass one")
        return ModelSpec("llama.cpp", str(ggufs[0]))
    for candidate in model_folders(folder):
        if is_adapter(candidate):
            base = base_model or RunDir(folder).recorded_model() or adapter_base_model(candidate)
            if not base:
                raise ValueError(f"{candidate}/adapter_config.json names no base model; pass --base_model")
            return ModelSpec("hf", resolve_model(resolve_model_name(base), "hf").path, adapter=str(candidate))
        if is_hf_model(candidate):
            return ModelSpec("hf", str(candidate))
    if len(ggufs) == 1 and runtime == "auto":
        return ModelSpec("llama.cpp", str(ggufs[0]))
    looked = ", ".join([f"{stage}/adapter" for stage in FINAL_FIRST] + list(MODEL_SUBDIRS))
    raise ValueError(f"--model={folder}: found no model in it (looked for adapter_config.json or an HF config.json "
                     f"in it and in {looked}, and for a single .gguf); point --model at the model folder")
