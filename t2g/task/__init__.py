"""The task itself: the graph schema, the one prompt, the parser, the scorer, the type grammar.

Everything else stands on this folder (training targets, rewards, evaluation, inference, the
teacher), so it imports nothing from the rest of t2g and nothing heavy: plain Python only.

    spans.py        the one normalisation, and where a mention occurs in a text (offsets, grounding)
    schema.py       Graph / Entity / Relation, validation against a text and its type lists
    prompts.py      the versioned prompt and the SFT target rendering
    parsing.py      any completion -> a graph, or the precise reason why not
    scoring.py      the one scorer (strict and boundaries P/R/F1) behind rewards and evaluation
    constrained.py  the type lists as a GBNF grammar or a JSON schema (constrained decoding)
"""
