"""LoRA adapter + base model -> one merged 16-bit HF folder (or the adapter alone, unmerged).

The base is loaded in its checkpoint's own dtype, the adapter in float32; each LoRA delta is formed in
float32 and the sum with its base weight rounded once to the checkpoint's dtype, then the model to
the target dtype (a no-op when they agree). No weight is rounded twice, as in a float32 merge of
the whole model, while the model is held in its own dtype (an 8B bf16 base needs ~16 GB, not the
~48 GB a whole-model float32 merge took).

A pre-quantized base (a bitsandbytes `*-bnb-4bit` checkpoint, as unsloth users pick) is dequantized
to 16-bit before the merge: merging into 4-bit weights re-quantizes the sum, losing the adapter's
small updates (unsloth #1519, #2374), and llama.cpp's converter cannot read 4-bit weights anyway.
The dequantized weights are exactly the ones the adapter was trained against.

The merge runs on the GPU when there is one and the model fits in its free memory, else on the CPU.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from t2g.files import atomic_dir
from t2g.models import tokenizer

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16", "float16": "float16",
          "f32": "float32", "fp32": "float32", "float32": "float32"}
GPU_HEADROOM = 0.85  # share of the GPU's free memory a merge may plan to fill (allocator slack, a float32 delta)


class MergeError(RuntimeError):
    pass


def load_tokenizer(base: str, adapter: str | None):
    """The tokenizer as trained (the adapter's copy first), without the pad-token fix."""
    return tokenizer.load_tokenizer(base, adapter, pad_token=False)


def merge_to_hf(base: str, adapter: str | None, out_dir: Path, dtype: str = "bf16", device: str = "auto") -> Path:
    """Write `base` (+ `adapter` merged into it) as a plain, unquantized HF folder in `dtype`.

    `device`: auto (the GPU when the model fits there, else the CPU), cuda or cpu.
    """
    import torch

    if dtype not in DTYPES:
        raise MergeError(f"--merged_dtype {dtype!r}: use bf16, f16 or f32")
    target = getattr(torch, DTYPES[dtype])
    where = merge_device(base, device)
    model = load_base(base, where)
    if getattr(model, "is_quantized", False):
        model = dequantize(model, base)
    if adapter:
        from peft import PeftModel

        # Adapter weights in float32 (PEFT's default upcast of 16-bit adapters, named here because the
        # merge depends on it): the delta is float32, and adding it to a 16-bit weight rounds the sum once.
        model = PeftModel.from_pretrained(model, adapter, autocast_adapter_dtype=True).merge_and_unload()
    model = model.to(target)
    tokenizer = load_tokenizer(base, adapter)
    with atomic_dir(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir


def load_base(base: str, device: str):
    """The base in its checkpoint's dtype (a 4-bit checkpoint as stored: dequantized afterwards)."""
    from transformers import AutoModelForCausalLM

    kwargs = {"device_map": {"": 0}} if device == "cuda" else {}
    return AutoModelForCausalLM.from_pretrained(base, dtype="auto", **kwargs)


def dequantize(model, base: str):
    """A quantized checkpoint's weights as 16-bit tensors, its quantization config removed."""
    method = getattr(getattr(model.config, "quantization_config", None), "quant_method", "quantized")
    method = getattr(method, "value", method)  # an enum in transformers 5
    print(f"t2g export: {base} is a pre-quantized ({method}) checkpoint; dequantizing it to 16-bit before the merge",
          file=sys.stderr)
    try:
        model = model.dequantize()
    except (NotImplementedError, ValueError) as exc:
        raise MergeError(f"{base}: its {method} weights cannot be dequantized here ({exc}); export from the "
                         f"unquantized model instead (--base_model=<the 16-bit original>)") from None
    # transformers keeps the load-time conversions to write the checkpoint back in its original format;
    # the quantizer's (4-bit deserialization) have no inverse and no longer apply to 16-bit weights.
    model._weight_conversions = [c for c in getattr(model, "_weight_conversions", None) or [] if _reversible(c)]
    return model


def _reversible(conversion) -> bool:
    try:
        conversion.reverse_transform()
    except NotImplementedError:
        return False
    return True


def merge_device(base: str, requested: str = "auto") -> str:
    """cuda when asked for, or (auto) when a GPU is there and the 16-bit model fits in its free memory."""
    import torch

    if requested not in ("auto", "cuda", "cpu"):
        raise MergeError(f"merge device {requested!r}: use auto, cuda or cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise MergeError("a merge on cuda was asked for, and no CUDA GPU is visible")
    if requested != "auto" or not torch.cuda.is_available():
        return requested if requested != "auto" else "cpu"
    need = model_bytes(base)
    free = torch.cuda.mem_get_info()[0]
    fits = need is not None and need < GPU_HEADROOM * free
    print(f"t2g export: merging on {'the GPU' if fits else 'the CPU'} (model ~{(need or 0) / 2**30:.1f} GiB in "
          f"16-bit, GPU free {free / 2**30:.1f} GiB)", file=sys.stderr)
    return "cuda" if fits else "cpu"


def model_bytes(base: str) -> int | None:
    """What the unquantized model takes in memory: parameters counted on the meta device (no weights
    read), at 2 bytes each (16-bit), or 4 where the checkpoint itself is float32."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(base)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError) as exc:
        print(f"t2g export: cannot size {base} ({exc}); merging on the CPU", file=sys.stderr)
        return None
    width = 4 if str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", "")).endswith("float32") else 2
    return sum(p.numel() for p in model.parameters()) * width


def is_prequantized(folder: str | Path) -> bool:
    """A local checkpoint whose config.json carries a quantization_config (e.g. a *-bnb-4bit folder)."""
    import json

    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and isinstance(config.get("quantization_config"), dict)


def copy_adapter(adapter: str, out_dir: Path) -> Path:
    """The adapter-only export: the adapter folder as trained (weights, config, tokenizer)."""
    src = Path(adapter)
    with atomic_dir(out_dir) as staging:
        for item in src.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
    return out_dir
