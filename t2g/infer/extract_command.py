"""`t2g extract`: one text from flags, or a JSONL file of texts in and a JSONL file of graphs out.

Input rows: {"text", "id"?, "entity_types"?, "relation_types"?, "type_descriptions"?}; rows without
their own type lists use the `--entity_types` / `--relation_types` flags. Output rows (written
atomically, in input order): {"id", "text", "graph" (null when none), "error", "detail", "completion"}
(`chunk_completions` instead of `completion` for texts that were chunked), so a file of texts that
have gold graphs can be re-scored with `t2g score` and looked at with `t2g view`. The graph's
entities carry "spans" ([start, end] offsets into "text", every occurrence, [] when the entity does
not occur) and its relations "head_spans" / "tail_spans" (`t2g.task.spans`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from t2g.data.canonical import DataError, iter_jsonl
from t2g.files import write_jsonl_atomic
from t2g.flags import flag
from t2g.infer.extractor import Extractor
from t2g.infer.options import inference_flags, inference_settings
from t2g.infer.runner import Extraction, make_request


@inference_flags
@dataclass
class ExtractFlags:
    """Extract graphs: one text from flags (prints a JSON row), or a JSONL file in and out.

    Examples:
      t2g extract --text "Tim Cook runs Apple." --entity_types person,organization --relation_types "works for"
      t2g extract --input texts.jsonl --output graphs.jsonl --entity_types person,location --relation_types "live in"
      t2g extract --model runs/my-run --runtime hf --input texts.jsonl --output graphs.jsonl
      t2g extract --model teacher --base_url http://127.0.0.1:8000/v1 --input texts.jsonl --output graphs.jsonl
    Input rows: {"text", "id"?, "entity_types"?, "relation_types"?, "type_descriptions"?}; the type flags are
    the default for rows without their own. Output rows: {"id", "text", "graph" (null when none; entities with
    "spans": [[start, end], ...] into "text"), "error", "detail", "completion"}. With --text the exit status is 1
    when no graph came out.
    """

    text: str | None = flag(None, "one text to extract from (prints one JSON row); or --input")
    input: str | None = flag(None, "a JSONL file of texts, one {\"text\": ...} object a line (needs --output)")
    output: str | None = flag(None, "where the JSONL rows of graphs go")
    entity_types: list[str] | None = flag(None, "comma-separated entity types (rows may bring their own)")
    relation_types: list[str] | None = flag(None, "comma-separated relation types (rows may bring their own)")
    model: str = flag("smollm2", "smollm2 | a .gguf | an HF folder, adapter or run directory | a hub name | the "
                      "server's model name with --base_url")


def main(flags: Any) -> None:
    """`t2g extract` with its parsed ExtractFlags."""
    text, input, output = flags.text, flags.input, flags.output
    if (text is None) == (input is None):
        raise DataError("give either --text (one text) or --input (a JSONL file, with --output)")
    if input is not None and not output:
        raise DataError("--input needs --output (where the graphs go)")
    if text is not None:
        if flags.entity_types is None or flags.relation_types is None:
            raise DataError("--text needs --entity_types and --relation_types (comma-separated)")
        rows = [("text", make_request(text, flags.entity_types, flags.relation_types))]
    else:
        rows = read_inputs(input, flags.entity_types, flags.relation_types)
    with Extractor(flags.model, **inference_settings(flags)) as extractor:
        results = extractor.run([request for _, request in rows], progress=True)
    out_rows = [output_row(row_id, request.text, result) for (row_id, request), result in zip(rows, results)]
    if text is not None:
        print(json.dumps(out_rows[0], ensure_ascii=False))
        if out_rows[0]["graph"] is None:
            sys.exit(1)
        return
    write_jsonl_atomic(output, out_rows)
    failed = sum(r["graph"] is None for r in out_rows)
    print(f"wrote {len(out_rows)} rows to {output} ({failed} without a graph)", file=sys.stderr)


def output_row(row_id: str, text: str, result: Extraction) -> dict:
    """One output row; the graph with its offsets into `text` (the runner located it there)."""
    row: dict[str, Any] = {"id": row_id, "text": text,
                           "graph": result.graph.to_dict(spans=True) if result.graph is not None else None,
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
