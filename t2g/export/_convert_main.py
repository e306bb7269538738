"""Run llama.cpp's convert_hf_to_gguf.py with one narrow fix; executed as a script in a subprocess.

    python _convert_main.py LLAMA_CPP_ROOT PRETOKENIZER -- <convert_hf_to_gguf.py arguments>

The converter names a tokenizer's pre-tokenizer by hashing the token ids of a probe string and
refuses any hash it does not list, which includes every freshly trained tokenizer (our tiny test
model). When that happens, and only then, this wrapper answers with a llama.cpp pre-tokenizer name:
- PRETOKENIZER=auto: only if the tokenizer's pre-tokenizer is *structurally identical* to one that
  llama.cpp implements (the same split regex followed by byte-level mapping); otherwise the
  converter's own error stands.
- PRETOKENIZER=<name>: the user asserts the name (the `--pretokenizer` flag).
- PRETOKENIZER=off: never; the converter's error stands.
It prints `T2G_PRETOKENIZER_FALLBACK=<name>` so the exporter can record what was assumed. It runs
in its own process because the converter edits sys.path and global logging, and so that killing it
can never leave a complete-looking output (the parent renames the output only after success).
"""

from __future__ import annotations

import json
import os
import sys

# Split regexes (as in tokenizer.json) of pre-tokenizers llama.cpp implements, by its name for them.
KNOWN_SPLIT_REGEXES = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "qwen2",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": "llama-bpe",
}


def structural_pretokenizer(tokenizer) -> str | None:
    """The llama.cpp name of `tokenizer`'s pre-tokenizer when it is exactly Split(regex) + ByteLevel."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return None
    split, byte_level = steps
    if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert"):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex") or byte_level.get("add_prefix_space"):
        return None
    return KNOWN_SPLIT_REGEXES.get((split.get("pattern") or {}).get("Regex"))


def _patch(text_model_cls, mode: str) -> None:
    original = text_model_cls.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            name = None if mode == "off" else structural_pretokenizer(tokenizer) if mode == "auto" else mode
            if name is None:
                raise
            print(f"T2G_PRETOKENIZER_FALLBACK={name}", flush=True)
            return name

    text_model_cls.get_vocab_base_pre = get_vocab_base_pre


def main(argv: list[str]) -> None:
    root, mode, sep, *converter_args = argv
    assert sep == "--", "usage: _convert_main.py ROOT PRETOKENIZER -- ARGS"
    # The converter's own gguf-py first, as the converter itself does: it must match the converter.
    if "NO_LOCAL_GGUF" not in os.environ:
        sys.path.insert(0, os.path.join(root, "gguf-py"))
    sys.path.insert(0, root)
    sys.argv = [os.path.join(root, "convert_hf_to_gguf.py"), *converter_args]
    import convert_hf_to_gguf  # noqa: E402  (path set just above)

    if os.path.isdir(os.path.join(root, "conversion")):
        from conversion.base import TextModel  # llama.cpp >= late 2026 split the converter into a package
    else:
        TextModel = convert_hf_to_gguf.TextModel  # older single-file converters (unsloth's checkouts)
    _patch(TextModel, mode)
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
