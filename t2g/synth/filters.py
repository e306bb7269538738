"""Stage 3 of `t2g generate`: teacher answers parsed, types mapped onto the inventory, rows filtered.

A row is dropped for the first reason it meets, in the order below, and counted once in the
summary; repeated entities or relations are not a reason (they collapse to the first).
"""

from __future__ import annotations

from typing import Iterable

from t2g.data.augment import restrict_graph
from t2g.data.canonical import Example
from t2g.synth.config import GenerateConfig, Summary
from t2g.synth.inventory import Inventory, count_types
from t2g.synth.sources import SourceText
from t2g.task.parsing import parse_completion
from t2g.task.schema import (DANGLING_HEAD, DANGLING_TAIL, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE, Entity,
                             Graph, Relation, validate_graph)

# Drop reasons after the teacher, in the order a row is checked (a parse failure is `parse_<error>`).
OUT_OF_INVENTORY = "out_of_inventory_type"
UNGROUNDED = "ungrounded_span"
DANGLING = "dangling_relation"
EMPTY_GRAPH = "empty_graph"
OVERSIZED = "oversized_graph"


def build_examples(cfg: GenerateConfig, texts: list[SourceText], answers: dict[str, dict],
                    summary: Summary) -> tuple[list[Example], tuple[Inventory, Inventory]]:
    parsed = {}
    for src in texts:
        if src.id not in answers:
            continue  # failed this run: recorded in the errors file, retried on the next run
        result = parse_completion(answers[src.id]["completion"])
        if not result.ok:
            summary.drop(summary.dropped, f"parse_{result.error}", src.id)
            continue
        parsed[src.id] = result.graph
    inventory = _inventory(cfg, parsed.values())
    examples = []
    for src in texts:
        if src.id in parsed:
            ex, reason = _filter(cfg, src, parsed[src.id], inventory)
            if ex is None:
                summary.drop(summary.dropped, reason, src.id)
            else:
                examples.append(ex)
    return examples, inventory


def _inventory(cfg: GenerateConfig, graphs: Iterable[Graph]) -> tuple[Inventory, Inventory]:
    if cfg.fixed:
        return Inventory.fixed(cfg.entity_types, "--entity_types"), Inventory.fixed(cfg.relation_types, "--relation_types")
    graphs = list(graphs)
    ents = count_types([e.type for e in g.entities] for g in graphs)
    rels = count_types([r.type for r in g.relations] for g in graphs)
    return (Inventory.from_counts(ents, cfg.min_type_count, cfg.max_types),
            Inventory.from_counts(rels, cfg.min_type_count, cfg.max_types))


def _filter(cfg: GenerateConfig, src: SourceText, graph: Graph,
            inventory: tuple[Inventory, Inventory]) -> tuple[Example | None, str]:
    inv_e, inv_r = inventory
    mapped, unknown = _map_types(graph, inv_e, inv_r)
    if unknown and cfg.fixed:
        return None, OUT_OF_INVENTORY  # the teacher ignored the given list: the rest is suspect too
    if not cfg.fixed:
        # Open extraction: a rare type is not in the prompt's list, so its items are not asked for.
        mapped = restrict_graph(mapped, inv_e.types, inv_r.types)
    graph = mapped.deduplicated()
    kinds = {v.kind for v in validate_graph(graph, src.text, inv_e.types, inv_r.types)}
    if kinds & {UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE}:
        return None, OUT_OF_INVENTORY
    if SPAN_NOT_IN_TEXT in kinds:
        return None, UNGROUNDED
    if kinds & {DANGLING_HEAD, DANGLING_TAIL}:
        return None, DANGLING
    if graph.is_empty and not cfg.keep_empty:
        return None, EMPTY_GRAPH
    if len(graph.entities) > cfg.max_entities or len(graph.relations) > cfg.max_relations:
        return None, OVERSIZED
    return Example(src.id, src.text, inv_e.types, inv_r.types, graph), ""


def _map_types(graph: Graph, inv_e: Inventory, inv_r: Inventory) -> tuple[Graph, bool]:
    """Types respelled as the inventory spells them; unknown ones kept as given, flagged."""
    unknown = False
    ents = []
    for e in graph.entities:
        name = inv_e.canonical(e.type)
        unknown |= name is None
        ents.append(Entity(e.text, name or e.type))
    rels = []
    for r in graph.relations:
        name = inv_r.canonical(r.type)
        unknown |= name is None
        rels.append(Relation(r.head, r.tail, name or r.type))
    return Graph(tuple(ents), tuple(rels)), unknown
