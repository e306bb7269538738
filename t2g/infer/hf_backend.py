"""The hf runtime: transformers (+ peft for adapters), batched greedy generation with left padding."""

from __future__ import annotations

from typing import Any, Sequence

from t2g.infer.backends import NO_CONSTRAINED_HF, BackendError, Generation, Request
from t2g.models.dtype import torch_dtype
from t2g.models.tokenizer import load_tokenizer


class HFBackend:
    """transformers on a local folder or hub name; an adapter is loaded on its base and merged."""

    name = "hf"

    def __init__(self, path: str, *, adapter: str | None = None, gguf_file: str | None = None,
                 device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False, batch_size: int = 8):
        import torch
        from transformers import AutoModelForCausalLM

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        extra: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype, self.device),
                                                         trust_remote_code=trust_remote_code, **extra)
            self.tokenizer = load_tokenizer(path, adapter, trust_remote_code=trust_remote_code, **extra)
        except OSError as exc:
            raise BackendError(f"cannot load HF model {path!r}: {exc}. Give a local folder with config.json, "
                               "a .gguf file, a run directory, or a hub name already in the HF cache") from None
        if adapter:
            from peft import PeftModel

            # Merged once here: generation is then as fast as with a merged export.
            model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
        self.model = model.to(self.device).eval()
        self.tokenizer.padding_side = "left"  # decoder-only batching: prompts must end at the same column
        self.batch_size = batch_size
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, batch: Sequence[list[dict[str, str]]]) -> list[str]:
        return [self.tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in batch]

    def generate(self, requests: Sequence[Request], *, max_new_tokens: int, constrained: bool = False,
                 reasoning: bool = False) -> list[Generation]:
        if constrained:
            raise BackendError(NO_CONSTRAINED_HF)
        out: list[Generation] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[i:i + self.batch_size], max_new_tokens, reasoning))
        return out

    def _generate_batch(self, requests: Sequence[Request], max_new_tokens: int, reasoning: bool) -> list[Generation]:
        import torch

        prompts = self._render([r.messages(reasoning) for r in requests])
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        config = self.model.generation_config
        with torch.inference_mode():
            ids = self.model.generate(
                **enc, do_sample=False, temperature=None, top_p=None, top_k=None, max_new_tokens=max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=config.eos_token_id or self.tokenizer.eos_token_id,
            )
        new = ids[:, enc["input_ids"].shape[1]:]
        return [Generation(text) for text in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
