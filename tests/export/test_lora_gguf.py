"""PEFT LoRA -> llama.cpp adapter GGUF (t2g.export.lora_gguf): llama.cpp with the adapter computes what
transformers + PEFT compute, on the tiny Qwen2 and on SmolLM2 (llama architecture: q/k rows permuted);
what an adapter cannot carry is refused by name.

Tolerances are for f32 weights and an f32 KV cache. Measured: tiny max |logit diff| ~5e-7; SmolLM2
(logits up to ~38) ~1e-4 in logits and ~3e-5 in log-probs, with or without the adapter; without the
q/k permutation the SmolLM2 logits are off by whole units.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from t2g.export.lora_gguf import BaseLayout, LoraGGUFError, base_gguf, check_config, read_adapter_folder, write_lora_gguf

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session")
def converter():
    from t2g.export.llama_cpp import LlamaCppNotFound, find_llama_cpp

    try:
        return find_llama_cpp()
    except LlamaCppNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny_base(tiny_model_dir, tmp_path_factory, converter):
    path = base_gguf(tiny_model_dir, tmp_path_factory.mktemp("tiny-base"), converter)
    return tiny_model_dir, path, BaseLayout.read(path, tiny_model_dir)


def peft_model(hf_dir, seed: int, scale: float = 0.05, **lora):
    """HF model + a LoRA with random non-zero B (PEFT starts B at zero, which would test nothing)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    config = LoraConfig(**{"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ALL_LINEAR, **lora})
    model = get_peft_model(model, config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def sequence(hf_dir) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "Extract: Tim Cook is the CEO of Apple, in Cupertino."}],
                                  add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    return ids + tok('{"entities": [{"text": "Tim Cook", "type": "person"}], "relations": []}',
                     add_special_tokens=False)["input_ids"]


def compare(model, gguf_path, layout, ids, tmp_path, permuted=None):
    """(max |logit diff|, max |log-prob diff| of the teacher-forced tokens, llama.cpp logits, base logits)."""
    import torch
    from llama_cpp import Llama
    from peft import get_peft_model_state_dict

    from t2g.infer.llama_batched import BatchedSampler

    if permuted is not None:
        layout = BaseLayout(layout.arch, layout.n_layers, layout.shapes, permuted)
    adapter = write_lora_gguf(get_peft_model_state_dict(model), model.peft_config["default"], tmp_path / "a.gguf", layout)
    llm = Llama(model_path=str(gguf_path), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False, type_k=0, type_v=0)
    sampler = BatchedSampler(llm)
    try:
        base = sampler.logits(ids)
        sampler.load_adapter(adapter)
        adapter.unlink()  # llama.cpp holds its own copy of the tensors
        ours = sampler.logits(ids)
    finally:
        sampler.close()
        llm.close()
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].numpy()

    def logp(z):
        z = z.astype(np.float64)
        return (z - np.logaddexp.reduce(z, axis=-1, keepdims=True))[np.arange(len(ids) - 1), ids[1:]]

    return float(np.abs(ours - ref).max()), float(np.abs(logp(ours) - logp(ref)).max()), ours, base


def test_adapter_gguf_metadata_and_tensors(tiny_base, tmp_path):
    import gguf
    from peft import get_peft_model_state_dict

    hf_dir, _, layout = tiny_base
    assert layout.arch == "qwen2" and layout.permuted == {}  # NEOX RoPE: Qwen2's q/k rows are as in HF
    model = peft_model(hf_dir, 0, target_modules=["q_proj", "down_proj"])
    path = write_lora_gguf(get_peft_model_state_dict(model), model.peft_config["default"], tmp_path / "x.gguf", layout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gguf"]  # written beside, renamed: nothing else
    reader = gguf.GGUFReader(str(path))

    def text(key):
        f = reader.fields[key]
        return bytes(f.parts[f.data[0]]).decode()

    assert (text("general.type"), text("general.architecture"), text("adapter.type")) == ("adapter", "qwen2", "lora")
    assert float(reader.fields["adapter.lora.alpha"].parts[-1][0]) == 16.0
    names = sorted(t.name for t in reader.tensors)
    assert names[:2] == ["blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"] and len(names) == 2 * 2 * 2
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    a = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight.lora_a")
    assert np.array_equal(np.asarray(a.data), q.lora_A["default"].weight.detach().numpy())
    # a saved adapter folder gives the same file
    model.save_pretrained(tmp_path / "adapter")
    again = write_lora_gguf(*read_adapter_folder(tmp_path / "adapter"), tmp_path / "y.gguf", layout)
    assert again.read_bytes() == path.read_bytes()


def test_tiny_adapter_logits_equal_peft_and_zero_b_equals_the_base(tiny_base, tmp_path):
    pytest.importorskip("llama_cpp")
    hf_dir, gguf_path, layout = tiny_base
    ids = sequence(hf_dir)
    model = peft_model(hf_dir, 1, scale=0.2)
    d_logit, d_logp, ours, base = compare(model, gguf_path, layout, ids, tmp_path)
    assert np.abs(ours - base).max() > 0.1  # the adapter changes the model...
    assert d_logit < 1e-4 and d_logp < 1e-4, (d_logit, d_logp)  # ...exactly as PEFT does
    zero = peft_model(hf_dir, 1, scale=0.0)
    d_logit, _, ours, base = compare(zero, gguf_path, layout, ids, tmp_path)
    assert np.array_equal(ours, base) and d_logit < 1e-4


@pytest.mark.slow
def test_smollm2_adapter_needs_the_q_k_permutation(smollm2_hf_dir, tmp_path_factory, converter, tmp_path):
    pytest.importorskip("llama_cpp")
    from t2g.files import cache_dir

    # converted once (~30 s) into the cache the rollout tests share, keyed on the HF folder's content
    gguf_path = base_gguf(smollm2_hf_dir, cache_dir() / "llama-rollout-tests", converter)
    layout = BaseLayout.read(gguf_path, smollm2_hf_dir)
    assert layout.arch == "llama" and layout.permuted == {"attn_q": 9, "attn_k": 3}
    assert BaseLayout.read(gguf_path).permuted == layout.permuted  # without the HF folder: by architecture
    ids = sequence(smollm2_hf_dir)
    model = peft_model(smollm2_hf_dir, 2, scale=0.02)
    d_logit, d_logp, ours, base = compare(model, gguf_path, layout, ids, tmp_path)
    assert np.abs(ours - base).max() > 1.0
    assert d_logit < 2e-3 and d_logp < 5e-4, (d_logit, d_logp)
    wrong, _, _, _ = compare(model, gguf_path, layout, ids, tmp_path, permuted={})
    print(f"smollm2 adapter: max |logit diff| {d_logit:.2e}, |log-prob diff| {d_logp:.2e}; unpermuted q/k {wrong:.2f}")
    assert wrong > 50 * d_logit, (wrong, d_logit)  # the permutation is what makes q/k right
    zero = peft_model(smollm2_hf_dir, 2, scale=0.0, target_modules=["q_proj", "k_proj"])
    d_logit, _, ours, base = compare(zero, gguf_path, layout, ids, tmp_path)
    assert np.array_equal(ours, base) and d_logit < 2e-3


@pytest.mark.parametrize("lora,match", [
    ({"modules_to_save": ["lm_head"]}, r"modules_to_save \['lm_head'\]"),
    ({"use_dora": True}, "use_dora"),
    ({"use_rslora": True}, "use_rslora"),
    ({"bias": "all"}, "bias='all'"),
    ({"alpha_pattern": {"q_proj": 4}}, "alpha_pattern"),
    ({"init_lora_weights": "pissa"}, "changes the base weights"),
])
def test_configs_llama_cpp_cannot_take_are_refused_by_name(lora, match):
    from peft import LoraConfig

    with pytest.raises(LoraGGUFError, match=match):
        check_config(LoraConfig(r=4, target_modules=["q_proj"], **lora))
    with pytest.raises(LoraGGUFError, match=match):  # an adapter_config.json says the same
        check_config(json.loads(json.dumps(LoraConfig(r=4, target_modules=["q_proj"], **lora).to_dict(), default=str)))


def test_modules_without_a_base_tensor_and_bad_tensors_are_refused(tiny_base, tmp_path):
    import torch
    from peft import get_peft_model_state_dict

    hf_dir, _, layout = tiny_base
    # the tiny model ties lm_head to the embeddings: the GGUF has no output tensor to put a LoRA on
    model = peft_model(hf_dir, 0, target_modules=["q_proj", "lm_head"])
    state, config = get_peft_model_state_dict(model, save_embedding_layers=False), model.peft_config["default"]
    for with_embeddings in (state, get_peft_model_state_dict(model)):  # PEFT adds the tied matrix by default
        with pytest.raises(LoraGGUFError, match=r"lm_head: llama.cpp's qwen2 model has no tensor"):
            write_lora_gguf(with_embeddings, config, tmp_path / "a.gguf", layout)
    q_only = {k: v for k, v in state.items() if "lm_head" not in k}
    with pytest.raises(LoraGGUFError, match=r"embed_tokens.weight: not a LoRA A/B matrix"):
        write_lora_gguf({**q_only, "base_model.model.model.embed_tokens.weight": torch.zeros(3)}, config,
                        tmp_path / "a.gguf", layout)
    emb = peft_model(hf_dir, 0, target_modules=["embed_tokens"])
    with pytest.raises(LoraGGUFError, match=r"embed_tokens\.lora_embedding_A.*not a LoRA A/B matrix"):
        write_lora_gguf(get_peft_model_state_dict(emb), emb.peft_config["default"], tmp_path / "a.gguf", layout)
    key = next(k for k in q_only if "lora_A" in k)
    with pytest.raises(LoraGGUFError, match=r"q_proj.lora_A: dtype torch.int8 is not a float"):
        write_lora_gguf({**q_only, key: q_only[key].to(torch.int8)}, config, tmp_path / "a.gguf", layout)
    with pytest.raises(LoraGGUFError, match=r"do not fit the base's blk.0.attn_q.weight"):
        write_lora_gguf({**q_only, key: torch.zeros(8, 32)}, config, tmp_path / "a.gguf", layout)
    with pytest.raises(LoraGGUFError, match="needs both lora_A and lora_B"):
        write_lora_gguf({key: q_only[key]}, config, tmp_path / "a.gguf", layout)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_a_base_gguf_from_another_model_is_refused(tiny_base, tmp_path):
    from t2g.models.offline import build_tiny_model

    _, gguf_path, _ = tiny_base
    other = build_tiny_model(tmp_path / "other", seed=1)  # same shapes, other weights
    with pytest.raises(LoraGGUFError, match=r"neither the HF folder's tensor nor its RoPE row permutation"):
        BaseLayout.read(gguf_path, other)


def test_a_base_gguf_of_a_type_adapters_do_not_apply_to_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(LoraGGUFError, match=r"a base GGUF of type 'q4_0': adapters apply to f32, bf16, f16 bases"):
        base_gguf(tiny_model_dir, tmp_path, gguf_type="q4_0")
    assert list(tmp_path.iterdir()) == []  # refused before any conversion
