"""Benchmark: extraction throughput and F1 of HF fp32 vs GGUF q8_0 vs GGUF q4_k_m, in one run.

The same CoNLL04 sentences go through each runtime via `t2g.infer.extractor` (greedy, same prompt,
same parser, same scorer); speed is generated tokens per second (each runtime's own tokenizer
counts its completions: greedy answers can differ in length between runtimes, so texts/s alone
is not like-for-like), reported as a ratio to the HF fp32 baseline measured in this same run, on
the same machine and thread count. GGUFs are made from the model with t2g's exporter.

    python scripts/bench_export.py                                  # SmolLM2-135M-Instruct, 20 sentences
    python scripts/bench_export.py --model runs/my-run --limit 100  # a trained run (adapter merged)

Needs llama-cpp-python and llama.cpp's converter (`t2g fetch-llama-cpp`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2g.flags import flag, parse, run

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conll04" / "test.json"


@dataclass
class Flags:
    """Benchmark: extraction throughput and F1 of HF fp32 vs GGUF q8_0 vs GGUF q4_k_m, in one run."""

    model: str = flag("smollm2", "smollm2, an HF folder, a LoRA adapter or a training run (its adapter is merged)")
    data: str = flag(str(DEFAULT_DATA), "the sentences: CoNLL04 test (SpERT JSON) or any dataset t2g reads")
    limit: int = flag(20, "the first N sentences")
    max_new_tokens: int = flag(192, "tokens generated per sentence at most")
    threads: int = flag(0, "torch and llama.cpp threads (0: every core this process may use)")
    quants: tuple[str, ...] = flag(("q8_0", "q4_k_m"), "the GGUFs made and compared, comma-separated")
    out: str | None = flag(None, "also write the table as JSON here")
    base_model: str | None = flag(None, "the base model under an adapter (default: the one the adapter or run names)")


def _ggufs(model: str, work: Path, quants: list[str], base_model: str | None) -> tuple[str, dict[str, Path]]:
    """(HF model to compare against, {quant: gguf}) for `model` (smollm2, HF folder, adapter or run)."""
    from t2g.export.llama_cpp import find_llama_cpp
    from t2g.export.merge import merge_to_hf
    from t2g.export.pipeline import write_ggufs
    from t2g.infer.resolve import resolve_model

    spec = resolve_model(model, "hf", base_model=base_model)  # a run directory: its final adapter, as t2g export takes it
    hf_dir = Path(spec.path)
    if spec.adapter:
        hf_dir = merge_to_hf(spec.path, spec.adapter, work / "merged", dtype="f32")
    paths, _, _, _ = write_ggufs(hf_dir, work, "bench", quants, find_llama_cpp())
    return str(hf_dir), dict(zip(quants, paths))


def bench(flags: Flags) -> dict:
    import torch

    from t2g.data.load import load_examples
    from t2g.export.parity import run_side

    threads = flags.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    examples = load_examples(flags.data)[:flags.limit]
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2g-bench-") as tmp:
        hf_model, ggufs = _ggufs(flags.model, Path(tmp), list(flags.quants), flags.base_model)
        sides = [("hf fp32", hf_model, "hf", {"dtype": "fp32"})]
        sides += [(f"gguf {q}", str(p), "llama.cpp", {"n_threads": threads, "n_ctx": 2048}) for q, p in ggufs.items()]
        sizes = {f"gguf {q}": p.stat().st_size for q, p in ggufs.items()}
        for label, path, runtime, options in sides:
            print(f"bench: {label} on {len(examples)} sentences ...", file=sys.stderr)
            report = run_side(path, runtime, examples, max_new_tokens=flags.max_new_tokens, **options).report
            rows.append({"runtime": label, "file_mb": round(sizes.get(label, 0) / 2**20, 1) or None,
                         **{k: report[k] for k in ("texts_per_second", "tokens_per_second", "completion_tokens", "seconds",
                                            "load_seconds", "json_valid", "entity_f1", "relation_f1")}})
    base = rows[0]["tokens_per_second"]
    for row in rows:  # like-for-like: generated tokens per second (texts/s also depends on answer lengths)
        row["speed_vs_hf_fp32"] = row["tokens_per_second"] / base if base and row["tokens_per_second"] else None
    result = {"model": flags.model, "data": flags.data, "n": len(examples), "max_new_tokens": flags.max_new_tokens,
              "threads": threads, "rows": rows}
    _print_table(result)
    if flags.out:
        from t2g.files import write_json_atomic

        write_json_atomic(flags.out, result)
    return result


def _print_table(result: dict) -> None:
    print(f"\n{result['model']} on {result['n']} sentences of {Path(result['data']).name}, greedy, "
          f"max_new_tokens={result['max_new_tokens']}, {result['threads']} threads")
    print(f"{'runtime':<14}{'tokens/s':>9}{'vs hf fp32':>12}{'texts/s':>9}{'tokens':>8}{'JSON valid':>12}"
          f"{'entity F1':>11}{'relation F1':>13}{'file MB':>9}")
    for r in result["rows"]:
        print(f"{r['runtime']:<14}{r['tokens_per_second']:>9.2f}{r['speed_vs_hf_fp32']:>11.2f}x{r['texts_per_second']:>9.3f}"
              f"{r['completion_tokens']:>8}{r['json_valid']:>12.3f}{r['entity_f1']:>11.3f}{r['relation_f1']:>13.3f}"
              f"{r['file_mb'] or '-':>9}")


def main(argv: list[str] | None = None, **given: Any) -> dict | None:
    """From the command line (`argv`, default sys.argv), or from Python with the flags as keywords:
    `main(model="smollm2", limit=4)`."""
    if given:
        return bench(parse(Flags, given))
    return run(Flags, bench, argv)


if __name__ == "__main__":
    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
