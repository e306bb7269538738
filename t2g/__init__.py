"""t2g: type-conditioned text-to-graph extraction with small language models.

Light at import time: nothing here imports torch, transformers or unsloth.
"""

from t2g.task.parsing import ParseResult, parse_completion
from t2g.task.prompts import PROMPT_VERSION, build_messages, render_target
from t2g.task.schema import Entity, Graph, Relation, normalize, validate_graph
from t2g.task.scoring import score_corpus, score_example

__version__ = "0.1.0"

__all__ = [
    "Entity", "Graph", "Relation", "ParseResult", "PROMPT_VERSION",
    "build_messages", "normalize", "parse_completion", "render_target",
    "score_corpus", "score_example", "validate_graph",
]
