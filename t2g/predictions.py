"""Prediction files: rows `{"id", "graph"}` or `{"id", "completion"}`, paired with gold by id.

Raw completions go through the shared parser, so `t2g score` on saved completions gives exactly
the numbers evaluation reported when it produced them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from t2g.data import DataError, Example, iter_jsonl
from t2g.parsing import parse_completion
from t2g.schema import Graph, SchemaError
from t2g.scoring import CorpusScore, score_example


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


def score_predictions(gold: Sequence[Example], preds: dict[str, dict], source: str = "predictions") -> dict:
    """Corpus report; a gold id with no prediction counts as an empty prediction."""
    gold_ids = {ex.id for ex in gold}
    unknown = [pid for pid in preds if pid not in gold_ids]
    if unknown:
        raise DataError(f"{source}: {len(unknown)} prediction ids are not in the gold data (first: {unknown[0]!r}); wrong file pair?")
    total = CorpusScore()
    missing = parse_failures = n_completions = 0
    for ex in gold:
        pred = preds.get(ex.id)
        if pred is None:
            missing += 1
            total.add(score_example(Graph(), ex.graph))
            continue
        n_completions += pred["completion"]
        parse_failures += pred["error"] is not None
        total.add(score_example(pred["graph"], ex.graph))
    report = total.report()
    report["n_missing_predictions"] = missing
    if n_completions:
        report["json_valid_rate"] = 1 - parse_failures / n_completions
    return report
