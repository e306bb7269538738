"""Where llama.cpp's GRPO sampling time goes, and what three untried levers could give (issue 17).

    python scripts/bench_rollout_levers.py                    # all three parts, both cores (~10 min)
    python scripts/bench_rollout_levers.py --parts pass_cost,acceptance

A GRPO step on CPU spends most of its time in llama.cpp's batched decoding (`t2g.infer.llama_batched`,
docs/results.md). Before building a lever into the rollout, this measures whether it can pay here:

    pass_cost    one `llama_decode` pass over 16 rows (a step's 4 prompts x 4 completions) carrying k tokens
                 each (k = 1, 2, 4, 8), on each base type with a LoRA set: milliseconds per token. Speculative
                 decoding pays only where k tokens a row cost much less than k passes.
    acceptance   prompt-lookup drafts (the last n tokens found earlier in prompt + answer, the k after them
                 proposed) checked token by token against CoNLL04 train targets: tokens one verify pass yields
                 and drafts it carries. Exact match, as greedy decoding would accept; sampling accepts fewer.
                 With pass_cost, the gain a pass of (1 + drafts) tokens a row would give over plain decoding.
    sampling     `BatchedSampler.sample` of 4 CoNLL04 prompts x 4 (temperature 0.7, 256 tokens) from each base
                 type (f32, bf16, q8_0) with the same LoRA: completion tokens a second and the ratio to f32,
                 and the sampled log-probs against transformers' recomputation in fp32 and in bf16 autocast
                 (what the trainer computes on CPUs with native bf16). A lower-precision base would need TRL's
                 importance-sampling correction, which costs an extra forward pass a step.

The LoRA is SmolLM2's with random A and B (seeded): the base dominates every cost measured here, and a
random adapter makes the completions long, which is the worst case for the sampler. Results go to
<out>/levers.json; the converted GGUFs are kept in --out and reused.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from t2g.flags import FlagError, flag, run  # noqa: E402  (light)

PARTS = ("pass_cost", "acceptance", "sampling")
TYPES = ("f32", "bf16", "q8_0")
DATA = REPO.parent / "shared" / "data" / "conll04"
ENTITY_TYPES = ["person", "organization", "location", "other"]
RELATION_TYPES = ["work for", "kill", "organization based in", "live in", "located in"]
ROWS, GROUP, TEMPERATURE, MAX_NEW = 16, 4, 0.7, 256


@dataclass
class Flags:
    """Where llama.cpp's GRPO sampling time goes, and what three untried levers could give (issue 17)."""

    parts: tuple[str, ...] = flag(PARTS, "parts to run, comma-separated", choices=PARTS)
    types: tuple[str, ...] = flag(TYPES, "base GGUF types for pass_cost and sampling", choices=TYPES)
    threads: int = flag(2, "llama.cpp and torch threads")
    out: str = flag("/tmp/t2g-rollout-levers", "where the GGUFs and levers.json are kept")


def lora_model(hf_dir: Path, seed: int = 10):
    """SmolLM2 with a LoRA r=16 on every linear layer, A and B random (B small): an adapter that moves the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if "lora_B" in name else 0.01))
    return model.eval()


def prompts_and_targets(tok, n: int) -> tuple[list[list[int]], list[list[int]]]:
    from t2g.data.load import load_examples
    from t2g.task.prompts import build_messages, render_target

    examples = load_examples(str(DATA / "train.json"))[:n]
    prompts = [tok.apply_chat_template(build_messages(e.text, e.entity_types, e.relation_types), add_generation_prompt=True,
                                       tokenize=True, return_dict=True)["input_ids"] for e in examples]
    targets = [tok(render_target(e.graph), add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for e in examples]
    return prompts, targets


class Bases:
    """The base GGUF of each type, converted once into --out, and the LoRA as an adapter GGUF for each."""

    def __init__(self, hf_dir: Path, out: Path, model):
        from peft import get_peft_model_state_dict

        self.hf_dir, self.out, self.model = hf_dir, out, model
        self.state = get_peft_model_state_dict(model)

    def paths(self, gguf_type: str) -> tuple[Path, Path]:
        from t2g.export.gguf import convert_hf_to_gguf
        from t2g.export.llama_cpp import find_llama_cpp
        from t2g.export.lora_gguf import BaseLayout, write_lora_gguf

        base = self.out / f"base.{gguf_type}.gguf"
        if not base.is_file():
            convert_hf_to_gguf(self.hf_dir, base, gguf_type, find_llama_cpp())
        adapter = self.out / f"adapter.{gguf_type}.gguf"
        write_lora_gguf(self.state, self.model.peft_config["default"], adapter, BaseLayout.read(base, self.hf_dir))
        return base, adapter

    def sampler(self, gguf_type: str, threads: int):
        from llama_cpp import Llama

        from t2g.infer.llama_batched import BatchedSampler

        base, adapter = self.paths(gguf_type)
        # an f32 KV cache, as the rollout uses (t2g.train.llama_rollout: f16 rounds the cached keys and values)
        llm = Llama(model_path=str(base), n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                    n_gpu_layers=0, seed=0, verbose=False, type_k=0, type_v=0)
        sampler = BatchedSampler(llm)
        sampler.load_adapter(adapter)
        return llm, sampler


def pass_cost(bases: Bases, gguf_type: str, threads: int, prompt_len: int = 250, passes: int = 12) -> dict[int, float]:
    """k -> milliseconds per token of a pass over ROWS rows carrying k tokens each (only the last token's logits)."""
    import numpy as np

    llm, s = bases.sampler(gguf_type, threads)
    try:
        s._ensure(ROWS, prompt_len + passes * 8 + 8)
        prompt = list(range(100, 100 + prompt_len))
        out = {}
        for k in (1, 2, 4, 8):
            s._lib.llama_memory_clear(s._ctx.memory, False)
            s._decode([(0, p, t, False) for p, t in enumerate(prompt)], np.array)
            for row in range(1, ROWS):
                s._lib.llama_memory_seq_cp(s._ctx.memory, 0, row, -1, -1)
            pos = prompt_len
            start = time.perf_counter()
            for _ in range(passes):
                s._decode([(r, pos + j, 1000 + r + j, j == k - 1) for r in range(ROWS) for j in range(k)], lambda logits: None)
                pos += k
            out[k] = (time.perf_counter() - start) / passes / (ROWS * k) * 1000
    finally:
        s.close()
        llm.close()
    return out


def acceptance(prompts: list[list[int]], targets: list[list[int]]) -> list[dict]:
    """Per (n, k): target tokens a verify pass yields, drafts it carries, by exact match against the targets."""
    def draft(seq: list[int], n: int, k: int) -> list[int]:
        key = seq[-n:]
        for i in range(len(seq) - n - 1, -1, -1):  # the most recent earlier occurrence
            if seq[i:i + n] == key:
                return seq[i + n:i + n + k]
        return []

    rows = []
    for n, k in ((1, 3), (2, 3), (2, 4), (2, 6), (3, 4)):
        passes = drafted = tokens = 0
        for prompt, target in zip(prompts, targets):
            seq, j = list(prompt), 0
            while j < len(target):
                d = draft(seq, n, k)
                a = 0
                while a < len(d) and j + a < len(target) and d[a] == target[j + a]:
                    a += 1
                got = min(a + 1, len(target) - j)  # the accepted drafts and the verify pass's own token
                seq += target[j:j + got]
                j += got
                passes, drafted, tokens = passes + 1, drafted + len(d), tokens + got
        rows.append({"n": n, "k": k, "tokens_per_pass": tokens / passes, "drafts_per_pass": drafted / passes})
    return rows


def speculative_gain(row: dict, cost: dict[int, float]) -> float:
    """Tokens a verify pass yields over its cost in one-token passes, the pass's cost interpolated from pass_cost."""
    import numpy as np

    ks = sorted(cost)
    carried = 1 + row["drafts_per_pass"]
    per_token = float(np.interp(carried, ks, [cost[k] for k in ks]))
    return row["tokens_per_pass"] / (carried * per_token / cost[1])


def sampling(bases: Bases, gguf_type: str, threads: int, prompts: list[list[int]], eos: int) -> dict:
    import numpy as np
    import torch

    llm, s = bases.sampler(gguf_type, threads)
    try:
        times = []
        for rep in range(2):  # the first warms the caches; both are kept
            start = time.perf_counter()
            rows = s.sample(prompts, GROUP, max_new_tokens=MAX_NEW, temperature=TEMPERATURE, stop_ids=[eos], seed=rep)
            times.append(time.perf_counter() - start)
    finally:
        s.close()
        llm.close()
    tokens = sum(len(ids) for ids, _ in rows)
    diffs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for i, (ids, logps) in enumerate(rows[:2 * GROUP]):  # the first two prompts' completions
        x = torch.tensor([prompts[i // GROUP] + ids])
        for name, autocast in (("fp32", False), ("bf16", True)):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                logits = bases.model(x, logits_to_keep=len(ids) + 1).logits[0, :-1].float() / TEMPERATURE
            ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids)[:, None])[:, 0].numpy()
            diffs[name] += (np.array(logps) - ref).tolist()
    out = {"seconds": times, "tokens": tokens, "tokens_per_s": tokens / times[-1]}
    for name, d in diffs.items():
        d = np.abs(np.array(d))
        out[f"logprob_vs_{name}"] = {"mean": float(d.mean()), "p99": float(np.quantile(d, 0.99)), "max": float(d.max()),
                                     "tokens": int(d.size)}
    return out


def bench(flags: Flags) -> dict:
    if not (DATA / "train.json").is_file():
        raise FlagError(f"CoNLL04 is not at {DATA} (../shared/data from the project's root); see its README")
    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    import torch
    from transformers import AutoTokenizer

    from t2g.models.offline import smollm2_hf_dir

    torch.set_num_threads(flags.threads)
    out = Path(flags.out)
    out.mkdir(parents=True, exist_ok=True)
    hf_dir = Path(smollm2_hf_dir())
    tok = AutoTokenizer.from_pretrained(hf_dir)
    result: dict = {"threads": flags.threads, "cpu": cpu_name()}
    if "acceptance" in flags.parts:
        prompts, targets = prompts_and_targets(tok, 200)
        result["acceptance"] = acceptance(prompts, targets)
    if {"pass_cost", "sampling"} & set(flags.parts):
        bases = Bases(hf_dir, out, lora_model(hf_dir))
        if "pass_cost" in flags.parts:
            result["pass_cost"] = {t: pass_cost(bases, t, flags.threads) for t in flags.types}
        if "sampling" in flags.parts:
            prompts, _ = prompts_and_targets(tok, ROWS // GROUP)
            result["sampling"] = {t: sampling(bases, t, flags.threads, prompts, tok.eos_token_id) for t in flags.types}
    (out / "levers.json").write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    return result


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def report(result: dict) -> str:
    lines = [f"\nllama.cpp rollout levers on {result['cpu']}, {result['threads']} thread(s), SmolLM2-135M + a LoRA r=16"]
    cost = result.get("pass_cost", {})
    if cost:
        lines.append(f"\npass cost: ms per token of one pass over {ROWS} rows carrying k tokens each")
        lines.append(f"{'base':<6}" + "".join(f"{f'k={k}':>9}" for k in (1, 2, 4, 8)))
        for t, row in cost.items():
            lines.append(f"{t:<6}" + "".join(f"{row[k]:>9.2f}" for k in (1, 2, 4, 8)))
    if "acceptance" in result:
        lines.append("\nprompt-lookup drafts against CoNLL04 train targets (200), exact match")
        head = f"{'n':>2} {'k':>2} {'tokens/pass':>11} {'drafts/pass':>11}"
        if cost:
            head += "".join(f" {f'gain {t}':>10}" for t in cost)
        lines.append(head)
        for row in result["acceptance"]:
            line = f"{row['n']:>2} {row['k']:>2} {row['tokens_per_pass']:>11.2f} {row['drafts_per_pass']:>11.2f}"
            if cost:
                line += "".join(f" {speculative_gain(row, c):>10.2f}" for c in cost.values())
            lines.append(line)
        if cost:
            lines.append("gain: tokens a verify pass yields over its cost in plain one-token passes (> 1: speculation pays)")
    samp = result.get("sampling", {})
    if samp:
        ref = samp.get("f32")
        lines.append(f"\nsampling {ROWS // GROUP} prompts x {GROUP} (T={TEMPERATURE}, {MAX_NEW} tokens): tokens/s and "
                     "|llama.cpp - transformers| log-prob (mean / p99 / max)")
        lines.append(f"{'base':<6} {'tokens':>6} {'tokens/s':>8} {'x f32':>6}  {'vs fp32 trainer':>24}  {'vs bf16-autocast trainer':>24}")
        for t, r in samp.items():
            ratio = f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}" if ref else "-"
            cells = ["{mean:.1e} / {p99:.1e} / {max:.2f}".format(**r[f"logprob_vs_{n}"]) for n in ("fp32", "bf16")]
            lines.append(f"{t:<6} {r['tokens']:>6} {r['tokens_per_s']:>8.1f} {ratio:>6}  {cells[0]:>24}  {cells[1]:>24}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict | None:
    return run(Flags, bench, argv)


if __name__ == "__main__":
    main()
