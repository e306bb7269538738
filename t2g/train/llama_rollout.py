"""GRPO's completions sampled by llama.cpp from the current policy: a TRL `rollout_func`.

    rollout = LlamaCppRollout(base_model_dir, run_dir / "grpo" / "rollout", n_threads=2)
    trainer = GRPOTrainer(..., rollout_func=rollout)   # use_vllm=False
    ...
    rollout.close()

On a CPU, `model.generate` spends most of a GRPO step decoding one token at a time through PyTorch;
llama.cpp decodes the whole generation batch together several times faster (`BatchedSampler`). It
samples the policy being trained, not a stale copy:

- the base weights are the trainer's own base folder converted once to a GGUF (cached in the work
  folder under a key of that folder) of the dtype the trainer holds them in (`base_type`: f32 for an
  fp32 model, bf16 for a bf16 one), so llama.cpp computes on the trainer's weights, not on a rounding
  or a widening of them; the LoRA is not merged;
- whenever `trainer.state.global_step` moved (and before the first rollout) the trainer's current LoRA
  is written as a llama.cpp adapter GGUF (`t2g.export.lora_gguf`), loaded onto the sampling context,
  and the file deleted: nothing is left in the work folder but the base GGUF;
- the prompt ids are the trainer's own chat templating (`trainer._tokenize_prompts`), and a one-time
  check proves llama.cpp's vocabulary is the trainer tokenizer's (the same texts give the same ids);
- the sampling settings are the trainer's (temperature, top_k, top_p, min_p, max_completion_length,
  stop at any of `trainer.eos_token_ids`), and the seed follows (seed, global_step, process, call), so a
  resumed run samples what the uninterrupted one did.

The per-token log-probs returned are llama.cpp's, under the full softmax of logits / temperature, as
TRL defines them; tests measure them against the trainer's own recomputation.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

from t2g.export.lora_gguf import BaseLayout, LoraGGUFError, base_gguf, write_lora_gguf
from t2g.infer.llama_batched import BatchedSampler
from t2g.infer.llama_cpp_backend import extra_buffer_types

LLAMA_MISSING = "--rollout=llama.cpp needs llama-cpp-python: pip install 't2g[llama]'"
# Fixed texts whose tokenization must agree besides the prompts: byte-level corner cases, JSON, digits.
PROBE_TEXTS = ("Tim Cook is the CEO of Apple.", '{"entities": [{"text": "Zürich", "type": "location"}], "relations": []}',
               "  two  spaces, tabs\tand\nnew lines\n\n", "12345 3.14 -7", "naïve café – “quotes” 日本語 🙂")
# generate() settings TRL passes (non-vLLM path) that the sampler takes or that change nothing here.
HANDLED = {"max_new_tokens", "do_sample", "pad_token_id", "bos_token_id", "eos_token_id", "temperature", "top_p",
           "top_k", "min_p", "repetition_penalty", "cache_implementation"}
# The KV cache's ggml type. llama.cpp's default f16 rounds every cached key and value: on SmolLM2 that
# put its log-probs up to 1e-2 from the f32 trainer's, f32 keeps them within ~3e-5 (twice the memory).
_KV_TYPES = {"f32": 0, "f16": 1}
_ADAPTER_FILE = re.compile(r"adapter-(\d+)-")


class RolloutError(RuntimeError):
    """The llama.cpp rollout cannot sample this trainer's policy; the message says why."""


class LlamaCppRollout:
    """TRL's `rollout_func`: `__call__(prompts, trainer) -> {"prompt_ids", "completion_ids", "logprobs"}`."""

    def __init__(self, base_model: str | os.PathLike, work_dir: str | os.PathLike, *, n_threads: int = 1,
                 seed: int | None = None, llama_cpp: Any = None, n_batch: int = 512, kv_type: str = "f32",
                 base_type: str = "f32"):
        self._adapter_path: Path | None = None
        if kv_type not in _KV_TYPES:
            raise RolloutError(f"kv_type={kv_type!r}: choose from {', '.join(_KV_TYPES)}")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise RolloutError(LLAMA_MISSING) from None
        self.base_dir = _local_folder(base_model)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_adapters(self.work_dir)
        self.seed = seed
        try:
            self.base_gguf = base_gguf(self.base_dir, self.work_dir, llama_cpp, base_type)
            self.layout = BaseLayout.read(self.base_gguf, self.base_dir)
        except LoraGGUFError as exc:
            raise RolloutError(f"--rollout=llama.cpp: {exc}") from None
        with extra_buffer_types(False):  # f32 and bf16 weights are not repacked anyway; see extra_buffer_types
            self.llm = Llama(model_path=str(self.base_gguf), n_ctx=n_batch, n_batch=n_batch, n_threads=n_threads,
                             n_threads_batch=n_threads, n_gpu_layers=0, seed=0, verbose=False,
                             type_k=_KV_TYPES[kv_type], type_v=_KV_TYPES[kv_type])
        self.sampler = BatchedSampler(self.llm)
        self.synced_step: int | None = None
        self.tokenizer_checked = False
        self._calls: tuple[int, int] = (-1, 0)  # (global_step, calls at that step): one seed per call
        self.timings: dict[str, list[float]] = {"sync": [], "sample": []}

    # --- TRL's hook ---------------------------------------------------------------------------------

    def __call__(self, prompts: list, trainer: Any) -> dict[str, Any]:
        self.maybe_sync(trainer)
        group = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
        prompt_ids = self.prompt_ids(prompts, trainer, group)
        completion_ids, logprobs = self.sample(prompt_ids[::group], group, **self.settings(trainer))
        # One value a step, summed over its calls (dynamic sampling's refill passes call again within a
        # step): TRL averages a step's entries, which would show one pass's time.
        _log(trainer, "rollout/sample_seconds", self.timings["sample"][-1], add_to_last=self._calls[1] > 0)
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs}

    def maybe_sync(self, trainer: Any) -> None:
        """Load the trainer's current LoRA into llama.cpp when the optimizer stepped since the last sync."""
        step = int(trainer.state.global_step)
        if step != self.synced_step:
            model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
            self.sync(model, step)
            _log(trainer, "rollout/sync_seconds", self.timings["sync"][-1])

    def sync(self, model: Any, step: int) -> None:
        """Write `model`'s active LoRA as an adapter GGUF, set it on the sampler, delete the file."""
        start = time.perf_counter()
        if not hasattr(model, "peft_config"):
            raise RolloutError("--rollout=llama.cpp samples base + LoRA: the trained model has no PEFT LoRA adapter")
        from peft import get_peft_model_state_dict

        name = model.active_adapter if isinstance(model.active_adapter, str) else model.active_adapters[0]
        # not the embedding matrix PEFT adds when lm_head is a target: untrained, and refused anyway
        state = get_peft_model_state_dict(model, adapter_name=name, save_embedding_layers=False)
        self._adapter_path = self.work_dir / f".adapter-{os.getpid()}-{id(self):x}-{step}.gguf"
        try:
            write_lora_gguf(state, model.peft_config[name], self._adapter_path, self.layout)
            self.sampler.load_adapter(self._adapter_path)
        except LoraGGUFError as exc:
            raise RolloutError(f"--rollout=llama.cpp cannot carry this LoRA: {exc}") from None
        except ValueError as exc:  # llama.cpp refused a file we wrote: a bug here, or a base/adapter mismatch
            raise RolloutError(f"--rollout=llama.cpp: {exc}") from None
        finally:
            self._remove_adapter_file()
        self.synced_step = step
        self.timings["sync"].append(time.perf_counter() - start)

    def _remove_adapter_file(self) -> None:
        if self._adapter_path is not None:
            self._adapter_path.unlink(missing_ok=True)
            self._adapter_path = None

    def prompt_ids(self, prompts: list, trainer: Any, group: int = 1) -> list[list[int]]:
        """Each row's prompt ids by the trainer's own templating; rows come in runs of `group` equal prompts."""
        if group < 1 or len(prompts) % group:
            raise RolloutError(f"{len(prompts)} prompts do not form groups of {group} (num_generations)")
        if hasattr(trainer, "_tokenize_prompts"):
            ids, images, fields = trainer._tokenize_prompts(prompts)
            if images is not None or fields:
                raise RolloutError("--rollout=llama.cpp samples text prompts only; these carry images or other inputs")
        else:
            ids = _template(trainer, prompts, tokenize=True)
        ids = [list(map(int, p)) for p in ids]
        for i, p in enumerate(ids):
            if p != ids[i - i % group]:
                raise RolloutError(f"prompt {i} differs from the first of its group of {group}: TRL repeats each "
                                   "prompt num_generations times in a row, and the rollout relies on it")
        if not self.tokenizer_checked:
            unique = prompts[::group]
            texts = list(_template(trainer, unique, tokenize=False)) if _chat(unique) else list(unique)
            self.check_tokenizer(trainer.processing_class, texts, ids[::group], trainer_eos=getattr(trainer, "eos_token_ids", ()))
        return ids

    def check_tokenizer(self, tokenizer: Any, texts: Sequence[str] = (), ids: Sequence[Sequence[int]] | None = None,
                        trainer_eos: Sequence[int] = ()) -> None:
        """Fail unless llama.cpp tokenizes like the trainer: `texts` (given their trainer ids `ids`, else the
        tokenizer's), the fixed probe texts and the end tokens; and the vocabulary fits llama.cpp's."""
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
        n_vocab = self.llm.n_vocab()
        if len(tokenizer) > n_vocab:
            raise RolloutError(f"the trainer's tokenizer has {len(tokenizer)} tokens, the base GGUF {n_vocab}: tokens "
                               "were added after the base was converted, and llama.cpp cannot sample them")
        ends = [int(e) for e in trainer_eos if e is not None]
        pairs = list(zip(texts, ids)) if ids is not None else [(t, None) for t in texts]
        pairs += [(t, None) for t in PROBE_TEXTS]
        pairs += [(tokenizer.decode([e], skip_special_tokens=False), [e]) for e in ends]
        for text, expected in pairs:
            ours = list(expected) if expected is not None else tokenizer(text, add_special_tokens=False)["input_ids"]
            theirs = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if ours != theirs:
                k = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
                raise RolloutError(
                    f"llama.cpp's tokenizer (of {self.base_gguf.name}, from {self.base_dir}) differs from the trainer's "
                    f"on {text[:80]!r}{'...' if len(text) > 80 else ''}: from token {k} the trainer has {ours[k:k + 5]}, "
                    f"llama.cpp {theirs[k:k + 5]}; is the trainer's tokenizer the base model's?")
        self.tokenizer_checked = True

    def settings(self, trainer: Any) -> dict[str, Any]:
        """`sample()`'s keyword arguments for the trainer's generation settings, with this call's seed."""
        kwargs = dict(getattr(trainer, "generation_kwargs", None) or {})
        args = trainer.args
        if not kwargs:  # TRL keeps generation_kwargs on its own-generate path only; the arguments say the same
            kwargs = {"max_new_tokens": args.max_completion_length, "temperature": args.temperature, "top_p": args.top_p,
                      "top_k": args.top_k, "min_p": args.min_p, "repetition_penalty": args.repetition_penalty,
                      **(args.generation_kwargs or {})}
        unknown = sorted(k for k, v in kwargs.items() if k not in HANDLED and v is not None)
        if unknown:
            raise RolloutError(f"--rollout=llama.cpp does not implement the generation settings {unknown}")
        if kwargs.get("repetition_penalty") not in (None, 1.0):
            raise RolloutError(f"--rollout=llama.cpp samples without a repetition penalty (TRL's log-probs have none "
                               f"either); repetition_penalty={kwargs['repetition_penalty']}")
        top_k = int(kwargs.get("top_k") or 0)
        if kwargs.get("do_sample") is False:
            top_k = 1  # greedy: the argmax, with TRL's log-probs still at the temperature
        stops = getattr(trainer, "eos_token_ids", None) or kwargs.get("eos_token_id") or []
        step = int(trainer.state.global_step)
        calls = self._calls[1] + 1 if self._calls[0] == step else 0
        self._calls = (step, calls)
        process = getattr(getattr(trainer, "accelerator", None), "process_index", 0)
        base_seed = self.seed if self.seed is not None else int(args.seed)
        return dict(max_new_tokens=int(kwargs["max_new_tokens"]), temperature=float(kwargs.get("temperature") or 1.0),
                    top_k=top_k, top_p=float(kwargs.get("top_p") or 1.0), min_p=kwargs.get("min_p") or None,
                    stop_ids=[stops] if isinstance(stops, int) else list(stops), seed=(base_seed, step, process, calls))

    def sample(self, unique_prompt_ids: Sequence[Sequence[int]], n: int, *, max_new_tokens: int, temperature: float = 1.0,
               top_k: int = 0, top_p: float = 1.0, min_p: float | None = None, stop_ids: Sequence[int] = (),
               seed: Any = 0) -> tuple[list[list[int]], list[list[float]]]:
        """n completions of each prompt with the adapter synced last: (completion ids, log-probs) per row,
        prompt 0's n rows first."""
        start = time.perf_counter()
        rows = self.sampler.sample(unique_prompt_ids, n, max_new_tokens=max_new_tokens, temperature=temperature,
                                   top_k=top_k, top_p=top_p, min_p=min_p, stop_ids=stop_ids, seed=seed)
        self.timings["sample"].append(time.perf_counter() - start)
        return [ids for ids, _ in rows], [lps for _, lps in rows]

    def close(self) -> None:
        """Free llama.cpp's context, adapter and model; only the cached base GGUF stays in the work folder."""
        self._remove_adapter_file()
        sampler, llm = self.__dict__.pop("sampler", None), self.__dict__.pop("llm", None)
        if sampler is not None:
            sampler.close()
        if llm is not None:
            llm.close()

    def __enter__(self) -> "LlamaCppRollout":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def base_type_of(model: Any) -> str:
    """The GGUF type holding `model`'s frozen base weights exactly as the trainer holds them (f32, bf16, f16).

    Under `--dtype=bf16` (what scripts/bench_quality.py trains with on CPUs with native bf16) the base is
    bf16; sampling from an f32 GGUF there would not match the trainer any better (its log-probs differ from
    the bf16 trainer's by as much as a bf16 GGUF's do, `scripts/bench_rollout_levers.py --parts sampling`)
    and decodes about 1.5x slower."""
    from t2g.models.dtype import GGUF_FLOAT_TYPES, torch_dtype

    names = {torch_dtype(name): gguf for name, gguf in GGUF_FLOAT_TYPES.items()}
    dtypes = {p.dtype for n, p in model.named_parameters() if "lora_" not in n and p.dtype.is_floating_point}
    if len(dtypes) != 1 or next(iter(dtypes)) not in names:
        found = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes)) or "none"
        raise RolloutError(f"--rollout=llama.cpp samples from a GGUF copy of the base weights, so they must all have "
                           f"one dtype, float32, bfloat16 or float16; this model's are {found} (use --rollout=trainer)")
    return names[next(iter(dtypes))]


def _local_folder(name: str | os.PathLike) -> Path:
    """An HF model folder for a resolved model name: the folder itself, or a hub name's local snapshot
    (never downloaded here: the trainer has loaded it already)."""
    path = Path(name)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name), local_files_only=True))
    except Exception as exc:
        raise RolloutError(f"--rollout=llama.cpp converts the base model's HF folder, and {name} is neither a folder "
                           f"nor in the local hub cache ({exc})") from None


def _remove_stale_adapters(work_dir: Path) -> None:
    """Adapter files left by a killed process (their pid is gone); a live process's are its own."""
    for path in work_dir.glob(".*adapter-*"):
        match = _ADAPTER_FILE.search(path.name)
        if match is None:
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass


def _chat(prompts: Sequence[Any]) -> bool:
    return bool(prompts) and isinstance(prompts[0], list)


def _template(trainer: Any, prompts: Sequence[Any], tokenize: bool) -> list:
    """The prompts through the trainer's chat template, with the arguments TRL's `_tokenize_prompts` passes."""
    tok = trainer.processing_class
    if not _chat(prompts):
        return tok(text=list(prompts))["input_ids"] if tokenize else list(prompts)
    out = tok.apply_chat_template(conversation=list(prompts), tools=getattr(trainer, "tools", None) or None,
                                  chat_template=getattr(trainer, "chat_template", None), add_generation_prompt=True,
                                  tokenize=tokenize, **({"return_dict": True} if tokenize else {}),
                                  **(getattr(trainer, "chat_template_kwargs", None) or {}))
    return out["input_ids"] if tokenize else out


def _log(trainer: Any, name: str, value: float, add_to_last: bool = False) -> None:
    metrics = getattr(trainer, "_metrics", None)
    if metrics is not None:
        values = metrics["train" if trainer.model.training else "eval"][name]
        if add_to_last and values:
            values[-1] += value
        else:
            values.append(value)
