"""Augmentation for type conditioning: teach the model to follow the type lists it is given.

For each example, deterministically from (seed, example id):
- negative types: add types from the dataset's inventory that the example does not contain;
- dropped types: remove some gold types from the prompt AND their entities/relations from the
  target (relations lose their type, or an endpoint whose entity is gone);
- empty targets: for a fraction of examples, offer only types absent from the gold graph, so the
  correct answer is the empty graph;
- shuffled type order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Sequence

from t2g.data.canonical import Example
from t2g.task.schema import Graph, normalize


@dataclass(frozen=True)
class AugmentConfig:
    max_negative_entity_types: int = 2
    max_negative_relation_types: int = 2
    drop_type_prob: float = 0.15  # per gold type present in the example
    empty_target_prob: float = 0.1  # fraction of examples turned into "nothing fits"
    shuffle_types: bool = True
    copies: int = 1  # augmented copies per example (the original is kept too when keep_original)
    keep_original: bool = True


def type_inventory(examples: Sequence[Example]) -> tuple[list[str], list[str]]:
    """All entity and relation types the dataset offers, in first-seen order."""
    ents: dict[str, None] = {}
    rels: dict[str, None] = {}
    for ex in examples:
        ents.update(dict.fromkeys(ex.entity_types))
        ents.update(dict.fromkeys(e.type for e in ex.graph.entities))
        rels.update(dict.fromkeys(ex.relation_types))
        rels.update(dict.fromkeys(r.type for r in ex.graph.relations))
    return list(ents), list(rels)


def restrict_graph(graph: Graph, entity_types: Sequence[str], relation_types: Sequence[str]) -> Graph:
    """The part of `graph` that is answerable with the given types."""
    keep_e = {normalize(t) for t in entity_types}
    keep_r = {normalize(t) for t in relation_types}
    entities = tuple(e for e in graph.entities if normalize(e.type) in keep_e)
    texts = {normalize(e.text) for e in entities}
    relations = tuple(
        r for r in graph.relations
        if normalize(r.type) in keep_r and normalize(r.head) in texts and normalize(r.tail) in texts
    )
    return Graph(entities, relations)


def _absent(pool: Sequence[str], present: Sequence[str]) -> list[str]:
    have = {normalize(t) for t in present}
    return [t for t in pool if normalize(t) not in have]


def augment_example(ex: Example, pool_e: Sequence[str], pool_r: Sequence[str], cfg: AugmentConfig, seed: int, copy: int = 0) -> Example:
    rng = random.Random(f"{seed}:{ex.id}:{copy}")
    gold_e = list(dict.fromkeys(e.type for e in ex.graph.entities))
    gold_r = list(dict.fromkeys(r.type for r in ex.graph.relations))
    # types match as the scorer matches them: "Person" in the type list is the graph's "person"
    gold_e_norm = {normalize(t) for t in gold_e}
    gold_r_norm = {normalize(t) for t in gold_r}
    if rng.random() < cfg.empty_target_prob:
        ents = _absent(pool_e, gold_e)
        rels = _absent(pool_r, gold_r)
        ents = rng.sample(ents, min(len(ents), max(1, cfg.max_negative_entity_types)))
        rels = rng.sample(rels, min(len(rels), cfg.max_negative_relation_types))
    else:
        ents = [t for t in ex.entity_types if not (normalize(t) in gold_e_norm and rng.random() < cfg.drop_type_prob)]
        rels = [t for t in ex.relation_types if not (normalize(t) in gold_r_norm and rng.random() < cfg.drop_type_prob)]
        neg_e = _absent(pool_e, ents + gold_e)
        neg_r = _absent(pool_r, rels + gold_r)
        ents += rng.sample(neg_e, min(len(neg_e), rng.randint(0, cfg.max_negative_entity_types)))
        rels += rng.sample(neg_r, min(len(neg_r), rng.randint(0, cfg.max_negative_relation_types)))
    if cfg.shuffle_types:
        rng.shuffle(ents)
        rng.shuffle(rels)
    graph = restrict_graph(ex.graph, ents, rels)
    # A reasoning trace describes the original target; it would contradict a changed one.
    reasoning = ex.reasoning if graph == ex.graph else None
    return replace(ex, id=f"{ex.id}#aug{copy}", entity_types=ents, relation_types=rels, graph=graph, reasoning=reasoning)


def augment(examples: Sequence[Example], cfg: AugmentConfig = AugmentConfig(), seed: int = 0) -> list[Example]:
    """Originals (if kept) followed by `cfg.copies` augmented variants of each; deterministic."""
    pool_e, pool_r = type_inventory(examples)
    out = list(examples) if cfg.keep_original else []
    for copy in range(cfg.copies):
        out.extend(augment_example(ex, pool_e, pool_r, cfg, seed, copy) for ex in examples)
    return out
