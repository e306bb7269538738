"""Augmentation for type conditioning: teach the model to follow the type lists it is given.

For each example, deterministically from (seed, example id):
- negative types: add types from the dataset's inventory that the example does not contain;
- dropped types: remove some gold types from the prompt AND their entities/relations from the
  target (relations lose their type, or an endpoint whose entity is gone);
- empty targets: for a fraction of examples, offer only types absent from the gold graph, so the
  correct answer is the empty graph;
- whole answers (`AugmentConfig.keep_all_prob`, off unless given): a share of the copies drops no type
  and adds at least one negative of each kind, so that offered-but-absent types also come beside the
  example's whole graph, not only beside answers that lost relations to drops or emptying;
- shuffled type order;
- renamed types (`AugmentConfig.synonyms`, off unless given): a share of the copies name their
  types with training synonyms (`t2g.data.synonyms`), prompt and target together;
- foreign types (`AugmentConfig.foreign_entity_types` / `foreign_relation_types`, off unless given):
  types of other domains (`t2g.data.synonyms.TRAINING_DISTRACTORS`) join the dataset's own as
  negatives and as the types of empty targets. Without them a dataset with a fixed inventory (CoNLL04's four entity and
  five relation types) only ever offers its own types, and an empty target always lists types the
  model has extracted elsewhere: it never sees a type it must not use because it is foreign.

`rename_types` also builds the held-out test of that: the types renamed to names the model never saw in training,
so that an evaluation can tell reading the given types from recalling the trained ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from t2g.data.canonical import DataError, Example
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
    # type (normalised) -> names it may be renamed to (t2g.data.synonyms); a copy is renamed with rename_prob
    synonyms: Mapping[str, Sequence[str]] = field(default_factory=dict)
    rename_prob: float = 0.0
    # types of other domains offered as negatives and empty targets besides the dataset's own
    foreign_entity_types: Sequence[str] = ()
    foreign_relation_types: Sequence[str] = ()
    # share of copies that keep every gold type (no drop, no empty target) and add 1..max negatives of each kind
    keep_all_prob: float = 0.0


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
    # Drawn only when asked for, so that the copies without it stay exactly what they were.
    keep_all = cfg.keep_all_prob > 0 and rng.random() < cfg.keep_all_prob
    if keep_all:
        ents, rels = list(ex.entity_types), list(ex.relation_types)
        neg_e = _absent(pool_e, ents + gold_e)
        neg_r = _absent(pool_r, rels + gold_r)
        ents += rng.sample(neg_e, min(len(neg_e), rng.randint(1, max(1, cfg.max_negative_entity_types))))
        rels += rng.sample(neg_r, min(len(neg_r), rng.randint(1, max(1, cfg.max_negative_relation_types))))
    elif rng.random() < cfg.empty_target_prob:
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
    out = replace(ex, id=f"{ex.id}#aug{copy}", entity_types=ents, relation_types=rels, graph=graph, reasoning=reasoning)
    # Drawn only when renaming is on, so that the copies without it stay exactly what they were.
    if cfg.synonyms and rng.random() < cfg.rename_prob:
        out = rename_types(out, _renaming(out.entity_types, cfg.synonyms, rng), _renaming(out.relation_types, cfg.synonyms, rng))
    return out


def _renaming(types: Sequence[str], synonyms: Mapping[str, Sequence[str]], rng: random.Random) -> dict[str, str]:
    """Each type with synonyms -> a random one; a type keeps its name where the synonym would collide
    with another name of the list (two types under one name would merge their entities)."""
    taken = {normalize(t) for t in types}
    out: dict[str, str] = {}
    for t in types:
        choices = synonyms.get(normalize(t), ())
        new = rng.choice(list(choices)) if choices else t
        if normalize(new) != normalize(t) and normalize(new) in taken:
            new = t
        taken.add(normalize(new))
        out[t] = new
    return out


def augment(examples: Sequence[Example], cfg: AugmentConfig = AugmentConfig(), seed: int = 0) -> list[Example]:
    """Originals (if kept) followed by `cfg.copies` augmented variants of each; deterministic."""
    pool_e, pool_r = type_inventory(examples)
    pool_e += _absent(cfg.foreign_entity_types, pool_e)
    pool_r += _absent(cfg.foreign_relation_types, pool_r)
    out = list(examples) if cfg.keep_original else []
    for copy in range(cfg.copies):
        out.extend(augment_example(ex, pool_e, pool_r, cfg, seed, copy) for ex in examples)
    return out


def answer_mix(examples: Sequence[Example]) -> dict[str, int]:
    """How many answers have relations, entities only, or nothing. Why it matters: a model learns what
    the answer looks like from how the prompt looks. Dropped entity types take their relations along,
    so with --augment_drop_prob=0.3 54% of CoNLL04's augmented copies that keep entities lost every
    relation, while no original did: GRPO from such data learnt that foreign or renamed types mean no
    relations (docs/results.md, issue 18)."""
    mix = {"relations": 0, "entities_only": 0, "empty": 0}
    for ex in examples:
        mix["relations" if ex.graph.relations else "entities_only" if ex.graph.entities else "empty"] += 1
    return mix


def foreign_relation_mix(examples: Sequence[Example], foreign_relation_types: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(prompts, of them without a gold relation) for the prompts that list at least one of the foreign
    relation types (`offered`) and for the others. Why it matters: GRPO's relation_f1 pays 1.0 for no
    relations where the gold has none, so if prompts offering a foreign relation type mostly have
    relation-free answers, the policy learns that such a type means "leave relations out", and does so on
    the distractor sentences whose relations all remain (docs/results.md, issue 18, sixteenth session)."""
    foreign = {normalize(t) for t in foreign_relation_types}
    mix = {"offered": [0, 0], "not_offered": [0, 0]}
    for ex in examples:
        row = mix["offered" if any(normalize(t) in foreign for t in ex.relation_types) else "not_offered"]
        row[0] += 1
        row[1] += not ex.graph.relations
    return {k: (n, without) for k, (n, without) in mix.items()}


def rename_types(ex: Example, entity_map: Mapping[str, str], relation_map: Mapping[str, str], id_suffix: str = "") -> Example:
    """`ex` with every entity and relation type renamed, in its type lists and its gold graph together.

    Types are looked up normalised ("Person" finds the map's "person"), as the scorer matches them. A
    type the map lacks, or two types renamed to one name (their entities would merge), is a DataError.
    """
    ents, rels = _rename_table(entity_map, "entity"), _rename_table(relation_map, "relation")

    def new(table: dict[str, str], kind: str, t: str) -> str:
        if normalize(t) not in table:
            raise DataError(f"example {ex.id!r}: no new name for {kind} type {t!r}; add it to the {kind} map, "
                            f"e.g. {{{t!r}: 'a synonym'}}")
        return table[normalize(t)]

    graph = Graph(tuple(replace(e, type=new(ents, "entity", e.type)) for e in ex.graph.entities),
                  tuple(replace(r, type=new(rels, "relation", r.type)) for r in ex.graph.relations))
    # The prompt shows a description beside the type its key names; one for a type no longer named
    # anywhere could never be shown.
    descriptions = {ents.get(normalize(k)) or rels[normalize(k)]: v for k, v in ex.type_descriptions.items()
                    if normalize(k) in ents or normalize(k) in rels}
    # A reasoning trace names the old types; it would contradict the renamed target.
    return replace(ex, id=ex.id + id_suffix, entity_types=[new(ents, "entity", t) for t in ex.entity_types],
                   relation_types=[new(rels, "relation", t) for t in ex.relation_types], graph=graph,
                   reasoning=None, type_descriptions=descriptions)


def _rename_table(mapping: Mapping[str, str], kind: str) -> dict[str, str]:
    """normalised old name -> new name; DataError where the map is ambiguous."""
    table: dict[str, str] = {}
    for old, new in mapping.items():
        key = normalize(old)
        if key in table and normalize(table[key]) != normalize(new):
            raise DataError(f"{kind} map: {old!r} is renamed to both {table[key]!r} and {new!r}; keep one")
        table[key] = new
    first: dict[str, str] = {}
    for old, new in table.items():
        if first.setdefault(normalize(new), old) != old:
            raise DataError(f"{kind} map: {first[normalize(new)]!r} and {old!r} are both renamed to {new!r}, "
                            "which would merge their entities; give each its own name")
    return table
