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

import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conll04" / "test.json"


def _ggufs(model: str, work: Path, quants: list[str], base_model: str | None) -> tuple[str, dict[str, Path]]:
    """(HF model to compare against, {quant: gguf}) for `model` (smollm2, HF folder, adapter or run)."""
    from t2g.export.llama_cpp import find_llama_cpp
    from t2g.export.merge import merge_to_hf
    from t2g.export.pipeline import run_adapter, run_base_model, write_ggufs
    from t2g.infer.extractor import resolve_model

    run = Path(model)
    if run.is_dir() and run_adapter(run) is not None:  # a training run: its final adapter, as t2g export takes it
        base_model, model = base_model or run_base_model(run), str(run_adapter(run))
    spec = resolve_model(model, "hf", base_model=base_model)
    hf_dir = Path(spec.path)
    if spec.adapter:
        hf_dir = merge_to_hf(spec.path, spec.adapter, work / "merged", dtype="f32")
    paths, _, _ = write_ggufs(hf_dir, work, "bench", quants, find_llama_cpp())
    return str(hf_dir), dict(zip(quants, paths))


def main(model: str = "smollm2", data: str = str(DEFAULT_DATA), limit: int = 20, max_new_tokens: int = 192,
         threads: int = 0, quants: str = "q8_0,q4_k_m", out: str | None = None, base_model: str | None = None) -> None:
    import torch

    from t2g.data.load import load_examples
    from t2g.export.parity import run_side

    threads = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    examples = load_examples(data)[:limit]
    quant_list = [q.strip() for q in quants.split(",") if q.strip()] if isinstance(quants, str) else list(quants)
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2g-bench-") as tmp:
        hf_model, ggufs = _ggufs(model, Path(tmp), quant_list, base_model)
        sides = [("hf fp32", hf_model, "hf", {"dtype": "fp32"})]
        sides += [(f"gguf {q}", str(p), "llama.cpp", {"n_threads": threads, "n_ctx": 2048}) for q, p in ggufs.items()]
        sizes = {f"gguf {q}": p.stat().st_size for q, p in ggufs.items()}
        for label, path, backend, options in sides:
            print(f"bench: {label} on {len(examples)} sentences ...", file=sys.stderr)
            report = run_side(path, backend, examples, max_new_tokens=max_new_tokens, **options).report
            rows.append({"runtime": label, "file_mb": round(sizes.get(label, 0) / 2**20, 1) or None,
                         **{k: report[k] for k in ("texts_per_second", "tokens_per_second", "completion_tokens", "seconds",
                                            "load_seconds", "json_valid", "entity_f1", "relation_f1")}})
    base = rows[0]["tokens_per_second"]
    for row in rows:  # like-for-like: generated tokens per second (texts/s also depends on answer lengths)
        row["speed_vs_hf_fp32"] = row["tokens_per_second"] / base if base and row["tokens_per_second"] else None
    result = {"model": model, "data": data, "n": len(examples), "max_new_tokens": max_new_tokens, "threads": threads, "rows": rows}
    _print_table(result)
    if out:
        from t2g.files import write_json_atomic

        write_json_atomic(out, result)


def _print_table(result: dict) -> None:
    print(f"\n{result['model']} on {result['n']} sentences of {Path(result['data']).name}, greedy, "
          f"max_new_tokens={result['max_new_tokens']}, {result['threads']} threads")
    print(f"{'runtime':<14}{'tokens/s':>9}{'vs hf fp32':>12}{'texts/s':>9}{'tokens':>8}{'JSON valid':>12}"
          f"{'entity F1':>11}{'relation F1':>13}{'file MB':>9}")
    for r in result["rows"]:
        print(f"{r['runtime']:<14}{r['tokens_per_second']:>9.2f}{r['speed_vs_hf_fp32']:>11.2f}x{r['texts_per_second']:>9.3f}"
              f"{r['completion_tokens']:>8}{r['json_valid']:>12.3f}{r['entity_f1']:>11.3f}{r['relation_f1']:>13.3f}"
              f"{r['file_mb'] or '-':>9}")


if __name__ == "__main__":
    import fire

    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    fire.Fire(main)
