"""LoRA adapter + base model -> one merged 16-bit HF folder (or the adapter alone, unmerged).

The merge runs in float32 (base weights upcast, `merge_and_unload`, then one rounding to the
target dtype) so that the exported weights are rounded once, not twice. A 4-bit base cannot be
merged on CPU (bitsandbytes raises); the base is always reloaded unquantized here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from t2g.files import atomic_dir
from t2g.models import tokenizer

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16", "float16": "float16",
          "f32": "float32", "fp32": "float32", "float32": "float32"}


class MergeError(RuntimeError):
    pass


def load_tokenizer(base: str, adapter: str | None):
    """The tokenizer as trained (the adapter's copy first), without the pad-token fix."""
    return tokenizer.load_tokenizer(base, adapter, pad_token=False)


def merge_to_hf(base: str, adapter: str | None, out_dir: Path, dtype: str = "bf16") -> Path:
    """Write `base` (+ `adapter` merged into it) as a plain HF folder in `dtype`."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise MergeError(f"--merged_dtype {dtype!r}: use bf16, f16 or f32")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model = model.to(getattr(torch, DTYPES[dtype]))
    tokenizer = load_tokenizer(base, adapter)
    with atomic_dir(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return out_dir


def copy_adapter(adapter: str, out_dir: Path) -> Path:
    """The adapter-only export: the adapter folder as trained (weights, config, tokenizer)."""
    src = Path(adapter)
    with atomic_dir(out_dir) as staging:
        for item in src.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
    return out_dir
