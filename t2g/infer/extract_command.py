"""`t2g extract`: one text from flags, or a JSONL file of texts in and a JSONL file of graphs out.

Input rows: {"text", "id"?, "entity_types"?, "relation_types"?, "type_descriptions"?}; rows without
their own type lists use the `--entity_types` / `--relation_types` flags. Output rows (written
atomically, in input order): {"id", "graph" (null when none), "error", "detail", "completion"}
(`chunk_completions` instead of `completion` for texts that were chunked), so a file of texts that
have gold graphs can be re-scored with `t2g score`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from t2g.data.canonical import DataError, iter_jsonl
from t2g.infer.extractor import Extraction, Extractor, make_request, open_backend, progress_bar, resolve_model
from t2g.files import write_jsonl_atomic


def output_row(row_id: str, result: Extraction) -> dict:
    row: dict[str, Any] = {"id": row_id, "graph": result.graph.to_dict() if result.graph is not None else None,
                           "error": result.error, "detail": result.detail}
    if result.chunks > 1:
        row["chunk_completions"] = list(result.chunk_completions)
    else:
        row["completion"] = result.completion
    return row


def read_inputs(path: str, entity_types: Sequence[str] | None, relation_types: Sequence[str] | None) -> list[tuple[str, Any]]:
    """(id, request) per row; the first bad row raises DataError naming the file, line and field."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"--input={path}: no such file (give a JSONL file with one {{\"text\": ...}} object per line)")
    rows: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for lineno, where, row in iter_jsonl(source):
        rows.append(_row_request(row, where, lineno, entity_types, relation_types, seen))
    if not rows:
        raise DataError(f"--input={path}: no rows")
    return rows


def _row_request(row: Any, where: str, lineno: int, entity_types, relation_types, seen: set[str]) -> tuple[str, Any]:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
        raise DataError(f"{where}: a row needs a non-empty string 'text'")
    row_id = str(row.get("id", lineno))
    if row_id in seen:
        raise DataError(f"{where}: duplicate id {row_id!r}; ids must be unique")
    seen.add(row_id)
    types = {}
    for name, default in (("entity_types", entity_types), ("relation_types", relation_types)):
        value = row.get(name, default)
        if value is None:
            raise DataError(f"{where}: no '{name}' in the row and no --{name} flag; give one of them")
        if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
            raise DataError(f"{where}: '{name}' must be a list of non-empty strings")
        types[name] = value
    descriptions = row.get("type_descriptions") or {}
    if not isinstance(descriptions, dict):
        raise DataError(f"{where}: 'type_descriptions' must map type names to strings")
    return row_id, make_request(row["text"], types["entity_types"], types["relation_types"], descriptions)


def run(*, text: str | None, entity_types: Sequence[str] | None, relation_types: Sequence[str] | None,
        input: str | None, output: str | None, model: str, backend: str, constrained: bool, base_url: str | None,
        base_model: str | None, max_new_tokens: int, batch_size: int, chunk_size: int | None, reasoning: bool,
        flags: Mapping[str, Any]) -> None:
    if (text is None) == (input is None):
        raise DataError("give either --text (one text) or --input (a JSONL file, with --output)")
    if input is not None and not output:
        raise DataError("--input needs --output (where the graphs go)")
    if text is not None:
        if entity_types is None or relation_types is None:
            raise DataError("--text needs --entity_types and --relation_types (comma-separated)")
        rows = [("text", make_request(str(text), entity_types, relation_types))]
    else:
        rows = read_inputs(input, entity_types, relation_types)
    spec = resolve_model(model, backend, base_url, base_model)
    backend_ = open_backend(spec, flags, base_url=base_url, batch_size=batch_size, constrained=constrained)
    runner = Extractor(backend_, max_new_tokens, constrained, reasoning, batch_size, chunk_size)
    with progress_bar(len(rows), "extract") as bar:
        results = runner.run([request for _, request in rows], progress=bar.update)
    out_rows = [output_row(row_id, result) for (row_id, _), result in zip(rows, results)]
    if text is not None:
        print(json.dumps(out_rows[0], ensure_ascii=False))
        if out_rows[0]["graph"] is None:
            sys.exit(1)
        return
    write_jsonl_atomic(output, out_rows)
    failed = sum(r["graph"] is None for r in out_rows)
    print(f"wrote {len(out_rows)} rows to {output} ({failed} without a graph)", file=sys.stderr)
