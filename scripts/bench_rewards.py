"""Benchmark the reward module: completions/second for the default reward set, one core.

    python scripts/bench_rewards.py                                    # CoNLL04 test from ../shared/data
    python scripts/bench_rewards.py --data path/to/test.json --n 8192 --repeats 5

It builds a realistic GRPO batch: CoNLL04 gold graphs, each prompt repeated `--group` times (as
GRPO's num_generations does) with one perturbation per completion (exact, with a think block,
fenced, an entity dropped / added / hallucinated / retyped / given an unknown type, duplicates,
a dangling relation, junk after the JSON, prose before it, cut mid-JSON at the token limit,
invalid JSON, an empty graph, an empty output). The gold column holds a fresh dict per row, as
rows from a datasets.Dataset do.

It times, in the same run and on the same batch:
- cached: the functions of one `rewards.build(DEFAULT_WEIGHTS)`, which parse each completion once;
- naive:  the same rewards, each from its own `build()`, so each re-parses the batch (what a
          registry of independent reward functions does); their values must be identical;
and prints completions/s for both and their ratio, by CPU time of this process (steady on a shared
machine) and by wall time. Each repeat builds afresh, so the cached figure includes the one parse.
Best of `--repeats`.
"""

from __future__ import annotations

import copy
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rewards  # noqa: E402
from t2g.data.canonical import Example  # noqa: E402
from t2g.data.load import load_examples  # noqa: E402
from t2g.flags import FlagError, flag, run  # noqa: E402
from t2g.task.prompts import render_target  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll04" / "test.json"
MAX_COMPLETION_LENGTH = 256  # tokens; ~4 characters a token for the fake completion_ids


@dataclass
class Flags:
    """Benchmark the reward module: completions/second for the default reward set, one core."""

    data: str = flag(str(DEFAULT_DATA), "CoNLL04 SpERT .json, canonical .jsonl, or 'examples'")
    n: int = flag(4096, "completions in the batch")
    group: int = flag(8, "completions per prompt (GRPO num_generations)")
    repeats: int = flag(5, "timed runs of each side; the best counts")
    seed: int = flag(0, "the batch's seed")


def _dicts(ex: Example) -> tuple[list[dict], list[dict]]:
    d = ex.graph.to_dict()
    return d["entities"], d["relations"]


def _graph(ents: list[dict], rels: list[dict]) -> str:
    return json.dumps({"entities": ents, "relations": rels}, ensure_ascii=False)


def _perturbations(ex: Example, rng: random.Random) -> list[Callable[[], str]]:
    ents, rels = _dicts(ex)
    exact = _graph(ents, rels)
    words = ex.text.split()

    def drop() -> str:
        kept = [e for e in ents if rng.random() < 0.6]
        return _graph(kept, [r for r in rels if rng.random() < 0.6])

    def add() -> str:
        span = " ".join(words[i] for i in range(rng.randrange(len(words)), len(words))[:2])
        return _graph(ents + [{"text": span, "type": rng.choice(ex.entity_types)}], rels)

    def retype() -> str:
        return _graph([dict(e, type=rng.choice(ex.entity_types)) for e in ents], rels)

    return [
        lambda: exact,
        lambda: render_target(ex.graph, "Find the people, places and organisations, then how they relate."),
        lambda: "```json\n" + exact + "\n```",
        drop,
        add,
        retype,
        lambda: _graph(ents + [{"text": "Gotham City", "type": ex.entity_types[0]}], rels),
        lambda: _graph([dict(e, type="thing") for e in ents[:1]] + ents[1:], rels),
        lambda: _graph(ents * 3, rels * 2),
        lambda: _graph(ents[1:], rels),
        lambda: exact + "\nI hope this helps!",
        lambda: "Here is the graph: " + exact,
        lambda: exact[: len(exact) * 2 // 3],
        lambda: exact.replace('"type"', "type", 1),
        lambda: _graph([], []),
        lambda: "",
    ]


def make_batch(examples: list[Example], n: int, group: int, seed: int) -> tuple[list[str], dict[str, list[Any]]]:
    """n completions with the dataset columns TRL would pass alongside them."""
    rng = random.Random(seed)
    completions: list[str] = []
    columns: dict[str, list[Any]] = {k: [] for k in ("text", "entity_types", "relation_types", "graph", "completion_ids")}
    while len(completions) < n:
        ex = rng.choice(examples)
        makers = _perturbations(ex, rng)
        for _ in range(min(group, n - len(completions))):
            i = rng.randrange(len(makers))
            completion = makers[i]()
            cut = i == 12  # the "cut mid-JSON" perturbation hit the token limit
            n_tokens = MAX_COMPLETION_LENGTH if cut else min(len(completion) // 4 + 1, MAX_COMPLETION_LENGTH - 1)
            completions.append(completion)
            columns["text"].append(ex.text)
            columns["entity_types"].append(list(ex.entity_types))
            columns["relation_types"].append(list(ex.relation_types))
            columns["graph"].append(copy.deepcopy(ex.graph.to_dict()))
            columns["completion_ids"].append([7] * n_tokens)
    return completions, columns


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Best (wall seconds, CPU seconds of this process) over `repeats` runs.

    CPU time is the steadier figure on a shared machine (other processes' load stretches wall time
    but not this process's CPU time); both are printed.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def run_cached(completions: list[str], columns: dict[str, list[Any]]) -> dict[str, list[float]]:
    funcs, _ = rewards.build(rewards.DEFAULT_WEIGHTS, reasoning=True, max_completion_length=MAX_COMPLETION_LENGTH)
    return {f.__name__: f(completions, **columns) for f in funcs}


def run_naive(completions: list[str], columns: dict[str, list[Any]], names: list[str]) -> dict[str, list[float]]:
    # The same rewards with nothing shared: each one its own build(), so each re-parses the batch.
    out = {}
    for name in names:
        (fn,), _ = rewards.build({name: 1.0}, reasoning=True, max_completion_length=MAX_COMPLETION_LENGTH)
        out[name] = fn(completions, **columns)
    return out


def pin_one_core() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this OS); pure Python runs on one core anyway"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def bench(flags: Flags) -> None:
    if flags.data != "examples" and not Path(flags.data).is_file():
        raise FlagError(f"--data={flags.data}: not found; pass --data PATH (CoNLL04 SpERT json) or --data examples")

    core = pin_one_core()
    examples = load_examples(flags.data)
    completions, columns = make_batch(examples, flags.n, flags.group, flags.seed)
    names = [n for n, w in rewards.DEFAULT_WEIGHTS.items() if w != 0]

    cached = run_cached(completions, columns)
    assert list(cached) == names, "the default set in reasoning mode is every non-zero default weight"
    assert cached == run_naive(completions, columns, names), "cached and naive rewards must be identical"
    (w_cached, c_cached) = _time(lambda: run_cached(completions, columns), flags.repeats)
    (w_naive, c_naive) = _time(lambda: run_naive(completions, columns, names), flags.repeats)

    n = len(completions)
    print(f"data: {flags.data} ({len(examples)} examples), batch: {n} completions, groups of {flags.group}; {core}")
    print(f"default reward set ({len(names)} rewards): {', '.join(names)}")
    for name, values in cached.items():
        print(f"  {name:>18}: mean {statistics.fmean(values):+.3f}  min {min(values):+.2f}  max {max(values):+.2f}")
    print(f"best of {flags.repeats}       completions/s (CPU time)   completions/s (wall)")
    print(f"cached (one parse/batch): {n / c_cached:10.0f}            {n / w_cached:10.0f}")
    print(f"naive (re-parse/reward):  {n / c_naive:10.0f}            {n / w_naive:10.0f}")
    print(f"ratio cached/naive:       {c_naive / c_cached:10.2f}x           {w_naive / w_cached:10.2f}x")
    verdict = "met" if n / c_cached >= 5000 else "NOT met"
    print(f"target >= 5000 completions/s on one core (CPU time): {verdict}")


def main(argv: list[str] | None = None) -> None:
    run(Flags, bench, argv)


if __name__ == "__main__":
    main()
