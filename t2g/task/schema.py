"""The graph that t2g extracts: entities, relations, validation, canonical JSON.

A graph is `{"entities": [{"text", "type"}], "relations": [{"head", "tail", "type"}]}` where a
relation's head and tail are entity *texts* (not ids): small models copy strings far more
reliably than they keep id bookkeeping straight.

Comparisons (types, spans, endpoints) go through `normalize`, the one normalisation the whole
project uses, so that validation, rewards and evaluation agree on what "the same" means. Whether a
span occurs in the text, and where, is `t2g.task.spans` (one rule for validation, rewards and the
offsets inference writes). Those offsets ride on the objects (`Entity.spans`, `Relation.head_spans`,
`Relation.tail_spans`; `locate`) but are derived, never compared and never part of the canonical
JSON: `to_dict(spans=True)` adds them to output rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

# `normalize` is defined beside the span finder it drives (spans import nothing of this module);
# `t2g.task.schema.normalize` stays its public name.
from t2g.task.spans import Span, SpanIndex, normalize


class SchemaError(ValueError):
    """A value is not a graph; `path` says where (e.g. `entities[3].type`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Entity:
    text: str
    type: str
    spans: tuple[Span, ...] = field(default=(), compare=False)  # where `text` occurs (filled by `locate`)


@dataclass(frozen=True)
class Relation:
    head: str
    tail: str
    type: str
    head_spans: tuple[Span, ...] = field(default=(), compare=False)  # the head's occurrences (`locate`)
    tail_spans: tuple[Span, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Graph:
    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()

    @classmethod
    def from_dict(cls, obj: Any, path: str = "") -> "Graph":
        """Build a graph from parsed JSON; raises SchemaError naming the first bad field."""
        prefix = f"{path}." if path else ""
        if not isinstance(obj, dict):
            raise SchemaError(path, f"expected an object with 'entities' and 'relations', got {_kind(obj)}")
        for key in ("entities", "relations"):
            if key not in obj:
                raise SchemaError(path, f"missing key '{key}'")
            if not isinstance(obj[key], list):
                raise SchemaError(f"{prefix}{key}", f"expected a list, got {_kind(obj[key])}")
        entities = tuple(
            Entity(**_fields(item, ("text", "type"), f"{prefix}entities[{i}]"))
            for i, item in enumerate(obj["entities"])
        )
        relations = tuple(
            Relation(**_fields(item, ("head", "tail", "type"), f"{prefix}relations[{i}]"))
            for i, item in enumerate(obj["relations"])
        )
        return cls(entities, relations)

    def to_dict(self, spans: bool = False) -> dict:
        """The canonical dict; `spans=True` adds each entity's "spans" and each relation's
        "head_spans" / "tail_spans" as [start, end] lists, as `locate` filled them (output rows,
        never training targets)."""
        if not spans:
            return {
                "entities": [{"text": e.text, "type": e.type} for e in self.entities],
                "relations": [{"head": r.head, "tail": r.tail, "type": r.type} for r in self.relations],
            }
        return {
            "entities": [{"text": e.text, "type": e.type, "spans": _lists(e.spans)} for e in self.entities],
            "relations": [{"head": r.head, "tail": r.tail, "type": r.type, "head_spans": _lists(r.head_spans),
                           "tail_spans": _lists(r.tail_spans)} for r in self.relations],
        }

    def to_json(self) -> str:
        """Canonical rendering: fixed key order, one line, non-ASCII kept as is."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @property
    def is_empty(self) -> bool:
        return not self.entities and not self.relations

    def deduplicated(self) -> "Graph":
        """The graph as the set it is: a repeated entity (same normalised text and type) or relation
        (same normalised head, type and tail) collapses to its first occurrence. The keys are those of
        `validate_graph`'s duplicate checks, so a deduplicated graph never earns their penalty."""
        seen_e: set[tuple[str, str]] = set()
        seen_r: set[tuple[str, str, str]] = set()
        entities = [e for e in self.entities
                    if not ((k := (normalize(e.text), normalize(e.type))) in seen_e or seen_e.add(k))]
        relations = [r for r in self.relations
                     if not ((k := (normalize(r.head), normalize(r.type), normalize(r.tail))) in seen_r or seen_r.add(k))]
        if len(entities) == len(self.entities) and len(relations) == len(self.relations):
            return self
        return Graph(tuple(entities), tuple(relations))


EMPTY_GRAPH = Graph()


def locate(graph: Graph, text: str | SpanIndex) -> Graph:
    """`graph` with every entity's spans in `text` and every relation's endpoint spans filled in
    (`t2g.task.spans.find_spans`; [] where a string does not occur)."""
    index = text if isinstance(text, SpanIndex) else SpanIndex(text)
    found: dict[str, tuple[Span, ...]] = {}

    def spans(s: str) -> tuple[Span, ...]:
        if s not in found:
            found[s] = tuple(index.find(s))
        return found[s]

    return Graph(tuple(replace(e, spans=spans(e.text)) for e in graph.entities),
                 tuple(replace(r, head_spans=spans(r.head), tail_spans=spans(r.tail)) for r in graph.relations))


def _lists(spans: Iterable[Span]) -> list[list[int]]:
    return [[start, end] for start, end in spans]


def _kind(value: Any) -> str:
    return type(value).__name__ if value is not None else "null"


def _fields(item: Any, names: Sequence[str], path: str) -> dict[str, str]:
    if not isinstance(item, dict):
        raise SchemaError(path, f"expected an object with keys {list(names)}, got {_kind(item)}")
    out = {}
    for name in names:
        if name not in item:
            raise SchemaError(f"{path}.{name}", "missing")
        value = item[name]
        if not isinstance(value, str):
            raise SchemaError(f"{path}.{name}", f"expected a string, got {_kind(value)}")
        if not value.strip():
            raise SchemaError(f"{path}.{name}", "empty string")
        out[name] = value
    return out


# --- validation against the task: given types and the source text ---------------------------

UNKNOWN_ENTITY_TYPE = "unknown_entity_type"
UNKNOWN_RELATION_TYPE = "unknown_relation_type"
SPAN_NOT_IN_TEXT = "span_not_in_text"
DANGLING_HEAD = "dangling_head"
DANGLING_TAIL = "dangling_tail"
DUPLICATE_ENTITY = "duplicate_entity"
DUPLICATE_RELATION = "duplicate_relation"


@dataclass(frozen=True)
class Violation:
    kind: str
    path: str  # e.g. "entities[2]"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} ({self.kind})"


@dataclass
class TaskContext:
    """The normalised view of one task (text + allowed types), computed once and reused."""

    text: str
    entity_types: Sequence[str]
    relation_types: Sequence[str]
    spans: SpanIndex = field(init=False)
    norm_text: str = field(init=False)
    norm_entity_types: frozenset[str] = field(init=False)
    norm_relation_types: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.spans = SpanIndex(self.text)
        self.norm_text = self.spans.norm
        self.norm_entity_types = frozenset(normalize(t) for t in self.entity_types)
        self.norm_relation_types = frozenset(normalize(t) for t in self.relation_types)

    def grounded(self, span: str) -> bool:
        """Does `span` occur in the text? `t2g.task.spans`' rule, the one inference's offsets use."""
        return self.spans.grounded(span)


def validate_graph(
    graph: Graph,
    text: str | TaskContext,
    entity_types: Iterable[str] = (),
    relation_types: Iterable[str] = (),
) -> list[Violation]:
    """Every way `graph` breaks the task's contract; empty when it is a valid answer."""
    ctx = text if isinstance(text, TaskContext) else TaskContext(text, list(entity_types), list(relation_types))
    violations: list[Violation] = []
    seen_entities: set[tuple[str, str]] = set()
    entity_texts: set[str] = set()
    for i, ent in enumerate(graph.entities):
        path = f"entities[{i}]"
        key = (normalize(ent.text), normalize(ent.type))
        if key[1] not in ctx.norm_entity_types:
            violations.append(Violation(UNKNOWN_ENTITY_TYPE, path, f"type {ent.type!r} is not one of the given entity types"))
        if not ctx.grounded(ent.text):
            violations.append(Violation(SPAN_NOT_IN_TEXT, path, f"span {ent.text!r} does not occur in the text"))
        if key in seen_entities:
            violations.append(Violation(DUPLICATE_ENTITY, path, f"entity ({ent.text!r}, {ent.type!r}) repeats"))
        seen_entities.add(key)
        entity_texts.add(key[0])
    seen_relations: set[tuple[str, str, str]] = set()
    for i, rel in enumerate(graph.relations):
        path = f"relations[{i}]"
        key = (normalize(rel.head), normalize(rel.type), normalize(rel.tail))
        if key[1] not in ctx.norm_relation_types:
            violations.append(Violation(UNKNOWN_RELATION_TYPE, path, f"type {rel.type!r} is not one of the given relation types"))
        if key[0] not in entity_texts:
            violations.append(Violation(DANGLING_HEAD, path, f"head {rel.head!r} is not an extracted entity"))
        if key[2] not in entity_texts:
            violations.append(Violation(DANGLING_TAIL, path, f"tail {rel.tail!r} is not an extracted entity"))
        if key in seen_relations:
            violations.append(Violation(DUPLICATE_RELATION, path, f"relation ({rel.head!r}, {rel.type!r}, {rel.tail!r}) repeats"))
        seen_relations.add(key)
    return violations
