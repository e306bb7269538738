"""Is system B better than system A on the same gold data? A paired bootstrap over examples.

Two checkpoints evaluated on a few hundred sentences can differ by a point or two from decoding
near-ties alone (docs/results.md). A difference is worth reporting when it survives resampling the
sentences. Both systems are scored on the same resample (paired): that cancels the variance that
comes from which sentences happen to be hard, so the interval is about A vs B, not about the data.
F1 on a resample is micro F1 from the shared scorer's counts, the same numbers `t2g score` gives.
"""

from __future__ import annotations

from typing import Sequence

from t2g.data.canonical import Example
from t2g.eval.predictions import paired_graphs
from t2g.task.scoring import Counts, score_example

# report name -> ExampleScore field
METRICS = {"entity": "entity", "relation": "relation", "relation_lenient": "relation_boundary"}


def per_example_counts(gold: Sequence[Example], preds: dict[str, dict], source: str) -> dict[str, list[tuple[int, int, int]]]:
    """metric -> one (tp, n_pred, n_gold) per gold example, in gold order."""
    out: dict[str, list[tuple[int, int, int]]] = {m: [] for m in METRICS}
    for pred, gold_graph in paired_graphs(gold, preds, source):
        score = score_example(pred, gold_graph, per_type=False)
        for metric, attr in METRICS.items():
            c = getattr(score, attr)
            out[metric].append((c.tp, c.n_pred, c.n_gold))
    return out


def paired_bootstrap(gold: Sequence[Example], preds_a: dict[str, dict], preds_b: dict[str, dict],
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     sources: tuple[str, str] = ("A", "B")) -> dict:
    """F1 of A and B, B - A, and the percentile interval of B - A over `resamples` resamples of the
    gold examples (with replacement); `p_b_not_better` is the share of resamples where B - A <= 0."""
    import numpy as np

    if resamples < 1:
        raise ValueError(f"resamples={resamples}: need at least 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: give a fraction between 0 and 1, e.g. 0.95")
    if not gold:
        raise ValueError("no gold examples to compare on")
    counts_a = per_example_counts(gold, preds_a, sources[0])
    counts_b = per_example_counts(gold, preds_b, sources[1])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(gold), size=(resamples, len(gold)))  # the same resamples for every metric
    report: dict = {"n_examples": len(gold), "resamples": resamples, "seed": seed, "confidence": confidence}
    for metric in METRICS:
        a, b = np.asarray(counts_a[metric]), np.asarray(counts_b[metric])
        f1_a, f1_b = Counts(*a.sum(axis=0).tolist()).f1, Counts(*b.sum(axis=0).tolist()).f1
        sums_a, sums_b = a[picks].sum(axis=1), b[picks].sum(axis=1)  # [resamples, 3]
        deltas = np.array([Counts(*sb.tolist()).f1 - Counts(*sa.tolist()).f1 for sa, sb in zip(sums_a, sums_b)])
        tail = (1 - confidence) / 2
        report[metric] = {"a": f1_a, "b": f1_b, "delta": f1_b - f1_a,
                          "low": float(np.quantile(deltas, tail)), "high": float(np.quantile(deltas, 1 - tail)),
                          "p_b_not_better": float(np.mean(deltas <= 0))}
    return report
