"""The tokenizer a model was trained with, loaded one way for training, inference and export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from t2g.models.folders import has_tokenizer


def tokenizer_source(base: str, adapter: str | Path | None = None) -> str:
    """The adapter's own copy when it saved one (training saves the tokenizer beside the adapter),
    else the base model's."""
    return str(adapter) if adapter and has_tokenizer(adapter) else str(base)


def ensure_pad_token(tokenizer: Any) -> Any:
    """Batched decoding and the trainers need a pad token; chat models often ship none. The EOS token
    is safe as padding: padded positions are masked, and generation stops at EOS anyway."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(base: str, adapter: str | Path | None = None, *, trust_remote_code: bool = False,
                   pad_token: bool = True, **kwargs: Any) -> Any:
    """AutoTokenizer from `tokenizer_source(base, adapter)`, with a pad token unless `pad_token=False`
    (an export writes the tokenizer exactly as trained, so that its GGUF's special tokens are the model's)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_source(base, adapter), trust_remote_code=trust_remote_code, **kwargs)
    return ensure_pad_token(tok) if pad_token else tok
