"""Prediction files: rows `{"id", "graph"}` or `{"id", "completion"}`, paired with gold by id.

Raw completions go through the shared parser, so `t2g score` on saved completions gives exactly
the numbers evaluation reported when it produced them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from t2g.data.canonical import DataError, Example, iter_jsonl
from t2g.task.parsing import parse_completion
from t2g.task.schema import Graph, SchemaError
from t2g.task.scoring import CorpusScore, score_example


def read_predictions(path: str | os.PathLike) -> dict[str, dict]:
    """id -> {"graph": Graph | None, "error": str | None, "completion": bool}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such prediction file")
    preds: dict[str, dict] = {}
    for _, where, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)) or isinstance(row["id"], bool):
            raise DataError(f"{where}: a prediction row needs an 'id' (string) and a 'graph' or 'completion'")
        pid = str(row["id"])
        if pid in preds:
            raise DataError(f"{where}: duplicate prediction for id {pid!r}")
        if "completion" in row:
            if not isinstance(row["completion"], str):
                raise DataError(f"{where}: 'completion' must be a string (the raw model output)")
            parsed = parse_completion(row["completion"])
            preds[pid] = {"graph": parsed.graph, "error": parsed.error, "completion": True}
        elif "graph" in row:
            try:
                graph = Graph.from_dict(row["graph"], "graph")
            except SchemaError as exc:
                raise DataError(f"{where}: {exc}") from None
            preds[pid] = {"graph": graph, "error": None, "completion": False}
        else:
            raise DataError(f"{where}: a prediction row needs 'graph' or 'completion'")
    return preds


def check_ids(gold: Sequence[Example], preds: dict[str, dict], source: str) -> None:
    gold_ids = {ex.id for ex in gold}
    unknown = [pid for pid in preds if pid not in gold_ids]
    if unknown:
        raise DataError(f"{source}: {len(unknown)} prediction ids are not in the gold data (first: {unknown[0]!r}); wrong file pair?")


def paired_graphs(gold: Sequence[Example], preds: dict[str, dict], source: str = "predictions") -> Iterator[tuple[Graph | None, Graph]]:
    """(predicted graph, gold graph) in gold order; a gold id with no prediction pairs with an empty graph."""
    check_ids(gold, preds, source)
    for ex in gold:
        pred = preds.get(ex.id)
        yield (Graph() if pred is None else pred["graph"]), ex.graph


def score_predictions(gold: Sequence[Example], preds: dict[str, dict], source: str = "predictions") -> dict:
    """Corpus report; a gold id with no prediction counts as an empty prediction."""
    total = CorpusScore()
    for pred, gold_graph in paired_graphs(gold, preds, source):
        total.add(score_example(pred, gold_graph))
    found = [preds[ex.id] for ex in gold if ex.id in preds]
    completions = [p for p in found if p["completion"]]
    report = total.report()
    report["n_missing_predictions"] = len(gold) - len(found)
    if completions:
        report["json_valid_rate"] = 1 - sum(p["error"] is not None for p in completions) / len(completions)
    return report
