"""Which torch dtype a `--dtype` name means, one answer for training, inference and export."""

from __future__ import annotations

from typing import Any

DTYPES = ("auto", "bf16", "fp16", "fp32")
# The same floats under llama.cpp's names: the GGUF type that holds weights of each dtype exactly.
GGUF_FLOAT_TYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def torch_dtype(name: str, device: str | None = None) -> Any:
    """`auto` is bf16 on a CUDA GPU that has it (fp16 on older cards) and fp32 on a CPU: most CPUs
    emulate bf16 (many times slower), and lower precision changes greedy outputs. `device` is where
    the model will run ("cuda", "cuda:1", "cpu"); None = CUDA when one is visible."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"--dtype={name!r}: use one of {', '.join(DTYPES)}")
    if name == "auto":
        on_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
        if not on_cuda:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
