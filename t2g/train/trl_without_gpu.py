"""Stock TRL on a machine without a GPU.

TRL 1.15 computes SFT and GRPO log-probabilities through a fused LM head whose kernel is Triton
(CUDA/XPU only); without a GPU it fails with "0 active drivers". unsloth's CPU backend reroutes it
to a torch implementation; the `hf` backend (and the plain-TRL baseline of the benchmark) needs
the same, which this module provides: the kernel stays in use for CUDA/XPU tensors.
"""

from __future__ import annotations

import torch

OUTPUT_NAMES = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
LOGIT_ELEMENTS_PER_CHUNK = 16 * 1024 * 1024  # bounds the fp32 [rows, vocab] logits held at once (64 MB)


def _logits(hidden, weight, bias, temperature, softcap, logit_scale):
    # In the activations' dtype (a 4-bit model can keep a bf16 head beside fp32 activations), then fp32.
    z = hidden @ weight.to(hidden.dtype).t()
    if bias is not None:
        z = z + bias.to(hidden.dtype)
    z = z.float() * (1.0 if logit_scale is None else logit_scale)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    return z / temperature


def torch_log_probs(hidden, weight, bias, targets, temperature, chunk_size=None,
                    final_logit_softcapping=None, logit_scale=1.0, outputs=("entropy",)):
    """Same results as TRL's `ChunkedLogProbFunction` (per-token log-prob of `targets`, and the optional
    metrics in `outputs`), with plain torch ops that autograd differentiates, in row chunks."""
    if torch.is_autocast_enabled(hidden.device.type):
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
    parts: dict[str, list] = {name: [] for name in OUTPUT_NAMES}
    rows = max(1, LOGIT_ELEMENTS_PER_CHUNK // weight.shape[0])
    for start in range(0, max(hidden.shape[0], 1), rows):
        z = _logits(hidden[start:start + rows], weight, bias, temperature, final_logit_softcapping, logit_scale)
        logp = torch.log_softmax(z, dim=-1)
        t = targets[start:start + rows]
        parts["log_probs"].append(logp.gather(-1, t.unsqueeze(-1)).squeeze(-1))
        if "entropy" in outputs:
            parts["entropy"].append(-(logp.exp() * logp).sum(-1))
        with torch.no_grad():  # metrics only
            if "log_sum_sq_probs" in outputs:
                parts["log_sum_sq_probs"].append(torch.logsumexp(2 * logp, dim=-1))
            if "mean_logits" in outputs:
                parts["mean_logits"].append(z.mean(-1))
            if "is_top1" in outputs:
                parts["is_top1"].append(z.argmax(-1) == t)
    return tuple(torch.cat(parts[name]) if name == "log_probs" or name in outputs else None for name in OUTPUT_NAMES)


class _Dispatch:
    """Stands in for TRL's kernel class: the kernel on CUDA/XPU, torch_log_probs elsewhere."""

    kernel = None
    t2g_cpu_dispatch = True

    @classmethod
    def apply(cls, hidden, *args, **kwargs):
        if cls.kernel is not None and hidden.device.type in ("cuda", "xpu"):
            return cls.kernel.apply(hidden, *args, **kwargs)
        return torch_log_probs(hidden, *args, **kwargs)


def patch_trl_fused_lm_head() -> bool:
    """Route TRL's fused LM head to torch on non-GPU tensors. Idempotent; True when patched."""
    from trl.trainer import utils as trl_utils

    current = getattr(trl_utils, "_ChunkedLogProbFunction", "absent")
    if current == "absent":
        return False  # a TRL without the fused head: nothing to do
    if getattr(current, "t2g_cpu_dispatch", False) or getattr(current, "_unsloth_cpu_dispatch", False):
        return True
    _Dispatch.kernel = current
    trl_utils._ChunkedLogProbFunction = _Dispatch
    return True
