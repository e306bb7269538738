"""Benchmark: what each GGUF quantization of a trained model costs in F1 and gives in speed, in one run.

The model (a run directory, an adapter or an HF folder) is merged once and exported with t2g's
exporter as each --quants type, each k-quant also with an importance matrix measured on the
task's own prompts (`--imatrix=task`, `t2g/export/imatrix.py`), and each k-quant with each
--tensor_types mix (`t2g export --tensor_types`: some tensors at a higher precision). Every GGUF is evaluated on the same
sentences (CoNLL04 test by default: `t2g.eval.evaluate`, llama.cpp, greedy, batched), and compared
with the reference quant (q8_0) by the paired bootstrap of `t2g compare`. Speed is generated tokens
per second on --speed_limit sentences one at a time (the way a user extracts), measured in
--rounds rounds whose order alternates, as a ratio to the reference in the same round.

    python scripts/bench_quants.py --model RUN_DIR --out /tmp/quants    # resumable: a finished GGUF's evaluation is kept
    # or F1 first beside other work, then the speed alone on a quiet machine:
    python scripts/bench_quants.py --model RUN_DIR --out /tmp/quants --rounds 0
    python scripts/bench_quants.py --model RUN_DIR --out /tmp/quants --rounds 2
    # 4-bit with some tensors kept at 8 bits, each mix a label of its own (q4_k_m+ffn_down=q8_0 ...):
    python scripts/bench_quants.py --model RUN_DIR --out /tmp/quants --quants q8_0,q4_k_m --imatrix=false \
        --tensor_types='["ffn_down=q8_0", "ffn_down=q8_0,attn_v=q8_0"]'

Needs llama-cpp-python and llama.cpp's converter (`t2g fetch-llama-cpp`).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from t2g.flags import flag, run

REPO = Path(__file__).resolve().parents[1]
CONLL04 = REPO.parent / "shared" / "data" / "conll04"


@dataclass
class Flags:
    """Benchmark: F1 and speed of each GGUF quantization of a trained model, against q8_0, in one run."""

    model: str = flag(help="a training run, a LoRA adapter or an HF folder (an adapter is merged on its base)")
    out: str = flag(help="output folder (GGUFs, evaluations, results.json); finished evaluations are kept")
    data: str = flag(str(CONLL04 / "test.json"), "the evaluation sentences (any dataset t2g reads)")
    limit: int = flag(0, "the first N sentences (0 = all)")
    quants: tuple[str, ...] = flag(("q8_0", "q6_k", "q5_k_m", "q4_k_m"), "the GGUF types; the first is the reference")
    imatrix: bool = flag(True, "each k-quant also with the task's importance matrix (label <quant>+imatrix)")
    tensor_types: tuple[str, ...] = flag((), "per-tensor mixes, each as `t2g export --tensor_types` takes it "
                                             "(ffn_down=q8_0,attn_v=q8_0): each k-quant also with each (label <quant>+<mix>)")
    imatrix_data: str = flag(str(CONLL04 / "train.json"), "the prompts the importance matrices are measured on")
    imatrix_limit: int = flag(64, "examples of --imatrix_data measured")
    nll_data: str = flag(str(CONLL04 / "dev.json"), "the sentences whose gold answers' mean log-loss is measured")
    nll_limit: int = flag(24, "sentences of --nll_data (teacher-forced through each GGUF, one thread)")
    speed_limit: int = flag(12, "sentences decoded one at a time for the speed")
    rounds: int = flag(2, "speed rounds (alternating order); 0 = none now: F1 and log-loss can be measured beside "
                          "other work, and a later invocation with rounds on a quiet machine adds the speed")
    max_new_tokens: int = flag(320, "tokens generated per sentence at most")
    base_model: str | None = flag(None, "the base model under an adapter (default: the one it records)")


@dataclass(frozen=True)
class Variant:
    """One GGUF of the benchmark: a quant, made with or without the task's importance matrix and per-tensor types."""

    quant: str
    imatrix: bool = False
    tensor_types: str = ""

    @property
    def label(self) -> str:
        return self.quant + ("+imatrix" if self.imatrix else "") + (f"+{self.tensor_types}" if self.tensor_types else "")

    @property
    def folder(self) -> str:  # a file-system-safe spelling of the label
        return re.sub(r"[^A-Za-z0-9_.=-]", "-", self.label.replace(",", "_"))


def variants(flags: Flags) -> list[Variant]:
    """Each quant as exported, then each k-quant with the importance matrix, then with each per-tensor mix."""
    from t2g.export.gguf import CONVERTER_TYPES, ExportError, format_tensor_types, parse_tensor_types

    kquants = [q for q in flags.quants if q not in CONVERTER_TYPES]
    mixes = [format_tensor_types(parse_tensor_types(spec, "--tensor_types")) for spec in flags.tensor_types]
    if mixes and not kquants:
        raise ExportError(f"--tensor_types needs a k-quant in --quants (got {','.join(flags.quants)})")
    return ([Variant(q) for q in flags.quants] + [Variant(q, imatrix=True) for q in kquants if flags.imatrix]
            + [Variant(q, tensor_types=mix) for mix in mixes for q in kquants])


def _ggufs(flags: Flags, out: Path, wanted: list[Variant]) -> dict[str, Path]:
    """{label: GGUF} for every variant."""
    from t2g.data.load import load_examples
    from t2g.export.gguf import parse_tensor_types
    from t2g.export.llama_cpp import find_llama_cpp
    from t2g.export.merge import merge_to_hf
    from t2g.export.pipeline import write_ggufs
    from t2g.infer.resolve import resolve_model

    paths = {v.label: out / "ggufs" / v.folder / f"model-{v.quant}.gguf" for v in wanted}
    if all(p.is_file() for p in paths.values()):
        return paths
    spec = resolve_model(flags.model, "hf", base_model=flags.base_model)
    hf_dir = Path(spec.path)
    if spec.adapter:
        hf_dir = out / "merged"
        if not (hf_dir / "config.json").is_file():
            merge_to_hf(spec.path, spec.adapter, hf_dir, dtype="bf16")
    lc = find_llama_cpp()
    calibration = load_examples(flags.imatrix_data)[:flags.imatrix_limit] if any(v.imatrix for v in wanted) else []
    for v in wanted:
        if not paths[v.label].is_file():
            write_ggufs(hf_dir, paths[v.label].parent, "model", [v.quant], lc, calibration=calibration if v.imatrix else (),
                        tensor_types=parse_tensor_types(v.tensor_types))
    return paths


def bench(flags: Flags) -> dict:
    from t2g.data.load import load_examples
    from t2g.eval.compare import paired_bootstrap
    from t2g.eval.evaluate import evaluate
    from t2g.eval.predictions import read_predictions
    from t2g.export.parity import run_side
    from t2g.files import write_json_atomic

    out = Path(flags.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = variants(flags)
    ggufs = _ggufs(flags, out, wanted)
    folders = {v.label: v.folder for v in wanted}
    reference = flags.quants[0]
    rows: dict[str, dict] = {}
    for label, gguf in ggufs.items():
        folder = out / "eval" / folders[label]
        if not (folder / "report.json").is_file():
            print(f"bench: evaluating {label} ...", file=sys.stderr, flush=True)
            evaluate(str(gguf), flags.data, str(folder), limit=flags.limit or None, runtime="llama.cpp",
                     max_new_tokens=flags.max_new_tokens, batch_size=16, progress=False)
        report = json.loads((folder / "report.json").read_text())
        rows[label] = {"file_mb": round(gguf.stat().st_size / 2**20, 1), "n": report["n_examples"],
                       "entity_f1": report["entity"]["f1"], "relation_f1": report["relation"]["f1"],
                       "json_valid": report["json_valid_rate"]}
    gold = load_examples(str(out / "eval" / reference / "gold.jsonl"))
    ref_preds = read_predictions(out / "eval" / reference / "predictions.jsonl")
    for label in rows:
        if label != reference:
            preds = read_predictions(out / "eval" / folders[label] / "predictions.jsonl")
            rel = paired_bootstrap(gold, ref_preds, preds, resamples=1000, seed=0)["relation"]
            rows[label]["relation_vs_reference"] = {k: rel[k] for k in ("delta", "low", "high")}
    nll_examples = load_examples(flags.nll_data)[:flags.nll_limit]
    for label, gguf in ggufs.items():
        cached = out / "eval" / folders[label] / "nll.json"
        if not cached.is_file():
            write_json_atomic(cached, answer_nll(gguf, nll_examples))
        rows[label]["answer_nll"] = json.loads(cached.read_text())["mean_nll"]
    speed_examples = load_examples(flags.data)[:flags.speed_limit]
    threads = len(os.sched_getaffinity(0))
    earlier = _earlier_speed(out / "results.json", list(ggufs), flags.rounds)
    for r in range(0 if earlier else flags.rounds):
        order = list(ggufs) if r % 2 == 0 else list(reversed(ggufs))
        measured = {}
        for label in order:
            side = run_side(str(ggufs[label]), "llama.cpp", speed_examples, max_new_tokens=flags.max_new_tokens,
                            n_threads=threads, n_ctx=2048).report
            measured[label] = side["tokens_per_second"]
        for label, tps in measured.items():
            rows[label].setdefault("tokens_per_second", []).append(tps)
            rows[label].setdefault("speed_vs_reference", []).append(tps / measured[reference])
    for label, row in rows.items():
        if earlier:  # measured by an earlier invocation of this command (speed is not redone: it needs a quiet machine)
            row.update(earlier[label])
        speeds = row.get("speed_vs_reference")
        row["speed_vs_reference_median"] = statistics.median(speeds) if speeds else None
    result = {"model": flags.model, "data": flags.data, "reference": reference, "threads": threads,
              "loadavg_1min": round(os.getloadavg()[0], 2), "rows": rows}
    write_json_atomic(out / "results.json", result)
    _print(result)
    return result


def answer_nll(gguf: Path, examples) -> dict:
    """Mean negative log-likelihood per token of the gold answers, teacher-forced after each prompt through
    the GGUF: a low-noise measure of what quantization changed (greedy F1 moves only where a token flips)."""
    import math

    import numpy as np
    from llama_cpp import Llama

    from t2g.task.prompts import build_messages, render_target

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=1, logits_all=True, verbose=False)
    total, n = 0.0, 0
    try:
        for ex in examples:
            messages = build_messages(ex.text, ex.entity_types, ex.relation_types, ex.type_descriptions or None)
            prompt = llm.tokenize(_chat(llm, messages, True).encode(), add_bos=False, special=True)
            full = llm.tokenize(_chat(llm, messages + [{"role": "assistant", "content": render_target(ex.graph)}],
                                      False).encode(), add_bos=False, special=True)
            llm.reset()
            llm.eval(full)
            scores = np.asarray(llm.scores[:len(full)], dtype=np.float64)
            for i in range(len(prompt), len(full)):
                z = scores[i - 1] - scores[i - 1].max()
                total -= z[full[i]] - math.log(np.exp(z).sum())
                n += 1
    finally:
        llm.close()
    return {"mean_nll": total / max(1, n), "tokens": n, "examples": len(examples)}


def _chat(llm, messages: list[dict], generation_prompt: bool) -> str:
    """The GGUF's own chat template (the one Ollama and t2g's llama.cpp runtime apply)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata["tokenizer.chat_template"]
    formatter = Jinja2ChatFormatter(template, eos_token="", bos_token="", add_generation_prompt=generation_prompt)
    return formatter(messages=messages).prompt


def _earlier_speed(path: Path, labels: list[str], rounds: int) -> dict | None:
    """Each GGUF's speed rounds from an earlier invocation's results.json, when it measured these GGUFs."""
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["rows"]
    if set(rows) != set(labels) or any(len(rows[k].get("speed_vs_reference") or []) < max(rounds, 1) for k in labels):
        return None
    return {k: {"tokens_per_second": rows[k]["tokens_per_second"], "speed_vs_reference": rows[k]["speed_vs_reference"]}
            for k in labels}


def _print(result: dict) -> None:
    print(f"\n{result['model']}: GGUF types against {result['reference']} ({result['threads']} threads)")
    w = max(16, 2 + max(len(label) for label in result["rows"]))
    print(f"{'GGUF':<{w}}{'MB':>7}{'entity F1':>11}{'relation F1':>13}{'vs ref, 95% interval':>26}{'JSON':>7}"
          f"{'answer NLL':>12}{'speed x':>9}")
    for label, r in result["rows"].items():
        d = r.get("relation_vs_reference")
        diff = f"{100 * d['delta']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]" if d else "-"
        speed = "-" if r["speed_vs_reference_median"] is None else f"{r['speed_vs_reference_median']:.2f}x"
        print(f"{label:<{w}}{r['file_mb']:>7}{100 * r['entity_f1']:>11.1f}{100 * r['relation_f1']:>13.1f}{diff:>26}"
              f"{100 * r['json_valid']:>7.1f}{r['answer_nll']:>12.4f}{speed:>9}")


if __name__ == "__main__":
    os.environ.setdefault("UNSLOTH_AUTO_INSTALL", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from t2g.export.gguf import ExportError

    run(Flags, bench, prog="bench_quants.py", errors=(ExportError,))
