"""LoRA adapter + base model -> one merged 16-bit HF folder (or the adapter alone, unmerged).

The merge runs in float32 (base weights upcast, `merge_and_unload`, then one rounding to the
target dtype) so that the exported weights are rounded once, not twice. A 4-bit base cannot be
merged on CPU (bitsandbytes raises); the base is always reloaded unquantized here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "f16": "float16", "fp16": "float16", "float16": "float16",
          "f32": "float32", "fp32": "float32", "float32": "float32"}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class MergeError(RuntimeError):
    pass


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A hidden staging folder beside `target`, renamed over it only when the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def load_tokenizer(base: str, adapter: str | None):
    """The tokenizer the model was trained with: the adapter's copy when it saved one, else the base's."""
    from transformers import AutoTokenizer

    source = adapter if adapter and has_tokenizer(Path(adapter)) else base
    return AutoTokenizer.from_pretrained(source)


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
