"""Benchmark: evaluating CoNLL04 test with SmolLM2-135M-Instruct on CPU, HF vs llama.cpp, free vs constrained.

    python scripts/bench_eval.py --limit 16                  # a quick look (minutes)
    python scripts/bench_eval.py                             # all 288 test sentences (long on CPU)
    python scripts/bench_eval.py --limit 16 --full_grammar   # also llama-cpp-python's own grammar= path
    python scripts/bench_eval.py --limit 16 --n_threads 1    # on a CPU shared with other jobs (see below)
    python scripts/bench_eval.py --limit 16 --n_threads 1 --gguf run/export/model-q8_0.gguf --batch_size 16
                                                             # llama.cpp rows only, on an exported GGUF

Every configuration runs through `t2g.eval.evaluate.evaluate` (the code behind `t2g evaluate`) on the same
sentences in the same process, one after the other, and the table prints sentences/second with its
ratio to the HF baseline measured in this run (with --gguf: to llama.cpp one at a time), next to the
F1s, so that what constrained decoding does to quality is visible beside what it does to speed.
Model loading is excluded from the timing.

Configurations: hf (transformers, fp32, batched greedy; the baseline), llama.cpp one at a time (the
Q4_1 GGUF of the same model, llama-cpp-python's own decoding loop), llama.cpp (the same GGUF,
--batch_size sequences decoded together by t2g.infer.llama_batched), llama.cpp + grammar (GBNF from the
type lists, argmax-first check), and with
--full_grammar llama.cpp + full grammar (the grammar filters the whole vocabulary at every step).
HF has no constrained mode: its row says so instead of a number.
Each configuration's full report lands in --out/<name>/ (report.json, report.md, predictions).
On a CPU busy with other jobs, llama.cpp's worker threads spin-wait on each other and its ratio to
HF collapses; `--n_threads 1` keeps the comparison meaningful there (and say so with the numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conll04" / "test.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="CoNLL04 test (SpERT JSON) or any dataset t2g reads")
    p.add_argument("--limit", type=int, default=None, help="first N sentences (default: all)")
    p.add_argument("--max_new_tokens", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8,
                   help="sequences decoded together, by HF and by llama.cpp (t2g.infer.llama_batched; its row 'one at a time' is 1)")
    p.add_argument("--n_threads", type=int, default=None, help="llama.cpp threads (default: all cores)")
    p.add_argument("--gguf", default=None,
                   help="the llama.cpp rows run this GGUF (e.g. a t2g export, q8_0) instead of SmolLM2's Q4_1; no HF row")
    p.add_argument("--full_grammar", action="store_true", help="also time llama-cpp-python's own grammar= (slow)")
    p.add_argument("--out", default=None, help="where the per-configuration reports go (default: a temp dir)")
    return p.parse_args(argv)


def folder(name: str) -> str:
    """A configuration's report folder under --out."""
    return name.replace(" + ", "_").replace(", ", "_").replace(" ", "_")


def configurations(args: argparse.Namespace) -> list[tuple[str, dict]]:
    threads = {"n_threads": args.n_threads} if args.n_threads else {}
    configs = [] if args.gguf else [
        ("hf", {"backend": "hf", "batch_size": args.batch_size}),
        ("hf + grammar", None),  # not supported: reported, not timed
    ]
    configs += [
        ("llama.cpp, one at a time", {"backend": "llama.cpp", "batch_size": 1, "n_ctx": 2048, **threads}),
        ("llama.cpp", {"backend": "llama.cpp", "batch_size": args.batch_size, "n_ctx": 2048, **threads}),
        ("llama.cpp + grammar", {"backend": "llama.cpp", "constrained": True, "n_ctx": 2048, **threads}),
    ]
    if args.full_grammar:
        configs.append(("llama.cpp + full grammar",
                        {"backend": "llama.cpp", "constrained": True, "n_ctx": 2048, "grammar_mode": "full", **threads}))
    return configs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from t2g.eval.evaluate import evaluate

    if not Path(args.data).is_file():
        sys.exit(f"bench_eval: {args.data} not found; pass --data (CoNLL04 lives in ../shared/data/conll04/)")
    out_root = Path(args.out or tempfile.mkdtemp(prefix="t2g-bench-eval-"))
    rows = []
    for name, options in configurations(args):
        if options is None:
            rows.append((name, None))
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        model = args.gguf if args.gguf and options["backend"] == "llama.cpp" else "smollm2"
        report = evaluate(model, args.data, str(out_root / folder(name)),
                          args.limit, max_new_tokens=args.max_new_tokens, progress=True, **options)
        rows.append((name, report))
    print_table(rows, args)
    print_agreement(out_root, "llama.cpp, one at a time", "llama.cpp")
    print(f"\nreports: {out_root}", file=sys.stderr)


def print_agreement(out_root: Path, first: str, second: str) -> None:
    """Batched greedy decoding can differ from one-at-a-time in a near tie (other float summation order)."""
    from t2g.data.canonical import iter_jsonl

    def completions(name: str) -> list[str]:
        return [row["completion"] for _, _, row in iter_jsonl(out_root / folder(name) / "predictions.jsonl")]

    a, b = completions(first), completions(second)
    print(f"identical completions, {first} vs {second}: {sum(x == y for x, y in zip(a, b))}/{len(a)}")


def print_table(rows: list, args: argparse.Namespace) -> None:
    baseline = rows[0][0]  # hf, or with --gguf llama.cpp one at a time
    base = rows[0][1]["timing"]["sentences_per_s"]
    n = next(r for _, r in rows if r)["n_examples"]
    model = args.gguf or "SmolLM2-135M-Instruct"
    print(f"\n{Path(args.data).name}, {n} sentences, {model}, CPU ({os.cpu_count()} cores), greedy, "
          f"max_new_tokens={args.max_new_tokens}, llama.cpp threads {args.n_threads or 'all'}, batch_size {args.batch_size}")
    print(f"{'configuration':<26}{'sent/s':>8}{'ratio':>8}{'ent F1':>8}{'rel F1':>8}{'JSON ok':>9}{'off-schema':>11}")
    print(f"(ratio: sentences/s against '{baseline}', measured in this run)")
    for name, r in rows:
        if r is None:
            print(f"{name:<26}{'not supported (use llama.cpp or an OpenAI server for constraints)':>52}")
            continue
        sps = r["timing"]["sentences_per_s"]
        off = r["output"]["out_of_schema_rate"]
        print(f"{name:<26}{sps:>8.3f}{sps / base:>7.2f}x{100 * r['entity']['f1']:>8.1f}{100 * r['relation']['f1']:>8.1f}"
              f"{100 * r['json_valid_rate']:>8.1f}%{'n/a' if off is None else f'{100 * off:.1f}%':>11}")


if __name__ == "__main__":
    main()
