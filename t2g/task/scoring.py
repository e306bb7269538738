"""The one scorer: rewards, evaluation, `t2g score` and the benchmarks all call this module.

Matching is on normalised strings (`t2g.task.schema.normalize`) and on sets, so duplicates collapse.

- strict entity:      (text, entity type)
- strict relation:    (head, head's entity type, relation type, tail, tail's entity type);
                      the endpoint types come from the same graph's entities, so a relation whose
                      endpoints were not extracted (or were extracted with the wrong type) never
                      matches.
- boundaries entity:  text only
- boundaries relation (the "lenient triplet"): (head, relation type, tail), entity types unchecked.

Precision with no predictions and recall with no gold are 1.0 when the other side is empty too,
so an empty prediction for an empty gold graph scores 1.0, and 0.0 otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from t2g.task.schema import Graph, normalize

EntityKey = tuple[str, str]
RelationKey = tuple[str, tuple[str, ...], str, str, tuple[str, ...]]


@dataclass
class Counts:
    tp: int = 0
    n_pred: int = 0
    n_gold: int = 0

    def add(self, other: "Counts") -> None:
        self.tp += other.tp
        self.n_pred += other.n_pred
        self.n_gold += other.n_gold

    @property
    def precision(self) -> float:
        if self.n_pred == 0:
            return 1.0 if self.n_gold == 0 else 0.0
        return self.tp / self.n_pred

    @property
    def recall(self) -> float:
        if self.n_gold == 0:
            return 1.0 if self.n_pred == 0 else 0.0
        return self.tp / self.n_gold

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "n_pred": self.n_pred,
            "n_gold": self.n_gold,
        }


def _counts(pred: set, gold: set) -> Counts:
    return Counts(len(pred & gold), len(pred), len(gold))


@dataclass(frozen=True)
class GraphKeys:
    """A graph reduced to the normalised sets the scorer compares."""

    entities: frozenset[EntityKey]
    relations: frozenset[RelationKey]

    @classmethod
    def of(cls, graph: Graph | None) -> "GraphKeys":
        if graph is None:
            return EMPTY_KEYS
        entities = frozenset((normalize(e.text), normalize(e.type)) for e in graph.entities)
        types_of: dict[str, list[str]] = defaultdict(list)
        for text, etype in entities:
            types_of[text].append(etype)
        relations = set()
        for r in graph.relations:
            head, tail = normalize(r.head), normalize(r.tail)
            relations.add((head, tuple(sorted(types_of.get(head, ()))), normalize(r.type), tail, tuple(sorted(types_of.get(tail, ())))))
        return cls(entities, frozenset(relations))

    @property
    def entity_spans(self) -> frozenset[str]:
        return frozenset(text for text, _ in self.entities)

    @property
    def triplets(self) -> frozenset[tuple[str, str, str]]:
        return frozenset((h, t, tl) for h, _, t, tl, _ in self.relations)


EMPTY_KEYS = GraphKeys(frozenset(), frozenset())


@dataclass
class ExampleScore:
    entity: Counts
    relation: Counts
    entity_boundary: Counts
    relation_boundary: Counts
    entity_by_type: dict[str, Counts]
    relation_by_type: dict[str, Counts]


def _by_type(pred: Iterable[tuple], gold: Iterable[tuple], type_index: int) -> dict[str, Counts]:
    out: dict[str, Counts] = defaultdict(Counts)
    pred, gold = set(pred), set(gold)
    for key in pred:
        out[key[type_index]].n_pred += 1
        if key in gold:
            out[key[type_index]].tp += 1
    for key in gold:
        out[key[type_index]].n_gold += 1
    return dict(out)


def score_keys(pred: GraphKeys, gold: GraphKeys, per_type: bool = True) -> ExampleScore:
    return ExampleScore(
        entity=_counts(pred.entities, gold.entities),
        relation=_counts(pred.relations, gold.relations),
        entity_boundary=_counts(pred.entity_spans, gold.entity_spans),
        relation_boundary=_counts(pred.triplets, gold.triplets),
        entity_by_type=_by_type(pred.entities, gold.entities, 1) if per_type else {},
        relation_by_type=_by_type(pred.relations, gold.relations, 2) if per_type else {},
    )


def score_example(pred: Graph | None, gold: Graph, per_type: bool = True) -> ExampleScore:
    """Score one prediction (None = no usable answer) against its gold graph."""
    return score_keys(GraphKeys.of(pred), GraphKeys.of(gold), per_type)


@dataclass
class CorpusScore:
    """Micro-averaged counts over a corpus; `report()` gives the JSON the CLI prints."""

    entity: Counts = field(default_factory=Counts)
    relation: Counts = field(default_factory=Counts)
    entity_boundary: Counts = field(default_factory=Counts)
    relation_boundary: Counts = field(default_factory=Counts)
    entity_by_type: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    relation_by_type: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    n_examples: int = 0

    def add(self, score: ExampleScore) -> None:
        self.n_examples += 1
        self.entity.add(score.entity)
        self.relation.add(score.relation)
        self.entity_boundary.add(score.entity_boundary)
        self.relation_boundary.add(score.relation_boundary)
        for name, c in score.entity_by_type.items():
            self.entity_by_type[name].add(c)
        for name, c in score.relation_by_type.items():
            self.relation_by_type[name].add(c)

    def report(self) -> dict:
        return {
            "n_examples": self.n_examples,
            "entity": self.entity.as_dict(),
            "relation": self.relation.as_dict(),
            "entity_boundaries": self.entity_boundary.as_dict(),
            "relation_boundaries": self.relation_boundary.as_dict(),
            "per_type": {
                "entity": {k: v.as_dict() for k, v in sorted(self.entity_by_type.items())},
                "relation": {k: v.as_dict() for k, v in sorted(self.relation_by_type.items())},
            },
        }


def score_corpus(pairs: Iterable[tuple[Graph | None, Graph]]) -> CorpusScore:
    """Micro P/R/F1 over (prediction, gold) pairs."""
    total = CorpusScore()
    for pred, gold in pairs:
        total.add(score_example(pred, gold))
    return total
