"""`t2g evaluate`: a model on a dataset -> report.json, report.md, per_type_f1.png, view.html, predictions.jsonl.

    t2g evaluate --model smollm2 --data ../shared/data/conll04/test.json --out eval/smollm2 --limit 20
    t2g evaluate --model runs/my-run --data test.jsonl --out eval/run --runtime hf
    t2g evaluate --model qwen2.5:1.5b --base_url http://127.0.0.1:11434/v1 --data ... --out ...

The predictions are written first and the report is computed FROM THAT FILE with
`t2g.eval.predictions` (the code behind `t2g score`) and `t2g.task.scoring`, so `t2g score --gold
DIR/gold.jsonl --pred DIR/predictions.jsonl` reproduces every P/R/F1 in the report (gold.jsonl holds
the evaluated examples, after --limit, in the canonical format). The output diagnostics (hallucinated
spans, out-of-schema types, dangling relations) come from `t2g.task.schema.validate_graph`, the same
validation the rewards use. Decoding is greedy: the same model, data and runtime give the same report.

Each prediction row is {"id", "text", "graph" (located: entities with "spans", relations with
"head_spans" / "tail_spans"; null when the answer held none), "completion" or "chunk_completions",
"error", "detail"?}; `t2g score` re-parses "completion" and ignores the spans. view.html
(`t2g.eval.view`, linked from report.md) shows every text against its gold graph.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from t2g.data.canonical import DataError, Example, write_jsonl
from t2g.data.load import load_examples
from t2g.eval.predictions import read_predictions, score_predictions
from t2g.eval.view import write_view
from t2g.files import atomic_open, write_json_atomic, write_jsonl_atomic, write_text_atomic
from t2g.flags import flag
from t2g.infer.extractor import Extractor
from t2g.infer.options import inference_flags, inference_settings
from t2g.infer.runner import Extraction, make_request
from t2g.task.prompts import PROMPT_VERSION
from t2g.task.schema import DANGLING_HEAD, DANGLING_TAIL, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE, Graph, TaskContext, validate_graph

PREDICTIONS = "predictions.jsonl"
GOLD = "gold.jsonl"  # the evaluated examples (after --limit), so `t2g score` sees exactly the same set
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CHART = "per_type_f1.png"
VIEW = "view.html"


@inference_flags
@dataclass
class EvaluateFlags:
    """Evaluate a model on a dataset: DIR/report.json, report.md, per_type_f1.png, view.html, predictions.jsonl, gold.jsonl.

    Example: t2g evaluate --model smollm2 --data ../shared/data/conll04/test.json --out eval/smollm2 --limit 20
    `t2g score --gold DIR/gold.jsonl --pred DIR/predictions.jsonl` reproduces the report's P/R/F1.
    """

    model: str = flag(help="smollm2 | a .gguf | an HF folder, adapter or run directory | a hub name | the server's "
                      "model name with --base_url")
    data: str = flag(help="the dataset: canonical JSONL, SpERT JSON, open-r1-text2graph rows, examples, hf:owner/name")
    out: str = flag(help="the folder the report and predictions go to")
    limit: int | None = flag(None, "evaluate only the first N examples (None = all)")


def main(flags: Any) -> None:
    """`t2g evaluate` with its parsed EvaluateFlags."""
    report = evaluate(flags.model, flags.data, flags.out, flags.limit, **inference_settings(flags))
    print(f"entity F1 {report['entity']['f1']:.3f}, relation F1 {report['relation']['f1']:.3f}, "
          f"JSON valid {report['json_valid_rate']:.3f} on {report['n_examples']} examples "
          f"({report['timing']['sentences_per_s']:.2f} sentences/s); wrote {flags.out}/report.json, report.md, "
          "per_type_f1.png, predictions.jsonl, gold.jsonl", file=sys.stderr)
    print(f"view: {Path(flags.out) / VIEW}", file=sys.stderr)


def evaluate(
    model: str,
    data: str,
    out: str,
    limit: int | None = None,
    runtime: str = "auto",
    constrained: bool = False,
    *,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    reasoning: bool = False,
    progress: bool = True,
    **settings: Any,
) -> dict:
    """Evaluate `model` on `data`; writes the report files into `out` and returns the report.

    settings: the other keywords of `t2g.infer.extractor.Extractor` (base_url, chunk_size, n_ctx, ...).
    """
    examples = _load(data, limit)
    start = time.perf_counter()
    extractor = Extractor(model, runtime=runtime, constrained=constrained, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, reasoning=reasoning, **settings)
    load_s = time.perf_counter() - start
    requests = [make_request(ex.text, ex.entity_types, ex.relation_types, ex.type_descriptions) for ex in examples]
    start = time.perf_counter()
    with extractor:
        results = extractor.run(requests, progress=progress, desc="evaluate")
    generate_s = time.perf_counter() - start

    out_dir = Path(out)
    pred_path = out_dir / PREDICTIONS
    write_jsonl(out_dir / GOLD, examples)
    write_jsonl_atomic(pred_path, (prediction_row(ex, r) for ex, r in zip(examples, results)))
    report = build_report(examples, results, pred_path)
    spec = extractor.spec
    report["run"] = {
        "model": model, "resolved": asdict(spec), "runtime": spec.runtime, "constrained": constrained,
        "reasoning": reasoning, "prompt_version": PROMPT_VERSION, "data": str(data), "limit": limit,
        "max_new_tokens": max_new_tokens, "batch_size": batch_size, "decoding": "greedy", "versions": _versions(spec.runtime),
    }
    report["timing"] = {"load_s": load_s, "generate_s": generate_s,
                        "sentences_per_s": len(examples) / generate_s if generate_s > 0 else None}
    write_json_atomic(out_dir / REPORT_JSON, report)
    write_text_atomic(out_dir / REPORT_MD, render_markdown(report))
    write_chart(out_dir / CHART, report)
    write_view(out_dir / VIEW, pred_path, examples, title=f"{model} on {data}")
    return report


def _load(data: str, limit: int | None) -> list[Example]:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DataError(f"--limit={limit!r}: give a positive number of examples")
    examples = load_examples(data)
    if not examples:
        raise DataError(f"{data}: no examples to evaluate")
    return examples[:limit] if limit else examples


def prediction_row(example: Example, result: Extraction) -> dict:
    """A row `t2g score` reads: the raw completion (re-parsed there), or the merged graph of a chunked text;
    with the text and the located graph (offsets into the text) for people and `t2g view`."""
    row: dict[str, Any] = {"id": example.id, "text": example.text}
    if result.chunks > 1:
        row["graph"] = (result.graph or Graph()).to_dict(spans=True)
        row["chunk_completions"] = list(result.chunk_completions)
    else:
        row["graph"] = result.graph.to_dict(spans=True) if result.graph is not None else None
        row["completion"] = result.completion
    row["error"] = result.error
    if result.detail:
        row["detail"] = result.detail
    return row


def build_report(examples: Sequence[Example], results: Sequence[Extraction], pred_path: Path) -> dict:
    preds = read_predictions(pred_path)
    report = score_predictions(examples, preds, source=str(pred_path))
    if "json_valid_rate" not in report:  # every text was chunked: valid = every chunk parsed
        report["json_valid_rate"] = sum(r.ok for r in results) / len(results)
    graphs = [preds[ex.id]["graph"] for ex in examples]
    report["output"] = output_diagnostics(examples, graphs)
    report["empty_gold"] = empty_gold_accuracy(examples, graphs)
    reasons: dict[str, int] = {}
    for r in results:
        if r.error:
            reasons[r.error] = reasons.get(r.error, 0) + 1
    report["failures"] = dict(sorted(reasons.items()))
    return report


def output_diagnostics(examples: Sequence[Example], graphs: Sequence[Graph | None]) -> dict:
    """Rates over the predicted graphs that parsed: spans not in the text, types off the lists, dangling relations."""
    n_ent = n_rel = hallucinated = off_entities = off_relations = dangling = 0
    for ex, graph in zip(examples, graphs):
        if graph is None:
            continue
        n_ent += len(graph.entities)
        n_rel += len(graph.relations)
        ctx = TaskContext(ex.text, ex.entity_types, ex.relation_types)
        violations = validate_graph(graph, ctx)
        hallucinated += sum(v.kind == SPAN_NOT_IN_TEXT for v in violations)
        off_entities += sum(v.kind == UNKNOWN_ENTITY_TYPE for v in violations)
        off_relations += sum(v.kind == UNKNOWN_RELATION_TYPE for v in violations)
        dangling += len({v.path for v in violations if v.kind in (DANGLING_HEAD, DANGLING_TAIL)})
    return {
        "n_pred_entities": n_ent,
        "n_pred_relations": n_rel,
        "hallucinated_span_rate": _rate(hallucinated, n_ent),
        "out_of_schema_rate": _rate(off_entities + off_relations, n_ent + n_rel),
        "out_of_schema_entity_rate": _rate(off_entities, n_ent),
        "out_of_schema_relation_rate": _rate(off_relations, n_rel),
        "dangling_relation_rate": _rate(dangling, n_rel),
    }


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def empty_gold_accuracy(examples: Sequence[Example], graphs: Sequence[Graph | None]) -> dict:
    """Of the examples whose gold graph is empty: the share answered with a valid, empty graph.

    A completion that did not parse counts as wrong here (it is not the answer "nothing fits"),
    although the scorer counts it as an empty prediction.
    """
    hits = [graphs[i] is not None and graphs[i].is_empty for i, ex in enumerate(examples) if ex.graph.is_empty]
    return {"n": len(hits), "accuracy": sum(hits) / len(hits) if hits else None}


def _versions(runtime: str) -> dict:
    names = ["t2g", "transformers", "torch", "peft"] if runtime == "hf" else ["t2g"]
    names += ["llama_cpp_python"] if runtime == "llama.cpp" else []
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# --- rendering ------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def render_markdown(report: dict) -> str:
    run, timing, out = report["run"], report["timing"], report["output"]
    lines = [
        f"# t2g evaluation: `{run['model']}` on `{run['data']}`",
        "",
        f"runtime `{run['runtime']}`, constrained {run['constrained']}, prompt `{run['prompt_version']}`, "
        f"{report['n_examples']} examples, {timing['generate_s']:.1f} s "
        f"({timing['sentences_per_s'] or 0:.2f} sentences/s), greedy decoding",
        "",
        f"Every text with its predicted and gold graphs: [{VIEW}]({VIEW}).",
        "",
        "| micro (%) | precision | recall | F1 | tp | pred | gold |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("entity", "entity (strict)"), ("entity_boundaries", "entity (boundaries)"),
                       ("relation", "relation (strict)"), ("relation_boundaries", "relation (boundaries)")):
        c = report[key]
        lines.append(f"| {label} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | "
                     f"{c['tp']} | {c['n_pred']} | {c['n_gold']} |")
    lines += [
        "",
        "| output (%) | rate |",
        "|---|---:|",
        f"| JSON valid | {_pct(report['json_valid_rate'])} |",
        f"| hallucinated spans (of predicted entities) | {_pct(out['hallucinated_span_rate'])} |",
        f"| out-of-schema types (of predicted entities + relations) | {_pct(out['out_of_schema_rate'])} |",
        f"| dangling relations | {_pct(out['dangling_relation_rate'])} |",
        f"| empty-gold accuracy ({report['empty_gold']['n']} examples) | {_pct(report['empty_gold']['accuracy'])} |",
        "",
        "## Per type (strict)",
        "",
        "| kind | type | precision | recall | F1 | pred | gold |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("entity", "relation"):
        for name, c in report["per_type"][kind].items():
            lines.append(f"| {kind} | {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} | "
                         f"{c['n_pred']} | {c['n_gold']} |")
    if report["failures"]:
        lines += ["", "Failures: " + ", ".join(f"{k} {v}" for k, v in report["failures"].items())]
    return "\n".join(lines) + "\n"


def write_chart(path: Path, report: dict) -> None:
    """Horizontal bars of strict F1 per entity type and per relation type (matplotlib, no display)."""
    from matplotlib.figure import Figure  # a bare Figure needs no GUI backend and no pyplot state

    kinds = [k for k in ("entity", "relation") if report["per_type"][k]] or ["entity"]
    fig = Figure(figsize=(7, 1.2 + 0.35 * sum(max(1, len(report["per_type"][k])) for k in kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), 1, squeeze=False)[:, 0]
    for ax, kind in zip(axes, kinds):
        items = report["per_type"][kind]
        names = list(items)
        ax.barh(names, [100 * items[n]["f1"] for n in names], color="#4C72B0" if kind == "entity" else "#DD8452")
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.set_title(f"{kind} types: strict F1 (%)", fontsize=10)
        if not names:
            ax.text(50, 0, "no types", ha="center")
    fig.suptitle(f"{report['run']['model']} ({report['run']['runtime']}), {report['n_examples']} examples", fontsize=10)
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=100)
