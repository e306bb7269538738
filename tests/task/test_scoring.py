"""The scorer against hand-computed numbers.

Every expected value below is a fraction worked out by hand from the counts in the comment
(tp = true positives, pred / gold = distinct normalised keys on each side):
P = tp/pred, R = tp/gold, F1 = 2PR/(P+R); P with no predictions and R with no gold are 1.0 when
the other side is empty too, else 0.0.
"""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from t2g.task.scoring import GraphKeys, score_corpus, score_example
from t2g.task.schema import Graph


def g(entities=(), relations=()) -> Graph:
    """Compact graphs: entities as (text, type), relations as (head, type, tail)."""
    return Graph.from_dict(
        {
            "entities": [{"text": t, "type": ty} for t, ty in entities],
            "relations": [{"head": h, "tail": t, "type": ty} for h, ty, t in relations],
        }
    )


TIM, APPLE, CUP = ("Tim Cook", "person"), ("Apple", "organization"), ("Cupertino", "location")
WORKS, BASED = ("Tim Cook", "works for", "Apple"), ("Apple", "located in", "Cupertino")
GOLD = g([TIM, APPLE, CUP], [WORKS, BASED])  # 3 entities, 2 relations

ONE, ZERO = F(1), F(0)

# name, prediction, gold, (entity P, R, F1), (relation P, R, F1), (entity boundaries F1, relation boundaries F1)
CASES = [
    # everything right
    ("exact", GOLD, GOLD, (ONE, ONE, ONE), (ONE, ONE, ONE), (ONE, ONE)),
    # order does not matter
    ("reordered", g([CUP, APPLE, TIM], [BASED, WORKS]), GOLD, (ONE, ONE, ONE), (ONE, ONE, ONE), (ONE, ONE)),
    # nothing predicted: tp 0, pred 0, gold 3 -> P 0 by convention (gold is not empty), R 0/3
    ("empty prediction", g(), GOLD, (ZERO, ZERO, ZERO), (ZERO, ZERO, ZERO), (ZERO, ZERO)),
    # the empty answer to an empty gold graph is perfect
    ("empty vs empty", g(), g(), (ONE, ONE, ONE), (ONE, ONE, ONE), (ONE, ONE)),
    # something predicted where nothing is: tp 0, pred 1, gold 0 -> P 0/1, R 0 by convention; relations 0 vs 0 -> 1
    ("extra on empty gold", g([TIM]), g(), (ZERO, ZERO, ZERO), (ONE, ONE, ONE), (ZERO, ONE)),
    # missing Cupertino and its relation: entities tp 2, pred 2, gold 3 -> P 1, R 2/3, F1 2*(2/3)/(5/3) = 4/5;
    # relations tp 1, pred 1, gold 2 -> P 1, R 1/2, F1 2*(1/2)/(3/2) = 2/3
    ("missing", g([TIM, APPLE], [WORKS]), GOLD, (ONE, F(2, 3), F(4, 5)), (ONE, F(1, 2), F(2, 3)), (F(4, 5), F(2, 3))),
    # an extra entity: tp 3, pred 4, gold 3 -> P 3/4, R 1, F1 2*(3/4)/(7/4) = 6/7
    ("extra", g([TIM, APPLE, CUP, ("Steve Jobs", "person")], [WORKS, BASED]), GOLD,
     (F(3, 4), ONE, F(6, 7)), (ONE, ONE, ONE), (F(6, 7), ONE)),
    # Apple typed as a location: entities tp 2 of 3 and 3 -> 2/3 each; both relations touch Apple, whose type
    # is now wrong, so no strict relation matches (0/2); the boundaries variants ignore types -> 1
    ("wrong entity type", g([TIM, ("Apple", "location"), CUP], [WORKS, BASED]), GOLD,
     (F(2, 3), F(2, 3), F(2, 3)), (ZERO, ZERO, ZERO), (ONE, ONE)),
    # the wrong relation type on one relation: relations tp 1, pred 2, gold 2 -> 1/2 each, also for boundaries
    ("wrong relation type", g([TIM, APPLE, CUP], [("Tim Cook", "founded", "Apple"), BASED]), GOLD,
     (ONE, ONE, ONE), (F(1, 2), F(1, 2), F(1, 2)), (ONE, F(1, 2))),
    # head and tail swapped: same counts as a wrong relation
    ("reversed relation", g([TIM, APPLE, CUP], [("Apple", "works for", "Tim Cook"), BASED]), GOLD,
     (ONE, ONE, ONE), (F(1, 2), F(1, 2), F(1, 2)), (ONE, F(1, 2))),
    # case, spacing and Unicode width variants all normalise to the gold keys (NFKC + casefold + whitespace)
    ("case and whitespace", g([("  tim   COOK ", "Person"), ("Ａｐｐｌｅ", "ORGANIZATION"), ("cupertino\n", " location ")],
                               [("TIM COOK", "Works  For", "apple"), ("APPLE", "located in", "CUPERTINO")]), GOLD,
     (ONE, ONE, ONE), (ONE, ONE, ONE), (ONE, ONE)),
    # duplicates collapse: repeating the gold changes nothing ...
    ("gold duplicated", g([TIM, TIM, APPLE, ("apple", "Organization"), CUP], [WORKS, WORKS, BASED]), GOLD,
     (ONE, ONE, ONE), (ONE, ONE, ONE), (ONE, ONE)),
    # ... and repeating a wrong one does not cost more than once: entity sets {tim/person, steve/person}:
    # tp 1, pred 2, gold 3 -> P 1/2, R 1/3, F1 2*(1/6)/(5/6) = 2/5; no relations: P 0, R 0
    ("duplicates of right and wrong", g([TIM, TIM, TIM, ("Steve Jobs", "person"), ("steve jobs", "person")]), GOLD,
     (F(1, 2), F(1, 3), F(2, 5)), (ZERO, ZERO, ZERO), (F(2, 5), ZERO)),
    # a dangling relation (tail Cupertino not extracted): its strict key has no tail type, so it misses:
    # relations tp 1, pred 2, gold 2 -> 1/2; entities tp 2, pred 2, gold 3 -> P 1, R 2/3, F1 4/5;
    # the lenient triplet does match: relation boundaries 2/2 -> 1
    ("dangling relation", g([TIM, APPLE], [WORKS, BASED]), GOLD,
     (ONE, F(2, 3), F(4, 5)), (F(1, 2), F(1, 2), F(1, 2)), (F(4, 5), ONE)),
    # a relation whose tail has the wrong type (Cupertino as organization): entities 2/3 each;
    # strict relations tp 1 (WORKS), pred 2, gold 2 -> 1/2; boundaries 1
    ("relation endpoint wrong type", g([TIM, APPLE, ("Cupertino", "organization")], [WORKS, BASED]), GOLD,
     (F(2, 3), F(2, 3), F(2, 3)), (F(1, 2), F(1, 2), F(1, 2)), (ONE, ONE)),
    # hedging: Apple under two types. Entities tp 3, pred 4, gold 3 -> P 3/4, R 1, F1 6/7. A relation
    # endpoint's types are all the types its text has in the graph, {location, organization} != {organization},
    # so both relations miss (0/2). Boundaries compare the span sets, {tim cook, apple, cupertino} on both
    # sides -> 1, and the lenient triplets match -> 1.
    ("hedged entity type", g([TIM, APPLE, ("Apple", "location"), CUP], [WORKS, BASED]), GOLD,
     (F(3, 4), ONE, F(6, 7)), (ZERO, ZERO, ZERO), (ONE, ONE)),
    # no usable answer (parse failure) is scored like an empty prediction
    ("none prediction", None, GOLD, (ZERO, ZERO, ZERO), (ZERO, ZERO, ZERO), (ZERO, ZERO)),
]


def _prf(counts) -> tuple:
    return (counts.precision, counts.recall, counts.f1)


@pytest.mark.parametrize("name,pred,gold,ent,rel,boundaries", CASES, ids=[c[0] for c in CASES])
def test_hand_computed(name, pred, gold, ent, rel, boundaries):
    s = score_example(pred, gold)
    assert _prf(s.entity) == pytest.approx(tuple(map(float, ent)))
    assert _prf(s.relation) == pytest.approx(tuple(map(float, rel)))
    assert (s.entity_boundary.f1, s.relation_boundary.f1) == pytest.approx(tuple(map(float, boundaries)))


def test_per_type_breakdown():
    # Apple as a location: person tp 1/1/1; organization missed (0 pred, 1 gold); location 1 right of 2 predicted
    s = score_example(g([TIM, ("Apple", "location"), CUP], [WORKS]), GOLD)
    by = {k: (c.tp, c.n_pred, c.n_gold) for k, c in s.entity_by_type.items()}
    assert by == {"person": (1, 1, 1), "organization": (0, 0, 1), "location": (1, 2, 1)}
    rby = {k: (c.tp, c.n_pred, c.n_gold) for k, c in s.relation_by_type.items()}
    assert rby == {"works for": (0, 1, 1), "located in": (0, 0, 1)}
    assert score_example(GOLD, GOLD, per_type=False).entity_by_type == {}


def test_corpus_is_micro_averaged():
    # exact (tp 3, pred 3, gold 3) + empty prediction (0, 0, 3) + empty vs empty (0, 0, 0):
    # entities tp 3, pred 3, gold 6 -> P 1, R 1/2, F1 2/3; relations tp 2, pred 2, gold 4 -> the same
    total = score_corpus([(GOLD, GOLD), (g(), GOLD), (g(), g())])
    report = total.report()
    assert report["n_examples"] == 3
    for kind, (tp, n_pred, n_gold) in (("entity", (3, 3, 6)), ("relation", (2, 2, 4))):
        r = report[kind]
        assert (r["tp"], r["n_pred"], r["n_gold"]) == (tp, n_pred, n_gold)
        assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert report["per_type"]["entity"]["person"]["n_gold"] == 2
    assert set(report) >= {"entity_boundaries", "relation_boundaries", "per_type"}


def test_corpus_micro_differs_from_macro():
    # example 1: missing (E tp 2/pred 2/gold 3), example 2: extra (E tp 3/pred 4/gold 3):
    # micro entities tp 5, pred 6, gold 6 -> P 5/6, R 5/6, F1 5/6 (the macro mean of F1 would be (4/5+6/7)/2)
    total = score_corpus([(g([TIM, APPLE], [WORKS]), GOLD), (g([TIM, APPLE, CUP, ("Steve Jobs", "person")], [WORKS, BASED]), GOLD)])
    assert total.entity.f1 == pytest.approx(5 / 6)
    # relations: tp 1 + 2, pred 1 + 2, gold 2 + 2 -> P 1, R 3/4, F1 6/7
    assert _prf(total.relation) == pytest.approx((1.0, 3 / 4, 6 / 7))


def test_empty_corpus_and_all_empty_corpus():
    assert score_corpus([]).entity.f1 == 1.0  # nothing to find, nothing found
    assert score_corpus([(g(), g())] * 3).relation.f1 == 1.0


def test_graph_keys_collapse_and_normalise():
    keys = GraphKeys.of(g([TIM, ("tim cook", "PERSON")], [WORKS, ("tim  cook", "works for", "apple")]))
    assert keys.entities == {("tim cook", "person")}
    assert len(keys.relations) == 1 and keys.triplets == {("tim cook", "works for", "apple")}
    assert GraphKeys.of(None) == GraphKeys.of(Graph())
