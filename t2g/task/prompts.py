"""The prompt: one versioned template for SFT, GRPO, evaluation, inference and export.

Change the wording only together with PROMPT_VERSION: run directories, exported models and
evaluation reports record the version, so a model is always queried the way it was trained.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from t2g.task.parsing import THINK_CLOSE, THINK_OPEN
from t2g.task.schema import Graph

PROMPT_VERSION = "t2g-prompt-v1"

SYSTEM_PROMPT = (
    "You extract knowledge graphs from text. You are given a text, a list of entity types and a "
    "list of relation types. Extract the entities of the given types and the relations of the given "
    "types between them.\n"
    "Rules:\n"
    "- Use only the given entity types and relation types, spelled exactly as given.\n"
    "- Copy each entity's text verbatim from the text.\n"
    "- A relation's head and tail are the texts of extracted entities.\n"
    '- If nothing fits the given types, answer {"entities": [], "relations": []}.\n'
    'Answer with one JSON object: {"entities": [{"text": "...", "type": "..."}], '
    '"relations": [{"head": "...", "tail": "...", "type": "..."}]}'
)

REASONING_INSTRUCTION = (
    f"First think step by step inside {THINK_OPEN} {THINK_CLOSE}, then give the JSON object and nothing else."
)
DIRECT_INSTRUCTION = "Give the JSON object and nothing else."


def _type_list(types: Sequence[str], descriptions: Mapping[str, str] | None) -> str:
    if not types:
        return "(none)"
    if not descriptions:
        return ", ".join(types)
    return "".join(f"\n- {t}" + (f": {descriptions[t]}" if descriptions.get(t) else "") for t in types)


def user_message(
    text: str,
    entity_types: Sequence[str],
    relation_types: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
    reasoning: bool = False,
) -> str:
    return (
        f"Entity types: {_type_list(entity_types, descriptions)}\n"
        f"Relation types: {_type_list(relation_types, descriptions)}\n\n"
        f"Text: {text}\n\n"
        f"{REASONING_INSTRUCTION if reasoning else DIRECT_INSTRUCTION}"
    )


def build_messages(
    text: str,
    entity_types: Sequence[str],
    relation_types: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
    reasoning: bool = False,
) -> list[dict[str, str]]:
    """The chat messages for one extraction request (system + user)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(text, entity_types, relation_types, descriptions, reasoning)},
    ]


def render_target(graph: Graph, reasoning_trace: str | None = None) -> str:
    """The assistant's ideal answer: optional think block, then the canonical JSON.

    Raises ValueError when the trace holds a think tag: the target would not parse back.
    """
    answer = graph.to_json()
    if reasoning_trace is None:
        return answer
    if THINK_OPEN in reasoning_trace or THINK_CLOSE in reasoning_trace:
        raise ValueError(f"a reasoning trace must not contain {THINK_OPEN} or {THINK_CLOSE}")
    return f"{THINK_OPEN}\n{reasoning_trace.strip()}\n{THINK_CLOSE}\n{answer}"
