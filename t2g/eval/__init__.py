"""Evaluation: a model on a dataset -> a report and a page to look at, with the task's one scorer.

May import `t2g.task`, `t2g.data`, `t2g.infer`, `t2g.flags` and `t2g.files`.

    evaluate.py     `t2g evaluate` (its flags, `evaluate()`): predictions, report.json / report.md / per-type chart / view.html
    predictions.py  prediction files, paired with gold by id, scored
    compare.py      `t2g compare`: a paired bootstrap interval for B minus A
    view.py         `t2g view`: predictions (and gold) as one self-contained HTML page to check by eye
    view_page.py    that page's HTML, CSS and script (inline, nothing fetched)
    conditions.py   `t2g type-conditions`: test sets (renamed, subset, distractor, empty types) that ask whether a model reads its type lists
"""
