"""Model loading behind one small interface, with two backends.

- `unsloth` (default): `FastLanguageModel` (4-bit, fused kernels, its gradient checkpointing, LoRA
  through its `get_peft_model`; vLLM generation on CUDA with `fast_inference`). Without a GPU,
  unsloth 2026.10 switches to its CPU backend (stock transformers + PEFT under the same calls).
  With `fast_inference` vLLM starts when the model loads; in unsloth's standby mode (set by
  `t2g.train.config.env_defaults` before unsloth is imported) it is put to sleep right away, so its
  KV cache is released through SFT and between GRPO's generations (`vllm_standby`).
- `hf`: transformers + peft (+ bitsandbytes 4-bit): for users without unsloth, and the baseline
  for benchmarks.

Call `import_backend(backend)` before anything imports trl/transformers/peft: unsloth patches them
at import time and warns (and runs slower) when it comes second.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2g.models import tokenizer
from t2g.models.dtype import torch_dtype
from t2g.models.names import resolve_model_name
from t2g.models.tokenizer import ensure_pad_token
from t2g.train import distributed
from t2g.train.config import ConfigError, TrainConfig, env_defaults



@dataclass
class LoadedModel:
    model: Any  # a PeftModel with trainable LoRA weights
    tokenizer: Any
    backend: str
    name: str  # what was loaded (a resolved local folder for embedded models)
    loaded_in_4bit: bool


def import_backend(backend: str) -> None:
    """Import unsloth first when it is the backend; fail clearly when it is not installed."""
    env_defaults()
    if backend != "unsloth":
        return
    if importlib.util.find_spec("unsloth") is None:
        raise ConfigError("--backend=unsloth needs unsloth: pip install 't2g[unsloth]' (or use --backend=hf)")
    late = [m for m in ("trl", "transformers", "peft") if m in sys.modules and "unsloth" not in sys.modules]
    if late:
        print(f"t2g: warning: {', '.join(late)} imported before unsloth; unsloth's patches may not apply", file=sys.stderr)
    import unsloth  # noqa: F401  (patches transformers/trl/peft on import)


def disable_bnb_cpu_repack(model) -> int:
    """bitsandbytes 0.50 repacks Linear4bit weights for AVX512-BF16 on the first no-grad forward
    (generate) and never unpacks them; training afterwards breaks on models with biases (Qwen2) or
    silently stalls. Keep every layer on the trainable layout."""
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def is_4bit(model) -> bool:
    import torch

    return any(getattr(p, "quant_type", None) is not None or p.dtype == torch.uint8 for p in model.parameters())


def load_tokenizer(cfg: TrainConfig, name: str):
    """The training tokenizer, refused early when it has no chat template (the prompt needs one)."""
    tok = tokenizer.load_tokenizer(name, trust_remote_code=cfg.trust_remote_code)
    if tok.chat_template is None:
        raise ConfigError(f"--model={name}: its tokenizer has no chat template; t2g needs an instruct/chat model")
    return tok


def load(cfg: TrainConfig, adapter: str | Path | None = None) -> LoadedModel:
    """Load `cfg.model` with LoRA: fresh adapters, or a saved adapter folder (trainable)."""
    name = resolve_model_name(cfg.model)
    if cfg.backend == "unsloth":
        loaded = _load_unsloth(cfg, name, adapter)
    else:
        loaded = _load_hf(cfg, name, adapter)
    disable_bnb_cpu_repack(loaded.model)
    if cfg.load_in_4bit and not loaded.loaded_in_4bit:
        print(f"t2g: warning: --load_in_4bit was asked for but {cfg.backend} loaded 16/32-bit weights "
              f"(bitsandbytes 4-bit is unavailable here); recorded in the run directory", file=sys.stderr)
    return loaded


FULLY_TRAINED = ("embed_tokens", "lm_head")


def _lora_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    return dict(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=list(cfg.lora_target_modules))


def _hf_lora_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """As unsloth does: embed_tokens / lm_head in the targets are trained in full (modules_to_save),
    since TRL reads lm_head.weight directly and a LoRA on it would never train."""
    kwargs = _lora_kwargs(cfg)
    full = [m for m in kwargs["target_modules"] if m in FULLY_TRAINED]
    if full:
        kwargs["target_modules"] = [m for m in kwargs["target_modules"] if m not in FULLY_TRAINED]
        kwargs["modules_to_save"] = full
    return kwargs


def _load_unsloth(cfg: TrainConfig, name: str, adapter: str | Path | None) -> LoadedModel:
    from unsloth import FastLanguageModel

    kwargs: dict[str, Any] = dict(max_seq_length=cfg.max_seq_length, dtype=None if cfg.dtype == "auto" else torch_dtype(cfg.dtype),
                                  load_in_4bit=cfg.load_in_4bit, trust_remote_code=cfg.trust_remote_code)
    if cfg.fast_inference:  # validated earlier: CUDA and vllm are present
        kwargs.update(fast_inference=True, max_lora_rank=cfg.lora_r, gpu_memory_utilization=cfg.gpu_memory_utilization)
    gc = "unsloth" if cfg.gradient_checkpointing else False
    # A saved adapter folder loads as base + that adapter (trainable), as unsloth's notebooks do.
    model, tok = FastLanguageModel.from_pretrained(model_name=str(adapter or name), use_gradient_checkpointing=gc, **kwargs)
    quantized = is_4bit(model)
    model = FastLanguageModel.get_peft_model(model, **_lora_kwargs(cfg), use_gradient_checkpointing=gc,
                                             random_state=cfg.seed, bias="none")
    ensure_pad_token(tok)
    if cfg.fast_inference:
        vllm_standby(model)
    return LoadedModel(model, tok, "unsloth", name, quantized)


def vllm_standby(model) -> bool:
    """Put unsloth's vLLM engine to sleep until GRPO generates; say what it freed.

    vLLM reserves --gpu_memory_utilization of the GPU when it starts (its KV cache; the weights are
    shared with the training model). Without this the reservation stays through SFT. Asleep, the KV
    cache is released (the shared weights stay); GRPO's generation wakes it (unsloth's patched
    `LLM.generate`) and TRL's sleep mode, which unsloth turns on with standby, puts it back to sleep
    after each generation. Needs UNSLOTH_VLLM_STANDBY=1 set before unsloth was imported.
    """
    import os

    import torch

    engine = getattr(model, "vllm_engine", None)
    config = getattr(getattr(getattr(engine, "llm_engine", None), "vllm_config", None), "model_config", None)
    if engine is None or not getattr(config, "enable_sleep_mode", False):
        standby = os.environ.get("UNSLOTH_VLLM_STANDBY", "0")
        print(f"t2g: warning: vLLM holds --gpu_memory_utilization of the GPU through SFT: its sleep mode is off "
              f"(UNSLOTH_VLLM_STANDBY={standby}; it must be 1 before unsloth is imported, as the recipes set it)",
              file=sys.stderr)
        return False
    before, total = torch.cuda.mem_get_info()
    engine.sleep(1)
    after = torch.cuda.mem_get_info()[0]
    gib = 2 ** 30
    print(f"t2g: vLLM standby: asleep until GRPO generates; GPU memory free {before / gib:.2f} -> {after / gib:.2f} "
          f"GiB of {total / gib:.2f} GiB", file=sys.stderr)
    return True


def _load_hf(cfg: TrainConfig, name: str, adapter: str | Path | None) -> LoadedModel:
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(cfg.dtype)
    kwargs: dict[str, Any] = dict(dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    if cfg.load_in_4bit:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("--load_in_4bit needs bitsandbytes: pip install bitsandbytes (or --load_in_4bit=False)")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype if dtype != torch.float32 or torch.cuda.is_available() else torch.float32)
    engine = distributed.sharded_engine()
    if engine and cfg.load_in_4bit:
        # ZeRO-3 / FSDP shard parameters by dtype: 4-bit weights must be stored as the compute dtype
        kwargs["quantization_config"].bnb_4bit_quant_storage = dtype
    if torch.cuda.is_available():
        if engine is None:  # DDP (or one process): each rank holds the whole model on its own GPU
            kwargs["device_map"] = {"": distributed.local_rank()}
        # DeepSpeed / FSDP place and shard the weights themselves: no device_map
    else:
        from t2g.train.trl_without_gpu import patch_trl_fused_lm_head

        patch_trl_fused_lm_head()  # TRL's fused LM head is Triton-only
    model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    quantized = is_4bit(model)
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    else:
        torch.manual_seed(cfg.seed)  # LoRA's A matrices are random: same seed, same start
        model = get_peft_model(model, LoraConfig(**_hf_lora_kwargs(cfg), bias="none", task_type="CAUSAL_LM"))
    tok = load_tokenizer(cfg, name)
    return LoadedModel(model, tok, "hf", name, quantized)


def lora_state(model) -> dict[str, Any]:
    """A CPU copy of the LoRA weights (to check that training changed them)."""
    return {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items() if "lora_" in k}
