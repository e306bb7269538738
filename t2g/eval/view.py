"""`t2g view`: a predictions file (and its gold) as one HTML page a person can check by eye.

    t2g view --pred eval/run/predictions.jsonl --gold eval/run/gold.jsonl --out eval/run/view.html
    t2g view --pred graphs.jsonl --out graphs.html          # `t2g extract` output: the rows carry their text

One self-contained file (CSS and script inline, nothing fetched): each text with its entities
highlighted at their character offsets, one stable colour per entity type, the relations listed
under it (hovering or clicking one highlights both endpoints). With gold, every entity and relation
is marked correct, missed or spurious by the scorer's strict keys (`t2g.task.scoring`), and each
text has its own F1. Filters (only rows with errors, by type), a search box, pages of `--page_size`
rows (a page is drawn only when shown, so files of thousands of rows stay quick) and one anchor per
row (`view.html#row-<id>`, so a report can link to a sentence).

Prediction rows are those `t2g extract` and `t2g evaluate` write: {"id", "text"?, "graph" |
"completion"}. A row's "graph" is shown as it is, with the "spans" it states; a row with only a
completion is parsed with the task's parser, and entities without "spans" are located with the
one rule (`t2g.task.spans`), as gold entities are. Every text reaches the page as data and is drawn
with `textContent`, never as markup. A bad row fails with one line naming the file and line.
"""

from __future__ import annotations

import hashlib
import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from t2g.data.canonical import DataError, Example, iter_jsonl
from t2g.data.load import load_examples
from t2g.eval.view_page import PAGE
from t2g.files import write_text_atomic
from t2g.flags import FlagError, flag
from t2g.task.parsing import parse_completion
from t2g.task.schema import Graph, SchemaError, normalize
from t2g.task.scoring import CorpusScore, GraphKeys, score_example
from t2g.task.spans import SpanIndex

CORRECT, MISSED, SPURIOUS = "correct", "missed", "spurious"
_SHOWN_COMPLETION = 4000  # characters of a completion that gave no graph, shown for the reader


@dataclass
class ViewFlags:
    """Write one self-contained HTML page from a predictions file (and its gold): highlighted entities,
    relations, correct / missed / spurious marks with gold, filters, search, per-row anchors.

    Example: t2g view --pred eval/run/predictions.jsonl --gold eval/run/gold.jsonl --out eval/run/view.html
    """

    pred: str = flag(help="predictions: JSONL rows {id, text?, graph | completion} (t2g extract / t2g evaluate)")
    out: str = flag(help="the HTML file to write")
    gold: str | None = flag(None, "the gold dataset (any format `t2g convert` reads): marks each item correct, "
                            "missed or spurious and gives each text its F1")
    page_size: int = flag(50, "rows drawn per page")
    title: str | None = flag(None, "the page title (default: the predictions file's name)")

    def __post_init__(self) -> None:
        if self.page_size < 1:
            raise FlagError(f"--page_size={self.page_size}: give a positive number of rows per page")


def main(flags: ViewFlags) -> None:
    """`t2g view` with its parsed ViewFlags."""
    n = write_view(flags.out, flags.pred, flags.gold, title=flags.title, page_size=flags.page_size)
    print(f"wrote {flags.out} ({n} rows)", file=sys.stderr)


def write_view(out: str | Path, pred: str | Path, gold: str | Path | Sequence[Example] | None = None, *,
               title: str | None = None, page_size: int = 50) -> int:
    """Write the page for `pred` (and `gold`: a dataset file or the examples themselves); returns its rows."""
    examples = _gold_examples(gold) if isinstance(gold, (str, Path)) else gold
    data = page_data(read_rows(pred), examples, page_size)
    data["title"] = title or Path(pred).name
    write_text_atomic(out, render(data))
    return len(data["rows"])


def read_rows(path: str | Path) -> list[tuple[str, dict]]:
    """(`file:line`, row) for each prediction row; DataError naming the file and line for a row without an id."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such prediction file")
    rows, seen = [], set()
    for _, where, row in iter_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)) or isinstance(row["id"], bool):
            raise DataError(f"{where}: a prediction row needs an 'id' (string) and a 'graph' or 'completion'")
        if str(row["id"]) in seen:
            raise DataError(f"{where}: duplicate prediction for id {str(row['id'])!r}")
        seen.add(str(row["id"]))
        rows.append((where, row))
    return rows


def _gold_examples(path: str | Path) -> list[Example]:
    if not Path(path).is_file():
        raise DataError(f"{path}: no such gold file")
    return load_examples(path)


def page_data(rows: Sequence[tuple[str, dict]], gold: Sequence[Example] | None, page_size: int = 50) -> dict:
    """What the page's script draws: one entry per text (gold order with gold), type colours, totals."""
    gold_by_id = {ex.id: ex for ex in gold} if gold is not None else None
    found: dict[str, tuple[str, dict]] = {}
    for where, row in rows:
        pid = str(row["id"])
        if gold_by_id is not None and pid not in gold_by_id:
            raise DataError(f"{where}: id {pid!r} is not in the gold data; wrong file pair?")
        found[pid] = (where, row)
    total = CorpusScore() if gold is not None else None
    out = []
    order = [ex.id for ex in gold] if gold is not None else list(found)
    for pid in order:
        example = gold_by_id[pid] if gold_by_id is not None else None
        where, row = found.get(pid, ("", None))
        entry, score = _entry(pid, where, row, example)
        if total is not None:
            total.add(score)
        out.append(entry)
    types = list(dict.fromkeys(t for r in out for t in r["etypes"]))
    report = total.report() if total is not None else None
    return {
        "rows": out, "page_size": page_size, "gold": gold is not None,
        "colours": {t: type_colour(t) for t in types},
        "types": types + [t for t in dict.fromkeys(t for r in out for t in r["rtypes"]) if t not in types],
        "totals": None if report is None else {"entity_f1": report["entity"]["f1"], "relation_f1": report["relation"]["f1"]},
    }


def _entry(pid: str, where: str, row: dict | None, example: Example | None) -> tuple[dict, Any]:
    text = _text(where, row, example, pid)
    index = SpanIndex(text)
    graph, error, detail, completion = _prediction(where, row)
    ents, rels = [], []
    if graph is not None:
        raw_ents, raw_rels = _raw(row, "entities"), _raw(row, "relations")
        for i, e in enumerate(graph.entities):
            raw = raw_ents[i] if i < len(raw_ents) else {}
            ents.append({"t": e.text, "y": e.type, "s": _spans(where, raw, "spans", index, e.text)})
        for i, r in enumerate(graph.relations):
            raw = raw_rels[i] if i < len(raw_rels) else {}
            rels.append({"h": r.head, "t": r.tail, "y": r.type, "hs": _spans(where, raw, "head_spans", index, r.head),
                         "ts": _spans(where, raw, "tail_spans", index, r.tail)})
    score = None
    if example is not None:
        score = score_example(graph, example.graph)
        _mark(graph, example.graph, ents, rels, index)
    entry = {"id": pid, "text": text, "error": error, "detail": detail, "ents": ents, "rels": rels,
             "etypes": list(dict.fromkeys(e["y"] for e in ents)), "rtypes": list(dict.fromkeys(r["y"] for r in rels))}
    if graph is None and completion:
        entry["completion"] = completion[:_SHOWN_COMPLETION]
    if score is not None:
        entry["f1"] = [score.entity.f1, score.relation.f1]
    entry["bad"] = bool(error) or any(x.get("k", CORRECT) != CORRECT or not x["s"] for x in ents) or \
        any(x.get("k", CORRECT) != CORRECT for x in rels)
    return entry, score


def _text(where: str, row: dict | None, example: Example | None, pid: str) -> str:
    text = row.get("text") if row is not None else None
    if text is not None and not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string")
    if example is not None:
        if text is not None and text != example.text:
            raise DataError(f"{where}: the text of id {pid!r} differs from the gold text; wrong file pair?")
        return example.text
    if text is None:
        raise DataError(f"{where}: the row has no 'text'; give --gold to take the texts from the gold data")
    return text


def _prediction(where: str, row: dict | None) -> tuple[Graph | None, str | None, str, str]:
    """(graph, error, detail, completion) of a row; no row at all is the scorer's empty prediction."""
    if row is None:
        return Graph(), "no_prediction", "no row for this id in the predictions file", ""
    completion = row.get("chunk_completions") or row.get("completion") or ""
    completion = "\n\n".join(map(str, completion)) if isinstance(completion, list) else str(completion)
    error, detail = row.get("error"), str(row.get("detail") or "")
    if isinstance(row.get("graph"), dict):
        try:
            return Graph.from_dict(row["graph"], "graph"), error, detail, completion
        except SchemaError as exc:
            raise DataError(f"{where}: {exc}") from None
    if isinstance(row.get("completion"), str):
        parsed = parse_completion(row["completion"])
        return parsed.graph, error or parsed.error, detail or parsed.detail, completion
    if "graph" in row and row["graph"] is None:
        return None, error or "no_graph", detail, completion
    raise DataError(f"{where}: a prediction row needs 'graph' or 'completion'")


def _raw(row: dict | None, key: str) -> list:
    """The row's own entity / relation dicts (for the spans they state); [] for a parsed completion."""
    graph = row.get("graph") if row is not None else None
    items = graph.get(key) if isinstance(graph, dict) else None
    return items if isinstance(items, list) else []


def _spans(where: str, raw: Any, key: str, index: SpanIndex, mention: str) -> list[list[int]]:
    """The spans a row states for `mention` (checked to lie in its text), else those the one rule finds."""
    if not isinstance(raw, dict) or key not in raw:
        return _located(index, mention)
    value, n = raw[key], len(index.text)
    ok = isinstance(value, list) and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in p)
        and 0 <= p[0] < p[1] <= n for p in value)
    if not ok:
        raise DataError(f"{where}: '{key}' of {mention!r} must be a list of [start, end] offsets within its text "
                        f"(0 <= start < end <= {n}), got {json.dumps(value)[:80]}")
    return value


def _located(index: SpanIndex, mention: str) -> list[list[int]]:
    return [[start, end] for start, end in index.find(mention)]


def _mark(pred: Graph | None, gold: Graph, ents: list[dict], rels: list[dict], index: SpanIndex) -> None:
    """Each predicted item correct or spurious, and the gold items the prediction lacks added as
    missed, all by the scorer's own strict keys (a relation's key takes its endpoints' types from
    the same graph's entities, exactly as `t2g.task.scoring` does)."""
    pred = pred or Graph()
    pred_keys, gold_keys = GraphKeys.of(pred), GraphKeys.of(gold)
    for item, ent in zip(ents, pred.entities):
        item["k"] = CORRECT if _entity_key(ent) in gold_keys.entities else SPURIOUS
    for item, rel in zip(rels, pred.relations):
        item["k"] = CORRECT if _relation_key(pred, rel) in gold_keys.relations else SPURIOUS
    missed: set = set()  # a gold item repeated in the gold graph is missed once (the scorer counts sets)
    for ent in gold.entities:
        if (key := _entity_key(ent)) not in pred_keys.entities and key not in missed:
            missed.add(key)
            ents.append({"t": ent.text, "y": ent.type, "s": _located(index, ent.text), "k": MISSED})
    for rel in gold.relations:
        if (key := _relation_key(gold, rel)) not in pred_keys.relations and key not in missed:
            missed.add(key)
            rels.append({"h": rel.head, "t": rel.tail, "y": rel.type, "hs": _located(index, rel.head),
                         "ts": _located(index, rel.tail), "k": MISSED})


def _entity_key(ent: Any) -> tuple:
    return next(iter(GraphKeys.of(Graph((ent,), ())).entities))


def _relation_key(graph: Graph, rel: Any) -> tuple:
    return next(iter(GraphKeys.of(Graph(graph.entities, (rel,))).relations))


def type_colour(name: str) -> str:
    """A stable colour per type: a hue from a hash of the type's normal form, the same on every page."""
    hue = int(hashlib.sha1(normalize(name).encode("utf-8")).hexdigest()[:8], 16) % 360
    return f"hsl({hue}, 70%, 80%)"


def render(data: dict) -> str:
    """The page: the data as JSON inside a script element, every `<`, `>` and `&` escaped so that no
    text can close it; the page's script draws everything else with textContent."""
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    blob = blob.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    before, after = PAGE.split("%DATA%")  # split, not replace: a title may hold any text
    return before.replace("%TITLE%", html.escape(data["title"])) + blob + after
