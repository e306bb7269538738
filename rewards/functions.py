"""The rewards, one function each, with its range documented: `Analysis -> float` for a completion alone,
`Sequence[Analysis] -> list[float]` for `relation_gain`, which prices a completion by its batch.

Design: the only way to a high total is a correct, grounded, type-conditioned graph.
- Positive credit comes from the answer's quality (strict entity/relation F1 from `t2g.task.scoring`)
  and, a little, from its form (think format, JSON validity).
- The hygiene terms (grounding, type adherence, consistency) are penalties in [-1, 0]: a clean
  graph scores 0, so an empty graph gains nothing from them. A completion without a usable graph
  scores their worst, -1: otherwise breaking the JSON would be a way out of the penalties.
- A completion cut at the length limit gets no credit anywhere and -1 from `truncation`.
- Scores use `Analysis.graph` (the parser's strict reading), never a graph salvaged from around
  junk, so a reward and the reported metric judge the same thing.
"""

from __future__ import annotations

from typing import Sequence

from t2g.task.parsing import THINK_CLOSE, THINK_OPEN, TEXT_BEFORE_JSON, TRAILING_TEXT, WRONG_SHAPE
from t2g.task.schema import DANGLING_HEAD, DANGLING_TAIL, DUPLICATE_ENTITY, DUPLICATE_RELATION, SPAN_NOT_IN_TEXT, UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE

from rewards.analysis import Analysis

# Per-item violation kinds each hygiene penalty counts.
_TYPE_KINDS = frozenset({UNKNOWN_ENTITY_TYPE, UNKNOWN_RELATION_TYPE})
_CONSISTENCY_KINDS = frozenset({DANGLING_HEAD, DANGLING_TAIL, DUPLICATE_ENTITY, DUPLICATE_RELATION})

# soft_entity_match compares each distinct predicted entity with every gold entity; beyond this
# many distinct predictions the rest count as misses (a spam list, and a bounded cost).
SOFT_MATCH_MAX_PREDICTIONS = 256


def format_reward(a: Analysis) -> float:
    """Reasoning format, in [0, 1]: 1.0 for exactly one non-empty `<think>` block, first, then a
    non-empty answer; 0.0 otherwise (no block, tags alone or empty, `</think><think>`, a second
    block, text before the block, nothing after it, or a cut completion)."""
    if a.truncated or a.oversized:
        return 0.0
    text = a.text.strip()
    if not text.startswith(THINK_OPEN) or text.count(THINK_OPEN) != 1 or text.count(THINK_CLOSE) != 1:
        return 0.0
    close_at = text.find(THINK_CLOSE)
    reasoning, answer = text[len(THINK_OPEN):close_at], text[close_at + len(THINK_CLOSE):]
    return 1.0 if reasoning.strip() and answer.strip() else 0.0


def json_valid(a: Analysis) -> float:
    """JSON/schema validity, graded, in [0, 1]: 1.0 a graph exactly per the contract (one JSON
    object, optionally fenced, nothing around it); 0.5 a graph with text before or after it;
    0.25 valid JSON of the wrong shape; 0.0 no JSON, invalid or cut JSON, empty, oversized."""
    if a.graph is not None:
        return 1.0
    if a.truncated or a.parse is None:
        return 0.0
    if a.parse.error in (TEXT_BEFORE_JSON, TRAILING_TEXT):
        return 0.5
    if a.parse.error == WRONG_SHAPE:
        return 0.25
    return 0.0


def entity_f1(a: Analysis) -> float:
    """Strict entity F1 (text, type) from `t2g.task.scoring`, in [0, 1]; an empty prediction for an
    empty gold graph is 1.0; no usable graph is 0.0 (even when the gold graph is empty)."""
    return a.score.entity.f1 if a.score is not None else 0.0


def relation_f1(a: Analysis) -> float:
    """Strict relation F1 (head, head type, type, tail, tail type) from `t2g.task.scoring`, in [0, 1];
    empty vs empty is 1.0; no usable graph is 0.0."""
    return a.score.relation.f1 if a.score is not None else 0.0


def batch_relation_f1(analyses: Sequence[Analysis]) -> float:
    """Corpus (micro) strict relation F1 of a batch of completions, 0.0 when it has no relation at all; a
    completion without a usable graph predicts nothing and still counts its gold relations."""
    tp = predicted = gold = 0
    for a in analyses:
        gold += len(a.gold.relations)
        if a.score is not None:
            tp += a.score.relation.tp
            predicted += a.score.relation.n_pred
    return 2 * tp / (predicted + gold) if predicted + gold else 0.0


def relation_gain(analyses: Sequence[Analysis]) -> list[float]:
    """TRAINING ONLY, scored per batch: each sentence's share of corpus (micro) relation F1, in [-1, 1]:
    (2 TP - F x predicted) / ((2 - F) x max(gold, 1)) with F = the batch's own corpus relation F1
    (`batch_relation_f1`), floored at -1.
    Why: corpus F1 = 2 TP / (predicted + gold) gains 2 / (P + G) per true positive and loses F / (P + G) per
    prediction, so a relation is worth predicting when its chance of being right exceeds F / 2, F being the
    corpus F1 of the policy itself. Per-sentence `relation_f1` instead pays 1.0 for no relations where the gold
    has none, as much as a perfect list: a model weak at relations on some prompts learns to predict none there
    (issue 18's GRPO runs on prompts listing foreign relation types). Here leaving relations out earns 0
    whatever the gold, a perfect list 1, and a false positive costs F / (2 - F) of a gold relation. A fixed
    F = 0.5 priced guesses for a better model than SmolLM2-135M (greedy precision 21-36%), and GRPO learnt
    silence from it (docs/results.md, sixteenth session); the batch's F1 follows the policy as it improves.
    Where nothing in the batch is right (F = 0) a guess costs nothing, as it costs corpus F1 nothing. No usable
    graph: 0.0 for no gold relations, else -1.0 (breaking the JSON must not beat a wrong list)."""
    price = batch_relation_f1(analyses)
    out = []
    for a in analyses:
        if a.score is None:
            out.append(-1.0 if a.gold.relations else 0.0)
            continue
        c = a.score.relation
        out.append(max(-1.0, (2 * c.tp - price * c.n_pred) / ((2 - price) * max(c.n_gold, 1))))
    return out


def _flagged_fraction(a: Analysis, kinds: frozenset[str], n_items: int) -> float:
    """Minus the fraction of items (by path) with at least one violation of `kinds`; -1 without a graph."""
    if a.graph is None:
        return -1.0
    if n_items == 0:
        return 0.0
    flagged = {v.path for v in a.violations if v.kind in kinds}
    return -(len(flagged) / n_items) if flagged else 0.0  # never -0.0 in the logs


def grounding(a: Analysis) -> float:
    """Grounding penalty, in [-1, 0]: minus the fraction of entities whose span does not occur in
    the text (normalised); 0.0 for a grounded or empty graph; -1.0 without a usable graph. "Occurs"
    is `t2g.task.spans`' rule, the one that gives inference output its offsets: an entity counted
    here is one whose "spans" come out empty."""
    return _flagged_fraction(a, frozenset({SPAN_NOT_IN_TEXT}), len(a.graph.entities) if a.graph else 0)


def type_adherence(a: Analysis) -> float:
    """Type penalty, in [-1, 0]: minus the fraction of entities and relations whose type is not in
    the given lists (case and spacing do not matter); -1.0 without a usable graph."""
    n = len(a.graph.entities) + len(a.graph.relations) if a.graph else 0
    return _flagged_fraction(a, _TYPE_KINDS, n)


def consistency(a: Analysis) -> float:
    """Consistency penalty, in [-1, 0]: minus the fraction of entities and relations that repeat an
    earlier one or (relations) whose head or tail is not an extracted entity; -1.0 without a
    usable graph."""
    n = len(a.graph.entities) + len(a.graph.relations) if a.graph else 0
    return _flagged_fraction(a, _CONSISTENCY_KINDS, n)


def truncation(a: Analysis) -> float:
    """Truncation penalty, in [-1, 0]: -1.0 for a completion cut at the length limit (or, without
    token counts, visibly cut mid-JSON or mid-think), else 0.0."""
    return -1.0 if a.truncated else 0.0


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0


def soft_entity_match(a: Analysis) -> float:
    """TRAINING ONLY (never an evaluation metric): soft entity F1 in [0, 1] giving partial credit
    for near-miss spans. Each distinct predicted entity is matched to the gold entity of the same
    type with the highest token overlap (Dice over normalised tokens); ungrounded predictions
    earn nothing. Empty vs empty is 1.0; no usable graph is 0.0."""
    if a.pred is None:
        return 0.0
    gold, pred = a.gold.entities, a.pred.entities
    if not gold or not pred:
        return 1.0 if not gold and not pred else 0.0
    gold_tokens = [(frozenset(text.split()), etype) for text, etype in gold]
    best_for_gold = [0.0] * len(gold_tokens)
    precision_sum = 0.0
    for text, etype in sorted(pred)[:SOFT_MATCH_MAX_PREDICTIONS]:
        if not a.ctx.grounded(text):
            continue
        tokens = frozenset(text.split())
        best = 0.0
        for j, (g_tokens, g_type) in enumerate(gold_tokens):
            if g_type == etype:
                s = _overlap(tokens, g_tokens)
                best = max(best, s)
                best_for_gold[j] = max(best_for_gold[j], s)
        precision_sum += best
    p, r = precision_sum / len(pred), sum(best_for_gold) / len(gold_tokens)
    return 2 * p * r / (p + r) if p + r else 0.0

