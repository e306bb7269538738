"""Datasets: the canonical format, converters from public formats, loading, type augmentation.

May import `t2g.task` and `t2g.files`; nothing heavy at import (the hub loader imports `datasets`
inside the function that needs it).

    canonical.py  the canonical JSONL row (`Example`), validated, read and written
    convert.py    SpERT JSON (CoNLL04, SciERC, ADE), open-r1-text2graph rows, the hub
    load.py       `load_examples(source)`: any file, the shipped examples, or a hub name
    augment.py    type-augmented copies that teach the model to follow the type lists
    synonyms.py   training synonyms of type names, for augmented copies with renamed types
    examples/     the 36 multi-domain examples shipped with the package
"""
