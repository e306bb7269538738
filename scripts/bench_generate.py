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

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from t2g.data.canonical import read_jsonl  # noqa: E402
from t2g.data.load import example_dataset_path  # noqa: E402
from t2g.flags import FlagError, flag, run  # noqa: E402
from t2g.infer.openai_client import OpenAIChatClient  # noqa: E402
from t2g.synth.config import GenerateConfig  # noqa: E402
from t2g.synth.generate import generate  # noqa: E402
from t2g.synth.teacher import STRUCTURED  # noqa: E402


@dataclass
class Flags:
    """Benchmark `t2g generate`: rows/second at concurrency 1 and N against the same server, same run."""

    base_url: str | None = flag(None, "an OpenAI-compatible endpoint (default: start llama_cpp.server with SmolLM2)")
    model: str = flag("smollm2", "the model name sent to the server")
    n_threads: int = flag(1, "llama.cpp threads of the server it starts")
    rows: int = flag(6, "texts per run (the shipped examples)")
    repeats: int = flag(2, "runs at each concurrency, alternating 1, N, N, 1, ...")
    concurrency: int = flag(4, "N, the requests in flight compared with 1 (>= 2)")
    max_tokens: int = flag(64, "tokens per teacher answer")
    structured: str = flag("json_object", "how the answer's shape is enforced", choices=STRUCTURED)
    entity_types: tuple[str, ...] = flag(("person", "organization", "location"), "entity types, comma-separated")
    relation_types: tuple[str, ...] = flag(("works for", "located in", "founded", "lives in"),
                                           "relation types, comma-separated")


def run_once(base_url: str, model: str, texts: Path, out_dir: Path, concurrency: int, flags: Flags) -> tuple[float, dict]:
    cfg = GenerateConfig(input=str(texts), output=str(out_dir / "out.jsonl"), base_url=base_url, model=model,
                         entity_types=list(flags.entity_types), relation_types=list(flags.relation_types),
                         structured=flags.structured, ground_spans=flags.structured != "none",
                         concurrency=concurrency, max_tokens=flags.max_tokens, timeout=300, augment_copies=0,
                         progress=False)
    start = time.perf_counter()
    report = generate(cfg)
    return time.perf_counter() - start, report


def bench(base_url: str, model: str, flags: Flags) -> None:
    examples = read_jsonl(example_dataset_path())[: flags.rows]
    with tempfile.TemporaryDirectory(prefix="t2g-bench-") as tmp:
        texts = Path(tmp) / "texts.txt"
        texts.write_text("\n".join(ex.text for ex in examples) + "\n", encoding="utf-8")
        OpenAIChatClient(base_url, model).chat([{"role": "user", "content": "Hi"}], max_tokens=4)  # warm-up
        results: dict[int, list[float]] = {1: [], flags.concurrency: []}
        order = [1, flags.concurrency]
        for i in range(flags.repeats):
            for n in order if i % 2 == 0 else order[::-1]:
                out_dir = Path(tmp) / f"run{i}-c{n}"
                out_dir.mkdir()
                seconds, report = run_once(base_url, model, texts, out_dir, n, flags)
                answered = report["teacher"]["answered_now"]
                if report["failed_rows"]:
                    sys.exit(f"concurrency {n}: {report['failed_rows']} rows failed; see {out_dir}/out.errors.jsonl")
                results[n].append(answered / seconds)
                print(f"run {i + 1}, concurrency {n}: {answered} rows in {seconds:.1f} s = "
                      f"{results[n][-1]:.3f} rows/s (kept {report['examples_kept']})", flush=True)
    one, many = statistics.median(results[1]), statistics.median(results[flags.concurrency])
    print(f"median rows/s: concurrency 1 = {one:.3f}, concurrency {flags.concurrency} = {many:.3f}; "
          f"speed-up {many / one:.2f}x over {flags.repeats} alternating repeat(s)")


def start(flags: Flags) -> None:
    if flags.concurrency < 2 or flags.rows < 1 or flags.repeats < 1:
        raise FlagError("--concurrency must be >= 2 (it is compared with 1), --rows and --repeats >= 1")
    if flags.base_url:
        bench(flags.base_url, flags.model, flags)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import llama_server  # the same bounded, always-stopped launcher as the tests

    from t2g.models.offline import AssetError, smollm2_gguf_path

    try:
        gguf = smollm2_gguf_path()
    except AssetError as exc:
        sys.exit(f"{exc} (or give --base_url)")
    with llama_server(gguf, n_threads=flags.n_threads) as url:
        bench(url, flags.model, flags)


def main(argv: list[str] | None = None) -> None:
    run(Flags, start, argv)


if __name__ == "__main__":
    main()
