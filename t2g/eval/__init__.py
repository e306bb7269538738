"""Evaluation: a model on a dataset -> a report, with the task's one scorer.

May import `t2g.task`, `t2g.data`, `t2g.infer`, `t2g.flags` and `t2g.files`.

    evaluate.py     `t2g evaluate` (its flags, `evaluate()`): predictions, report.json / report.md / per-type chart
    predictions.py  prediction files, paired with gold by id, scored
    compare.py      `t2g compare`: a paired bootstrap interval for B minus A
"""
