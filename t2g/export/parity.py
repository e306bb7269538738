"""Does the exported GGUF still extract like the trained model? Same prompts, both runtimes, one scorer.

The same evaluation examples go through the HF model (transformers) and through the GGUF
(llama-cpp-python), both via `t2g.infer.extractor` with greedy decoding, so prompt, chat template (the
GGUF's own embedded one), parsing and scoring are the ones users get. Reported per side: the rate
of completions that honour the output contract (JSON validity), strict entity and relation micro-F1
from `t2g.task.scoring`, and throughput. The GGUF *falls behind* when any of the three drops by more than
`threshold` (absolute) below the HF model; `on_fail="fail"` then raises ParityError after writing the
report, `"warn"` prints a warning. Identical completions are counted too: with q8_0 most should be.

    python -m t2g.export.parity --hf runs/x/export/hf --gguf runs/x/export/model-q8_0.gguf --limit 20
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from t2g.data.canonical import Example
from t2g.files import write_json_atomic
from t2g.task.prompts import PROMPT_VERSION
from t2g.task.scoring import score_corpus

METRICS = ("json_valid", "entity_f1", "relation_f1")


class ParityError(RuntimeError):
    """The GGUF falls behind the HF model by more than the threshold (see parity.json)."""


@dataclass
class SideResult:
    report: dict[str, Any]
    completions: list[str]
    errors: list[str | None]


def run_side(model: str, runtime: str, examples: Sequence[Example], *, max_new_tokens: int = 256,
             base_model: str | None = None, **options: Any) -> SideResult:
    """Extract every example through one runtime, one text at a time; metrics from the shared scorer, plus timing."""
    from t2g.infer.extractor import Extractor
    from t2g.infer.runner import make_request

    started = time.perf_counter()
    extractor = Extractor(model, runtime=runtime, base_model=base_model, max_new_tokens=max_new_tokens, batch_size=1,
                          **options)
    load_s = time.perf_counter() - started
    requests = [make_request(ex.text, ex.entity_types, ex.relation_types, ex.type_descriptions) for ex in examples]
    started = time.perf_counter()
    with extractor:
        results = extractor.run(requests)
        seconds = time.perf_counter() - started
        # Texts/s depends on how much each runtime chose to write; tokens/s (counted by the runtime's own
        # tokenizer) is the like-for-like speed.
        count = getattr(extractor.backend, "count_tokens", None)
        tokens = sum(count(r.completion) for r in results) if count else None
    corpus = score_corpus((r.graph, ex.graph) for r, ex in zip(results, examples)).report()
    report = {
        "runtime": extractor.spec.runtime,
        "model": model,
        "n": len(examples),
        "json_valid": sum(r.error is None for r in results) / max(1, len(results)),
        "entity_f1": corpus["entity"]["f1"],
        "relation_f1": corpus["relation"]["f1"],
        "load_seconds": round(load_s, 3),
        "seconds": round(seconds, 3),
        "texts_per_second": len(examples) / seconds if seconds > 0 else None,
        "completion_tokens": tokens,
        "tokens_per_second": tokens / seconds if tokens is not None and seconds > 0 else None,
        "scores": {k: corpus[k] for k in ("entity", "relation", "entity_boundaries", "relation_boundaries")},
    }
    return SideResult(report, [r.completion for r in results], [r.error for r in results])


def run_hf_side(hf_model: str, examples: Sequence[Example], *, max_new_tokens: int = 256, base_model: str | None = None,
                hf_dtype: str = "fp32") -> SideResult:
    """The reference side of a parity check: the HF model (fp32 unless told), greedy."""
    return run_side(hf_model, "hf", examples, max_new_tokens=max_new_tokens, base_model=base_model, dtype=hf_dtype)


def compare(hf: SideResult, gguf: SideResult, threshold: float) -> dict[str, Any]:
    drops = {m: hf.report[m] - gguf.report[m] for m in METRICS}
    behind = [m for m, d in drops.items() if d > threshold + 1e-12]
    same = sum(a == b for a, b in zip(hf.completions, gguf.completions))
    return {
        "threshold": threshold,
        "drop": drops,
        "falls_behind_on": behind,
        "passed": not behind,
        "identical_completions": same,
        "identical_completion_rate": same / max(1, len(hf.completions)),
    }


def check_parity(hf_model: str, gguf_path: str | Path, examples: Sequence[Example], out_path: str | Path, *,
                 threshold: float = 0.05, on_fail: str = "fail", max_new_tokens: int = 256, base_model: str | None = None,
                 n_ctx: int = 2048, hf_dtype: str = "fp32", hf: SideResult | None = None) -> dict[str, Any]:
    """Run both sides, write `out_path` (parity.json), then fail or warn when the GGUF falls behind.
    `hf`: the HF side already run on the same examples (one HF run serves every GGUF of an export)."""
    if on_fail not in ("fail", "warn"):
        raise ValueError(f"--on_parity_fail={on_fail!r}: use fail or warn")
    if not examples:
        raise ValueError("the parity check needs at least one example (--parity_limit > 0)")
    if hf is None:
        hf = run_hf_side(hf_model, examples, max_new_tokens=max_new_tokens, base_model=base_model, hf_dtype=hf_dtype)
    gguf = run_side(str(gguf_path), "llama.cpp", examples, max_new_tokens=max_new_tokens, n_ctx=n_ctx)
    verdict = compare(hf, gguf, threshold)
    report = {
        "prompt_version": PROMPT_VERSION,
        "gguf": Path(gguf_path).name,
        "hf": hf.report,
        "gguf_side": gguf.report,
        **verdict,
        "examples": [
            {"id": ex.id, "hf_completion": a, "hf_error": ea, "gguf_completion": b, "gguf_error": eb}
            for ex, a, b, ea, eb in zip(examples, hf.completions, gguf.completions, hf.errors, gguf.errors)
        ],
    }
    write_json_atomic(out_path, report)
    if not verdict["passed"]:
        message = (f"parity: {Path(gguf_path).name} falls behind the HF model by more than {threshold} on "
                   + ", ".join(f"{m} ({hf.report[m]:.3f} -> {gguf.report[m]:.3f})" for m in verdict["falls_behind_on"])
                   + f"; details in {out_path}")
        if on_fail == "fail":
            raise ParityError(message + " (pass --on_parity_fail=warn to keep the export anyway)")
        print(f"t2g: warning: {message}", file=sys.stderr)
    return report


def main(hf: str, gguf: str, data: str = "examples", limit: int = 20, out: str = "parity.json",
         threshold: float = 0.05, on_fail: str = "fail", max_new_tokens: int = 256, base_model: str | None = None) -> None:
    from t2g.data.load import load_examples

    report = check_parity(hf, gguf, load_examples(data)[:limit], out, threshold=threshold, on_fail=on_fail,
                          max_new_tokens=max_new_tokens, base_model=base_model)
    print({k: report[k] for k in ("passed", "drop", "identical_completion_rate")})


if __name__ == "__main__":
    import fire

    fire.Fire(main)
