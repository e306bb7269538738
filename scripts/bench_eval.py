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

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
os.environ.setdefault("UNSLOTH_LLAMA_CPP_OFFLINE", "1")

from t2g.flags import flag, run  # noqa: E402  (light)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "conll04" / "test.json"


@dataclass
class Flags:
    """Benchmark: evaluating CoNLL04 test with SmolLM2-135M-Instruct on CPU, HF vs llama.cpp, free vs constrained."""

    data: str = flag(str(DEFAULT_DATA), "CoNLL04 test (SpERT JSON) or any dataset t2g reads")
    limit: int | None = flag(None, "first N sentences (default: all)")
    max_new_tokens: int = flag(256, "tokens generated per sentence at most")
    batch_size: int = flag(8, "sequences decoded together, by HF and by llama.cpp (t2g.infer.llama_batched; "
                              "its row 'one at a time' is 1)")
    n_threads: int | None = flag(None, "llama.cpp threads (default: all cores)")
    gguf: str | None = flag(None, "the llama.cpp rows run this GGUF (e.g. a t2g export, q8_0) instead of "
                                  "SmolLM2's Q4_1; no HF row")
    full_grammar: bool = flag(False, "also time llama-cpp-python's own grammar= (slow)")
    out: str | None = flag(None, "where the per-configuration reports go (default: a temp dir)")


def folder(name: str) -> str:
    """A configuration's report folder under --out."""
    return name.replace(" + ", "_").replace(", ", "_").replace(" ", "_")


def configurations(flags: Flags) -> list[tuple[str, dict]]:
    threads = {"n_threads": flags.n_threads} if flags.n_threads else {}
    configs = [] if flags.gguf else [
        ("hf", {"runtime": "hf", "batch_size": flags.batch_size}),
        ("hf + grammar", None),  # not supported: reported, not timed
    ]
    configs += [
        ("llama.cpp, one at a time", {"runtime": "llama.cpp", "batch_size": 1, "n_ctx": 2048, **threads}),
        ("llama.cpp", {"runtime": "llama.cpp", "batch_size": flags.batch_size, "n_ctx": 2048, **threads}),
        ("llama.cpp + grammar", {"runtime": "llama.cpp", "constrained": True, "n_ctx": 2048, **threads}),
    ]
    if flags.full_grammar:
        configs.append(("llama.cpp + full grammar",
                        {"runtime": "llama.cpp", "constrained": True, "n_ctx": 2048, "grammar_mode": "full", **threads}))
    return configs


def bench(flags: Flags) -> None:
    from t2g.eval.evaluate import evaluate

    if not Path(flags.data).is_file():
        sys.exit(f"bench_eval: {flags.data} not found; pass --data (CoNLL04 lives in ../shared/data/conll04/)")
    out_root = Path(flags.out or tempfile.mkdtemp(prefix="t2g-bench-eval-"))
    rows = []
    for name, options in configurations(flags):
        if options is None:
            rows.append((name, None))
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        model = flags.gguf if flags.gguf and options["runtime"] == "llama.cpp" else "smollm2"
        report = evaluate(model, flags.data, str(out_root / folder(name)),
                          flags.limit, max_new_tokens=flags.max_new_tokens, progress=True, **options)
        rows.append((name, report))
    print_table(rows, flags)
    print_agreement(out_root, "llama.cpp, one at a time", "llama.cpp")
    print(f"\nreports: {out_root}", file=sys.stderr)


def print_agreement(out_root: Path, first: str, second: str) -> None:
    """Batched greedy decoding can differ from one-at-a-time in a near tie (other float summation order)."""
    from t2g.data.canonical import iter_jsonl

    def completions(name: str) -> list[str]:
        return [row["completion"] for _, _, row in iter_jsonl(out_root / folder(name) / "predictions.jsonl")]

    a, b = completions(first), completions(second)
    print(f"identical completions, {first} vs {second}: {sum(x == y for x, y in zip(a, b))}/{len(a)}")


def print_table(rows: list, flags: Flags) -> None:
    baseline = rows[0][0]  # hf, or with --gguf llama.cpp one at a time
    base = rows[0][1]["timing"]["sentences_per_s"]
    n = next(r for _, r in rows if r)["n_examples"]
    model = flags.gguf or "SmolLM2-135M-Instruct"
    print(f"\n{Path(flags.data).name}, {n} sentences, {model}, CPU ({os.cpu_count()} cores), greedy, "
          f"max_new_tokens={flags.max_new_tokens}, llama.cpp threads {flags.n_threads or 'all'}, batch_size {flags.batch_size}")
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


def main(argv: list[str] | None = None) -> None:
    run(Flags, bench, argv)


if __name__ == "__main__":
    main()
