"""Type-conditioning test sets: does a model extract the types it is given, or the ones it trained on?

A model fine-tuned on CoNLL04 can score well while ignoring the type lists in its prompt: the same
four entity and five relation types are always there. Four conditions, each built from gold data
by the kit's own augmentation (`t2g.data.augment`), change the lists so that ignoring them costs:

    renamed     every type renamed to a synonym never seen in training ("person" -> "human being"),
                type lists and gold graph together: a model that recalls instead of reads answers "person"
    subset      some gold types left out of the prompt (at least one entity type that occurs, some
                occurring relation types) and out of the gold: extracting them is wrong now
    distractor  2-3 out-of-domain entity and relation types ("protein", "encodes") shuffled in, gold
                unchanged: the model must not use them
    empty       only types absent from the gold (the sentence's own unused types plus distractors):
                the right answer is the empty graph; `empty_answer_rate` counts how often a model gives it

Each condition holds `n` sentences sampled with `random.Random(f"{seed}:{condition}")`, every per-sentence
choice seeded by (seed, condition, id), so a set is the same on every machine and one sentence's
variant does not depend on which others were drawn. Ids are `"{id}#{condition}"`; type order is shuffled.
Nothing is copied from elsewhere: rebuild the files from the source data and the seed.

    t2g type-conditions --data ../shared/data/conll04/test.json --out eval/type-conditions
    t2g evaluate --model RUN --data eval/type-conditions/renamed.jsonl --out eval/renamed   # then per condition
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from t2g.data.augment import _absent, rename_types, restrict_graph, type_inventory
from t2g.data.canonical import DataError, Example, write_jsonl
from t2g.data.load import load_examples
from t2g.eval.predictions import read_predictions
from t2g.files import write_json_atomic
from t2g.flags import FlagError, flag
from t2g.task.schema import Graph, normalize

CONDITIONS = ("renamed", "subset", "distractor", "empty")
MANIFEST = "conditions.json"

# CoNLL04's types -> names no training set of the kit uses; other datasets pass their own (`synonyms=`).
CONLL04_SYNONYMS: dict[str, dict[str, str]] = {
    "entities": {"person": "human being", "organization": "institution", "location": "place",
                 "other": "miscellaneous"},
    "relations": {"work for": "employed by", "kill": "murdered", "organization based in": "headquartered in",
                  "live in": "resides in", "located in": "situated in"},
}

# Types from domains CoNLL04's news sentences are not annotated for; those a dataset already has are
# left out (the shipped examples have "gene" and "treats"), so a distractor is never a real type.
DISTRACTOR_ENTITY_TYPES = ("protein", "disease", "programming language", "chemical compound", "gene", "software",
                           "enzyme", "file format")
DISTRACTOR_RELATION_TYPES = ("treats", "inhibits", "encodes", "written in", "side effect of", "binds to",
                             "catalyses", "compiled with")
_KIND = {"entities": "entity", "relations": "relation"}
_SYNONYMS_SHAPE = '{"entities": {type: synonym}, "relations": {type: synonym}}'


@dataclass(frozen=True)
class TypePlan:
    """What the conditions are built from: the dataset's types, their synonyms, the distractors."""

    entity_synonyms: dict[str, str]  # every entity type of the dataset -> its synonym
    relation_synonyms: dict[str, str]
    distractor_entities: tuple[str, ...]  # the pool minus the dataset's own types
    distractor_relations: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"synonyms": {"entities": self.entity_synonyms, "relations": self.relation_synonyms},
                "distractors": {"entities": list(self.distractor_entities), "relations": list(self.distractor_relations)}}


def check_synonyms(obj: Any, where: str = "synonyms") -> dict[str, dict[str, str]]:
    """`obj` as {"entities": {...}, "relations": {...}} (either may be absent); DataError naming `where`."""
    if not isinstance(obj, dict) or not set(obj) <= {"entities", "relations"}:
        raise DataError(f"{where}: expected {_SYNONYMS_SHAPE}, got {repr(obj)[:80]}")
    for kind, table in obj.items():
        if not isinstance(table, dict):
            raise DataError(f"{where}: '{kind}' must map type names to synonyms, got {type(table).__name__}")
        bad = [(k, v) for k, v in table.items()
               if not (isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip())]
        if bad:
            raise DataError(f"{where}: '{kind}' maps {bad[0][0]!r} to {bad[0][1]!r}; give each type a non-empty name")
    return {kind: dict(obj.get(kind, {})) for kind in ("entities", "relations")}


def read_synonyms(path: str | Path) -> dict[str, dict[str, str]]:
    """A --synonyms file; DataError naming the flag and the file when it is missing or not that shape."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--synonyms={path}: no such file; give a JSON file {_SYNONYMS_SHAPE}")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"--synonyms={path}: not a JSON file ({exc}); write it as {_SYNONYMS_SHAPE}") from None
    return check_synonyms(obj, f"--synonyms={path}")


def plan_types(examples: Sequence[Example], synonyms: Mapping[str, Mapping[str, str]] | None = None) -> TypePlan:
    """The synonyms (CoNLL04's table, overridden and extended by `synonyms`) of every type the dataset
    has, and the distractor pools; DataError when a type has no synonym, a synonym is one of the
    dataset's own types, or fewer than 2 distractors of a kind are left."""
    given = check_synonyms(synonyms or {})
    ents, rels = type_inventory(examples)
    found: dict[str, dict[str, str]] = {}
    missing = []
    for kind, types in (("entities", ents), ("relations", rels)):
        # normalised keys, so that a caller's "Person" overrides the table's "person"
        table = {normalize(k): v for source in (CONLL04_SYNONYMS[kind], given[kind]) for k, v in source.items()}
        missing += [f"{_KIND[kind]} type {t!r}" for t in types if normalize(t) not in table]
        found[kind] = {t: table[normalize(t)] for t in types if normalize(t) in table}
    if missing:
        raise DataError(f"no synonym for {', '.join(missing)}: pass synonyms={_SYNONYMS_SHAPE} "
                        "(t2g type-conditions --synonyms FILE.json) naming each")
    own = {normalize(t) for t in ents + rels}
    clash = [f"{old!r} -> {new!r}" for kind in found.values() for old, new in kind.items() if normalize(new) in own]
    if clash:
        raise DataError(f"synonyms that are types of the dataset itself: {', '.join(clash)}; a renamed type must be new")
    pools = _absent(DISTRACTOR_ENTITY_TYPES, ents + rels), _absent(DISTRACTOR_RELATION_TYPES, ents + rels)
    for kind, pool in zip(("entity", "relation"), pools):
        if len(pool) < 2:
            raise DataError(f"only {len(pool)} distractor {kind} types are not already types of the dataset; "
                            "the distractor and empty conditions need 2")
    return TypePlan(found["entities"], found["relations"], tuple(pools[0]), tuple(pools[1]))


# --- the conditions: which sentences qualify, and each one's variant ---------------------------

def _gold_types(ex: Example) -> tuple[set[str], set[str]]:
    return {normalize(e.type) for e in ex.graph.entities}, {normalize(r.type) for r in ex.graph.relations}


def _occurring_entity_types(ex: Example) -> list[str]:
    """The prompt's entity types that the gold graph uses, one per normalised name."""
    gold = _gold_types(ex)[0]
    first: dict[str, str] = {}
    for t in ex.entity_types:
        if normalize(t) in gold:
            first.setdefault(normalize(t), t)
    return list(first.values())


def _renamed(ex: Example, plan: TypePlan, rng: random.Random) -> Example:
    return rename_types(ex, plan.entity_synonyms, plan.relation_synonyms)


def _subset(ex: Example, plan: TypePlan, rng: random.Random) -> Example:
    occurring = _occurring_entity_types(ex)
    dropped = {normalize(t) for t in rng.sample(occurring, rng.randint(1, len(occurring) - 1))}  # eligible: >= 2
    ents = [t for t in ex.entity_types if normalize(t) not in dropped]
    gold_r = _gold_types(ex)[1]
    rels = [t for t in ex.relation_types if not (normalize(t) in gold_r and rng.random() < 0.5)]
    if not rels and ex.relation_types:  # a prompt with no relation types at all would be another test
        rels = [rng.choice(ex.relation_types)]
    graph = restrict_graph(ex.graph, ents, rels)
    return replace(ex, entity_types=ents, relation_types=rels, graph=graph,
                   reasoning=ex.reasoning if graph == ex.graph else None)


def _distractor(ex: Example, plan: TypePlan, rng: random.Random) -> Example:
    ents = list(ex.entity_types) + rng.sample(plan.distractor_entities, min(rng.randint(2, 3), len(plan.distractor_entities)))
    rels = list(ex.relation_types) + rng.sample(plan.distractor_relations, min(rng.randint(2, 3), len(plan.distractor_relations)))
    return replace(ex, entity_types=ents, relation_types=rels)


def _empty(ex: Example, plan: TypePlan, rng: random.Random) -> Example:
    gold_e, gold_r = _gold_types(ex)
    lists = []
    # The sentence's own unused types come first: it was annotated for them and has none, which the
    # inventory's types of other domains cannot promise. Distractors make up at least 2 of each kind.
    for offered, gold, pool in ((ex.entity_types, gold_e, plan.distractor_entities),
                                (ex.relation_types, gold_r, plan.distractor_relations)):
        own = [t for t in offered if normalize(t) not in gold]
        lists.append(own + rng.sample(pool, min(len(pool), max(rng.randint(1, 2), 2 - len(own)))))
    return replace(ex, entity_types=lists[0], relation_types=lists[1], graph=Graph(), reasoning=None)


# name -> (which sentences qualify, the variant of one)
_BUILDERS: dict[str, tuple[Callable[[Example], bool], Callable[[Example, TypePlan, random.Random], Example]]] = {
    "renamed": (lambda ex: True, _renamed),
    "subset": (lambda ex: len(_occurring_entity_types(ex)) >= 2, _subset),
    "distractor": (lambda ex: True, _distractor),
    # a sentence with nothing in it is empty under any types; one with entities tests abstaining
    "empty": (lambda ex: not ex.graph.is_empty, _empty),
}


def build_conditions(examples: Sequence[Example], n: int = 100, seed: int = 0,
                     synonyms: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, list[Example]]:
    """condition -> up to `n` examples (all eligible ones when fewer), in source order, deterministic."""
    return _build(examples, n, seed, synonyms)[0]


def _build(examples: Sequence[Example], n: int, seed: int,
           synonyms: Mapping[str, Mapping[str, str]] | None) -> tuple[dict[str, list[Example]], TypePlan]:
    if not examples:
        raise DataError("no examples to build the type conditions from; give a dataset with gold graphs")
    if n < 1:
        raise ValueError(f"n={n}: give a positive number of sentences per condition, e.g. n=100")
    plan = plan_types(examples, synonyms)
    out: dict[str, list[Example]] = {}
    for name in CONDITIONS:
        eligible, variant = _BUILDERS[name]
        pool = [ex for ex in examples if eligible(ex)]
        picked = sorted(random.Random(f"{seed}:{name}").sample(range(len(pool)), min(n, len(pool))))
        out[name] = []
        for i in picked:
            ex = pool[i]
            rng = random.Random(f"{seed}:{name}:{ex.id}")
            new = variant(ex, plan, rng)
            ents, rels = list(new.entity_types), list(new.relation_types)
            rng.shuffle(ents)
            rng.shuffle(rels)
            out[name].append(replace(new, id=f"{ex.id}#{name}", entity_types=ents, relation_types=rels))
    return out, plan


def write_conditions(out_dir: str | Path, examples: Sequence[Example], n: int = 100, seed: int = 0,
                     synonyms: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Path]:
    """OUT/<condition>.jsonl (canonical, atomic) for each condition, then OUT/conditions.json (seed, n,
    counts, the type maps): written last, so that its presence means the set is complete."""
    built, plan = _build(examples, n, seed, synonyms)
    out_dir = Path(out_dir)
    paths = {}
    for name, rows in built.items():
        paths[name] = out_dir / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    write_json_atomic(out_dir / MANIFEST, {
        "seed": seed, "n": n, "source_examples": len(examples),
        "conditions": {name: {"count": len(rows), "file": paths[name].name} for name, rows in built.items()},
        **plan.to_dict(),
    })
    return paths


def empty_answer_rate(predictions_path: str | Path) -> float:
    """The share of prediction rows whose graph is empty; an answer that does not parse is not empty."""
    preds = read_predictions(predictions_path)
    if not preds:
        raise DataError(f"{predictions_path}: no prediction rows; give the predictions of a finished evaluation")
    return sum(p["graph"] is not None and p["graph"].is_empty for p in preds.values()) / len(preds)


# --- `t2g type-conditions` ------------------------------------------------------------------------

@dataclass
class ConditionsFlags:
    """Write the type-conditioning test sets (renamed, subset, distractor, empty types) from gold data.

    Example: t2g type-conditions --data ../shared/data/conll04/test.json --out eval/type-conditions
    """

    data: str = flag(help="the source dataset with gold graphs (any format `t2g convert` reads)")
    out: str = flag(help="the folder to write: one canonical JSONL per condition and conditions.json")
    n: int = flag(100, "sentences per condition (all eligible ones when fewer)")
    seed: int = flag(0, "the sampling seed")
    synonyms: str | None = flag(None, "a JSON file {\"entities\": {type: synonym}, \"relations\": {type: synonym}} "
                                "adding to or overriding the CoNLL04 synonyms (needed for other datasets' types)")

    def __post_init__(self) -> None:
        if self.n < 1:
            raise FlagError(f"--n={self.n}: give a positive number of sentences per condition, e.g. --n=100")


def main(flags: ConditionsFlags) -> None:
    """`t2g type-conditions` with its parsed flags: writes the files, prints `name count path` per condition."""
    synonyms = read_synonyms(flags.synonyms) if flags.synonyms else None
    examples = load_examples(flags.data)
    if not examples:
        raise DataError(f"--data={flags.data}: holds no examples; give a dataset with gold graphs")
    paths = write_conditions(flags.out, examples, n=flags.n, seed=flags.seed, synonyms=synonyms)
    counts = json.loads((Path(flags.out) / MANIFEST).read_text(encoding="utf-8"))["conditions"]
    for name, path in paths.items():
        print(f"{name}\t{counts[name]['count']}\t{path}")
