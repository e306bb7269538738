"""The merge behind export: a pre-quantized (bitsandbytes 4-bit) base is dequantized before the LoRA
is merged, each layer is summed in float32 and rounded once, and the merge goes to the GPU when the
model fits there.

The 4-bit base is the tiny model quantized by bitsandbytes' CPU backend and saved as such: the same
kind of folder as unsloth's `*-bnb-4bit` checkpoints (config.json with a quantization_config).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t2g.export import merge
from t2g.export.merge import MergeError, is_prequantized, merge_device, merge_to_hf

TARGETS = ["q_proj", "v_proj"]


def _lora(model, out: Path) -> Path:
    """A LoRA with random (non-zero) B matrices on `model`, saved to `out`."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def bnb_base(tiny_model_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    out = tmp_path_factory.mktemp("tiny-bnb-4bit")
    quantized = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16))
    quantized.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def bnb_adapter(bnb_base, tmp_path_factory) -> Path:
    """An adapter trained (here: initialised) on the 4-bit base, as QLoRA on a *-bnb-4bit model makes one."""
    from transformers import AutoModelForCausalLM

    return _lora(AutoModelForCausalLM.from_pretrained(bnb_base), tmp_path_factory.mktemp("bnb-adapter"))


def _dequantized_base_and_deltas(bnb_base: Path, adapter: Path):
    """Layer 0's q_proj as the adapter saw it in training (the dequantized 4-bit weight) and its delta in fp32."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(bnb_base).dequantize()
    weight = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft_model = PeftModel.from_pretrained(model, adapter)
    delta = peft_model.base_model.model.model.layers[0].self_attn.q_proj.get_delta_weight("default").float()
    return weight, delta


def _q_proj(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).model.layers[0].self_attn.q_proj.weight.detach()


def test_a_prequantized_base_is_dequantized_before_the_merge(bnb_base, bnb_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert is_prequantized(bnb_base)
    out = merge_to_hf(str(bnb_base), str(bnb_adapter), tmp_path / "merged", "bf16")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and not is_prequantized(out)  # plain 16-bit: llama.cpp can convert it
    merged = _q_proj(out)
    assert merged.dtype == torch.bfloat16

    weight, delta = _dequantized_base_and_deltas(bnb_base, bnb_adapter)
    exact = weight.float() + delta
    assert torch.equal(merged, exact.to(torch.bfloat16))  # the trained weights plus the delta, rounded once

    # What merging into the 4-bit layers gives (PEFT re-quantizes the sum): far from the trained model.
    into_4bit = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bnb_base), bnb_adapter).merge_and_unload()
    requantized = into_4bit.dequantize().model.layers[0].self_attn.q_proj.weight.detach().float()
    ours, theirs = (merged.float() - exact).abs().mean().item(), (requantized - exact).abs().mean().item()
    assert theirs > 10 * ours, (ours, theirs)


def test_a_16bit_base_is_merged_in_its_dtype_and_rounded_once(tiny_model_dir, tmp_path):
    """A bf16 checkpoint merged to bf16 is held in bf16, yet W + delta is formed in float32 and rounded
    once; rounding the delta to bf16 first (a bf16 adapter) would differ in places."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(base)
    adapter = _lora(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter")
    assert merge.model_bytes(str(base)) == merge.model_bytes(str(tiny_model_dir)) // 2  # sized at 2 bytes, not 4
    merged = _q_proj(merge_to_hf(str(base), str(adapter), tmp_path / "merged", "bf16"))

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    weight, delta = layer.get_base_layer().weight.detach(), layer.get_delta_weight("default")
    assert weight.dtype == torch.bfloat16 and delta.dtype == torch.float32
    assert torch.equal(merged, (weight.float() + delta).to(torch.bfloat16))
    assert not torch.equal(merged, (weight.float() + delta.to(torch.bfloat16).float()).to(torch.bfloat16))


def test_a_prequantized_folder_exported_without_adapter_is_dequantized(bnb_base, tmp_path):
    from t2g.export.pipeline import export_model

    manifest = export_model(str(bnb_base), tmp_path / "export", quant=(), hf=True, parity_limit=0)
    assert manifest["hf_dir"] == "hf"
    assert not is_prequantized(tmp_path / "export" / "hf")  # not the 4-bit folder handed on as it is


class _FakeCuda:
    def __init__(self, free_bytes: int):
        self.free = free_bytes

    def is_available(self):
        return True

    def mem_get_info(self):
        return self.free, 2 * self.free


def test_the_merge_goes_to_the_gpu_when_the_model_fits(tiny_model_dir, monkeypatch):
    import torch

    need = merge.model_bytes(str(tiny_model_dir))
    assert need and need > 0
    assert merge_device(str(tiny_model_dir)) == ("cuda" if torch.cuda.is_available() and
                                                 need < merge.GPU_HEADROOM * torch.cuda.mem_get_info()[0] else "cpu")
    monkeypatch.setattr(torch, "cuda", _FakeCuda(free_bytes=10 * need))
    assert merge_device(str(tiny_model_dir)) == "cuda"
    monkeypatch.setattr(torch, "cuda", _FakeCuda(free_bytes=need))  # fits only without headroom: CPU
    assert merge_device(str(tiny_model_dir)) == "cpu"
    assert merge_device(str(tiny_model_dir), "cpu") == "cpu"


def test_a_cuda_merge_without_a_gpu_is_refused(tiny_model_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MergeError, match="no CUDA GPU is visible"):
        merge_device(str(tiny_model_dir), "cuda")
    with pytest.raises(MergeError, match="use auto, cuda or cpu"):
        merge_device(str(tiny_model_dir), "gpu")


def test_a_gpu_merge_loads_the_base_onto_the_gpu(monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = []
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda name, **kw: seen.append(kw))
    merge.load_base("some/model", "cuda")
    merge.load_base("some/model", "cpu")
    assert seen == [{"dtype": "auto", "device_map": {"": 0}}, {"dtype": "auto"}]
