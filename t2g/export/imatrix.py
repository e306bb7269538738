"""An importance matrix from the task's own prompts, for llama.cpp's k-quant quantizer.

A k-quant picks each block's scales to minimise the weighted error of the weights; with an importance
matrix the weight of a column is how strongly the model's inputs drive it (the mean of the squared
activation of that input column), so the 4-bit error lands where the task's inputs rarely reach.
llama.cpp's `llama-imatrix` measures it on generic text; here it is measured on what the extractor
is asked and answers (the chat prompt and the gold graph, teacher-forced through the HF model that
was exported), which is the distribution the quantized model will run on.

    values = task_imatrix(hf_dir, examples, gguf_16bit)    # {"blk.0.attn_q.weight": float32[n_in], ...}
    write_imatrix(values, out / "imatrix.npz")             # what quantize_gguf(..., imatrix=path) reads

The values are keyed by the GGUF's tensor names (gguf's own name map from the HF module names) and
checked against the 16-bit GGUF's shapes, so a matrix never reaches a tensor it was not measured for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from t2g.data.canonical import Example
from t2g.files import atomic_open


class ImatrixError(RuntimeError):
    """The importance matrix cannot be computed or does not fit the GGUF; the message says why."""


def task_imatrix(hf_dir: str | Path, examples: Sequence[Example], gguf_16bit: str | Path,
                 max_examples: int = 64) -> dict[str, np.ndarray]:
    """Mean squared input activation per column of every linear layer the GGUF holds, over the chat
    prompts and gold answers of up to `max_examples` examples (fp32, CPU, teacher-forced)."""
    import torch
    from transformers import AutoModelForCausalLM

    from t2g.export.lora_gguf import BaseLayout, _name_map
    from t2g.models.tokenizer import load_tokenizer
    from t2g.task.prompts import build_messages, render_target

    if not examples:
        raise ImatrixError("no calibration examples: give a dataset with at least one row (--imatrix_data)")
    layout = BaseLayout.read(gguf_16bit)
    names = _name_map(layout.arch, layout.n_layers)
    tokenizer = load_tokenizer(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        gguf_name = names.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
        shape = layout.shapes.get(gguf_name or "")
        if gguf_name is None or shape is None or len(shape) != 2 or shape[1] != module.in_features:
            continue  # not in the GGUF as a matrix of these inputs (e.g. a tied lm_head)

        def collect(_module: Any, inputs: tuple, name: str = gguf_name) -> None:
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            sums[name] = sums.get(name, 0) + (x * x).sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        hooks.append(module.register_forward_pre_hook(collect))
    if not hooks:
        raise ImatrixError(f"{hf_dir}: no linear layer of the model maps to a matrix of {gguf_16bit}; "
                           "the GGUF was not converted from this model")
    try:
        with torch.no_grad():
            for ex in examples[:max_examples]:
                messages = build_messages(ex.text, ex.entity_types, ex.relation_types, ex.type_descriptions or None)
                messages.append({"role": "assistant", "content": render_target(ex.graph)})
                ids = tokenizer.apply_chat_template(messages, tokenize=True, return_tensors="pt", return_dict=True)
                model(input_ids=ids["input_ids"])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (sums[name] / counts[name]).numpy().astype(np.float32) for name in sorted(sums)}


def write_imatrix(values: dict[str, np.ndarray], path: str | Path) -> Path:
    """The matrix as an .npz (tensor name -> float32 vector), written atomically."""
    for name, v in values.items():
        if v.ndim != 1 or not np.all(np.isfinite(v)):
            raise ImatrixError(f"{name}: an importance vector must be finite and one-dimensional")
    with atomic_open(path, "wb", encoding=None) as f:
        np.savez(f, **values)
    return Path(path)


def summary(values: dict[str, np.ndarray], n_examples: int) -> dict[str, Any]:
    """What export.json records about the matrix."""
    return {"tensors": len(values), "examples": n_examples,
            "columns": int(sum(v.size for v in values.values()))}
