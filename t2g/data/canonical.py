"""The canonical dataset format: one example per JSONL row, validated, read and written.

One JSON object per line:

    {"id": str, "text": str, "entity_types": [str], "relation_types": [str],
     "graph": {"entities": [{"text", "type"}], "relations": [{"head", "tail", "type"}]}}

Optional fields: "reasoning" (a trace for the `<think>` block in SFT targets) and
"type_descriptions" ({type: short description}, rendered into the prompt).

A graph is a set: an `Example` holds its gold graph deduplicated (`Graph.deduplicated`), however it
was built (a canonical row, a converter, augmentation), so that the SFT target rendered from it, the
rewards and the scorer agree. Datasets that list each mention (CoNLL04 repeats "American" where the
sentence does) would otherwise teach a target that GRPO's `consistency` reward charges for.

Errors name the file, the line and the field, and say what to do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from t2g.files import write_jsonl_atomic
from t2g.task.parsing import THINK_CLOSE, THINK_OPEN
from t2g.task.schema import Graph, SchemaError, validate_graph


class DataError(ValueError):
    """A dataset file or row is not usable; the message says where and what to do."""


@dataclass
class Example:
    id: str
    text: str
    entity_types: list[str]
    relation_types: list[str]
    graph: Graph
    reasoning: str | None = None
    type_descriptions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.graph = self.graph.deduplicated()

    def to_dict(self) -> dict:
        row: dict[str, Any] = {
            "id": self.id,
            "text": self.text,
            "entity_types": list(self.entity_types),
            "relation_types": list(self.relation_types),
            "graph": self.graph.to_dict(),
        }
        if self.reasoning is not None:
            row["reasoning"] = self.reasoning
        if self.type_descriptions:
            row["type_descriptions"] = dict(self.type_descriptions)
        return row

    @classmethod
    def from_dict(cls, row: Any, where: str = "row") -> "Example":
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")

        def need(name: str, kind: type) -> Any:
            if name not in row:
                raise DataError(f"{where}: missing field '{name}' (canonical rows need id, text, entity_types, relation_types, graph)")
            value = row[name]
            if not isinstance(value, kind):
                raise DataError(f"{where}: field '{name}' must be a {kind.__name__}, got {type(value).__name__}")
            return value

        if "id" not in row:
            raise DataError(f"{where}: missing field 'id' (canonical rows need id, text, entity_types, relation_types, graph)")
        ex_id = row["id"]
        if isinstance(ex_id, int) and not isinstance(ex_id, bool):
            ex_id = str(ex_id)
        if not isinstance(ex_id, str) or not ex_id:
            raise DataError(f"{where}: field 'id' must be a non-empty string")
        text = need("text", str)
        if not text.strip():
            raise DataError(f"{where}: field 'text' is empty")
        types = {}
        for name in ("entity_types", "relation_types"):
            values = need(name, list)
            bad = [v for v in values if not isinstance(v, str) or not v.strip()]
            if bad:
                raise DataError(f"{where}: field '{name}' must hold non-empty strings, found {bad[0]!r}")
            types[name] = values
        try:
            graph = Graph.from_dict(need("graph", dict), "graph")
        except SchemaError as exc:
            raise DataError(f"{where}: field {exc}") from None
        reasoning = row.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise DataError(f"{where}: field 'reasoning' must be a string or absent")
        if reasoning is not None and (THINK_OPEN in reasoning or THINK_CLOSE in reasoning):
            # it goes inside <think>...</think> in the SFT target; a tag in it would break that target
            raise DataError(f"{where}: field 'reasoning' must not contain {THINK_OPEN} or {THINK_CLOSE}")
        descriptions = row.get("type_descriptions") or {}
        if isinstance(descriptions, dict):  # rows from Arrow (HF datasets) carry every row's keys, None where absent
            descriptions = {k: v for k, v in descriptions.items() if v is not None}
        if not isinstance(descriptions, dict) or not all(isinstance(v, str) for v in descriptions.values()):
            raise DataError(f"{where}: field 'type_descriptions' must map type names to strings")
        return cls(ex_id, text, types["entity_types"], types["relation_types"], graph, reasoning, descriptions)

    def violations(self):
        """How the gold graph breaks the task contract (should be none for clean data)."""
        return validate_graph(self.graph, self.text, self.entity_types, self.relation_types)


def read_jsonl(path: str | os.PathLike) -> list[Example]:
    """Read canonical JSONL; the first bad line raises DataError naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (give a canonical .jsonl, a SpERT .json, or a hub dataset name)")
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, where, row in iter_jsonl(path):
        ex = Example.from_dict(row, where)
        if ex.id in seen:
            raise DataError(f"{where}: duplicate id {ex.id!r} (first on line {seen[ex.id]}); ids must be unique")
        seen[ex.id] = lineno
        examples.append(ex)
    return examples


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, str, Any]]:
    """(line number, `file:line`, parsed value) for each non-blank line; DataError naming the line when it is not
    UTF-8 or not JSON. The one JSONL reader behind datasets, predictions and extraction inputs."""
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            line = decode_line(raw, where)
            if not line.strip():
                continue
            try:
                yield lineno, where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object") from None


def decode_line(raw: bytes, where: str) -> str:
    """One line of a UTF-8 text file (a byte-order mark is tolerated); DataError naming the line if not UTF-8."""
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8") from None


def write_jsonl(path: str | os.PathLike, examples: Iterable[Example]) -> int:
    return write_jsonl_atomic(path, (_writable(ex) for ex in examples))


def _writable(ex: Example) -> dict:
    row = ex.to_dict()
    try:  # a JSON escape like "\ud800" decodes to a lone surrogate, which UTF-8 cannot hold
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"example {ex.id!r}: holds {exc.object[exc.start:exc.end]!r}, an unpaired UTF-16 surrogate; fix the source data") from None
    return row
