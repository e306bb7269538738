"""t2g: type-conditioned text-to-graph extraction with small language models.

    from t2g import Extractor
    ex = Extractor("runs/my-run")   # a run directory, an adapter, an HF folder, a .gguf, "smollm2", a server's model
    graph = ex.extract("Tim Cook runs Apple.", ["person", "organization"], ["works for"])

Light at import time: nothing here imports torch, transformers or unsloth. The inference names
(`Extractor`, `ExtractionError`, `Extraction`, `extract`; see `t2g.infer.extractor`) are loaded on
first use, and the model's libraries only when a model loads.
"""

from typing import Any

from t2g.task.parsing import ParseResult, parse_completion
from t2g.task.prompts import PROMPT_VERSION, build_messages, render_target
from t2g.task.schema import Entity, Graph, Relation, normalize, validate_graph
from t2g.task.scoring import score_corpus, score_example

__version__ = "0.1.0"

__all__ = [
    "Entity", "Extraction", "ExtractionError", "Extractor", "Graph", "Relation", "ParseResult", "PROMPT_VERSION",
    "build_messages", "extract", "normalize", "parse_completion", "render_target",
    "score_corpus", "score_example", "validate_graph",
]


def __getattr__(name: str) -> Any:
    # Every `import t2g.<module>` runs this file first: importing the inference API here would load
    # model resolution and the runtimes' modules under the task layer, which imports nothing of them.
    if name in ("Extractor", "ExtractionError", "extract"):
        from t2g.infer import extractor

        return getattr(extractor, name)
    if name == "Extraction":
        from t2g.infer.runner import Extraction

        return Extraction
    raise AttributeError(f"module 't2g' has no attribute {name!r}")
