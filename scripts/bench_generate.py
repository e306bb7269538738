"""Benchmark `t2g generate`: rows/second at concurrency 1 and N against the same server, same run.

    python scripts/bench_generate.py                      # starts llama_cpp.server with SmolLM2 on loopback
    python scripts/bench_generate.py --rows 16 --concurrency 4 --max_tokens 64
    python scripts/bench_generate.py --base_url http://127.0.0.1:8000/v1 --model teacher   # an existing server

All runs use the same texts (the shipped examples), the same settings and fresh output folders
(nothing cached), after one warm-up request. With --repeats R the runs alternate (1, N, N, 1, ...)
so that a load change on a shared machine hits both settings; the ratio printed is the median
rows/s at N over the median rows/s at 1, and every run's number is printed so noise is visible.
What the ratio can show depends on the server: llama-cpp-python's server holds one lock around
each generation (app.py: llama_outer_lock/llama_inner_lock), so it never batches requests; vLLM
or llama.cpp's `llama-server --parallel N` do. Measured on a 2-core machine shared with other
jobs (load 7-12), SmolLM2, 6 rows x 2 alternating repeats: with a 2-thread server 0.179 rows/s at
1 and 0.411 at 4 (2.30x); with the default 1-thread server 0.252 and 0.337 (1.34x), but its
second pair was 0.362 at 1 vs 0.357 at 4. Single requests there vary from 3 s to over 60 s with
the load, so expect about 1x from this server and rerun before trusting any ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from t2g.data.canonical import read_jsonl  # noqa: E402
from t2g.data.load import example_dataset_path
from t2g.synth.generate import GenerateConfig, generate  # noqa: E402
from t2g.infer.openai_client import OpenAIChatClient  # noqa: E402


def run_once(base_url: str, model: str, texts: Path, out_dir: Path, concurrency: int, args) -> tuple[float, dict]:
    cfg = GenerateConfig(input=str(texts), output=str(out_dir / "out.jsonl"), base_url=base_url, model=model,
                         entity_types=args.entity_types.split(","), relation_types=args.relation_types.split(","),
                         structured=args.structured, ground_spans=args.structured != "none",
                         concurrency=concurrency, max_tokens=args.max_tokens, timeout=300, augment_copies=0,
                         progress=False)
    start = time.perf_counter()
    report = generate(cfg)
    return time.perf_counter() - start, report


def bench(base_url: str, model: str, args) -> None:
    examples = read_jsonl(example_dataset_path())[: args.rows]
    with tempfile.TemporaryDirectory(prefix="t2g-bench-") as tmp:
        texts = Path(tmp) / "texts.txt"
        texts.write_text("\n".join(ex.text for ex in examples) + "\n", encoding="utf-8")
        OpenAIChatClient(base_url, model).chat([{"role": "user", "content": "Hi"}], max_tokens=4)  # warm-up
        results: dict[int, list[float]] = {1: [], args.concurrency: []}
        order = [1, args.concurrency]
        for i in range(args.repeats):
            for n in order if i % 2 == 0 else order[::-1]:
                out_dir = Path(tmp) / f"run{i}-c{n}"
                out_dir.mkdir()
                seconds, report = run_once(base_url, model, texts, out_dir, n, args)
                answered = report["teacher"]["answered_now"]
                if report["failed_rows"]:
                    sys.exit(f"concurrency {n}: {report['failed_rows']} rows failed; see {out_dir}/out.errors.jsonl")
                results[n].append(answered / seconds)
                print(f"run {i + 1}, concurrency {n}: {answered} rows in {seconds:.1f} s = "
                      f"{results[n][-1]:.3f} rows/s (kept {report['examples_kept']})", flush=True)
    one, many = statistics.median(results[1]), statistics.median(results[args.concurrency])
    print(f"median rows/s: concurrency 1 = {one:.3f}, concurrency {args.concurrency} = {many:.3f}; "
          f"speed-up {many / one:.2f}x over {args.repeats} alternating repeat(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base_url", help="an OpenAI-compatible endpoint; default: start llama_cpp.server with SmolLM2")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--n_threads", type=int, default=1, help="llama.cpp threads of the server it starts")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max_tokens", type=int, default=64)
    parser.add_argument("--structured", default="json_object", choices=["json_schema", "json_object", "grammar", "none"])
    parser.add_argument("--entity_types", default="person,organization,location")
    parser.add_argument("--relation_types", default="works for,located in,founded,lives in")
    args = parser.parse_args()
    if args.concurrency < 2 or args.rows < 1 or args.repeats < 1:
        parser.error("--concurrency must be >= 2 (it is compared with 1), --rows and --repeats >= 1")
    if args.base_url:
        bench(args.base_url, args.model, args)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import llama_server  # the same bounded, always-stopped launcher as the tests

    from t2g.models.offline import AssetError, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except AssetError as exc:
        sys.exit(f"{exc} (or give --base_url)")
    with llama_server(gguf, n_threads=args.n_threads) as url:
        bench(url, args.model, args)


if __name__ == "__main__":
    main()
