"""Issue 18: the SFT target and the rewards agree. Every target rendered from every dataset the kit
ships or reads earns each reward's maximum, so SFT never teaches an answer GRPO charges for (CoNLL04
lists each mention, and its repeats once cost the target 0.2 of `consistency`)."""

from __future__ import annotations

import pytest

import rewards
from t2g.data.augment import AugmentConfig, augment
from t2g.data.canonical import Example
from t2g.data.load import load_examples
from t2g.task.prompts import render_target
from t2g.task.schema import Entity, Graph, Relation

from tests.conftest import SHARED_DATA

CONLL04 = SHARED_DATA / "conll04"


def _datasets() -> list[tuple[str, list[Example]]]:
    found = [("shipped examples", load_examples("examples"))]
    for split in ("train", "dev", "test"):
        path = CONLL04 / f"{split}.json"
        if path.is_file():
            found.append((f"conll04 {split}", load_examples(path)))
    return found


def _scores(examples: list[Example]) -> dict[str, list[float]]:
    columns = {"text": [e.text for e in examples], "entity_types": [e.entity_types for e in examples],
               "relation_types": [e.relation_types for e in examples], "graph": [e.graph.to_dict() for e in examples]}
    completions = [render_target(e.graph, e.reasoning) for e in examples]
    return {row.name: rewards.REGISTRY[row.name](completions, **columns)
            for row in rewards.REWARDS if not row.reasoning_only}


def test_every_rendered_target_earns_each_rewards_maximum():
    datasets = _datasets()
    if not any(name.startswith("conll04") for name, _ in datasets):
        pytest.skip(f"CoNLL04 not found at {CONLL04}")
    for name, examples in datasets:
        # the type-augmented copies SFT trains on, too (emptied and restricted targets)
        for label, rows in ((name, examples), (f"{name}, augmented", augment(examples, AugmentConfig(copies=1, keep_original=False), seed=0))):
            for reward, values in _scores(rows).items():
                below = [(rows[i].id, v) for i, v in enumerate(values) if v < _row_maximum(reward, rows[i])]
                assert not below, f"{label}: {len(below)} targets score below the maximum on {reward}, e.g. {below[:3]}"


def _row_maximum(reward: str, example: Example) -> float:
    """The most any answer can earn on this row: the top of the reward's range, except relation_gain's where the
    gold has no relation (a share of corpus F1: no answer finds a relation there, so 0 is the most)."""
    if reward == "relation_gain" and not example.graph.relations:
        return 0.0
    return rewards.RANGES[reward][1]


def test_example_holds_its_graph_as_a_set():
    graph = Graph((Entity("Reagan", "person"), Entity("American", "other"), Entity("american", "Other"),
                   Entity("American", "location")),
                  (Relation("Reagan", "American", "live in"), Relation("reagan", "American", "Live In")))
    ex = Example("x", "Reagan , an American , met American officials", ["person", "other", "location"], ["live in"], graph)
    assert [(e.text, e.type) for e in ex.graph.entities] == [("Reagan", "person"), ("American", "other"), ("American", "location")]
    assert [(r.head, r.tail, r.type) for r in ex.graph.relations] == [("Reagan", "American", "live in")]
    # the canonical row reads back the same set, and a graph without repeats is kept as it is
    assert Example.from_dict(ex.to_dict()).graph == ex.graph
    assert ex.graph.deduplicated() is ex.graph
    # the target the rewards see: no consistency penalty
    scores = _scores([ex])
    assert scores["consistency"] == [0.0] and scores["entity_f1"] == [1.0] and scores["relation_f1"] == [1.0]
