"""Long texts: cut into overlapping chunks that fit the context, then merge the chunk graphs.

Chunks are runs of whole words (never a cut inside a word), measured by a `count` function: a
tokenizer's token count for the model at hand, or `len` (characters) when there is none. A chunk
prefers to end after a sentence end when one falls in its last third, so that fewer entities are
split between chunks; the overlap repeats the tail of one chunk at the head of the next, so that a
relation whose two entities straddle a cut still appears whole in one chunk.

Merging deduplicates with the project's one normalisation (`t2g.task.schema.normalize`), the same one
the scorer matches on: an entity is (text, type), a relation (head, type, tail); the first surface
form seen is kept. The merged graph's offsets are found afterwards in the whole text
(`t2g.infer.runner`), so they never point into a chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from t2g.task.schema import Entity, Graph, Relation, normalize

_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")


@dataclass(frozen=True)
class Chunk:
    text: str
    start: int  # character offsets into the original text
    end: int


def chunk_text(text: str, max_size: int, overlap: int = 0, count: Callable[[str], int] = len) -> list[Chunk]:
    """Overlapping chunks of at most `max_size` units (as `count` measures them) each.

    A single word larger than `max_size` becomes a chunk of its own (it cannot be split without
    cutting a span); every other chunk fits. `overlap` (same units) must be below `max_size / 2`
    so that every chunk advances.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    if overlap < 0 or 2 * overlap >= max_size:
        raise ValueError(f"overlap must be >= 0 and below max_size / 2 ({max_size / 2:g}), got {overlap}")
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:
        return []
    if count(text) <= max_size:
        return [Chunk(text, 0, len(text))]
    # Per-word sizes (with their leading space, as a tokenizer sees a word mid-text); a chunk's
    # real size is checked with `count` on its text, since the sum can differ by a token or two.
    sizes = [count(text[max(s - 1, 0):e]) for s, e in words]
    chunks: list[Chunk] = []
    first = 0
    while first < len(words):
        last = _pack(text, words, sizes, first, max_size, count)
        last = _prefer_sentence_end(text, words, first, last)
        s, e = words[first][0], words[last][1]
        chunks.append(Chunk(text[s:e], s, e))
        if last == len(words) - 1:
            break
        first = _next_first(sizes, first, last, overlap)
    return chunks


def _pack(text: str, words: list[tuple[int, int]], sizes: list[int], first: int, max_size: int,
          count: Callable[[str], int]) -> int:
    """Index of the last word of the largest chunk starting at `first` that fits `max_size`."""
    total, last = 0, first
    for i in range(first, len(words)):
        if total + sizes[i] > max_size and i > first:
            break
        total += sizes[i]
        last = i
    while last > first and count(text[words[first][0]:words[last][1]]) > max_size:
        last -= 1
    return last


def _prefer_sentence_end(text: str, words: list[tuple[int, int]], first: int, last: int) -> int:
    if last == len(words) - 1:
        return last
    floor = first + (2 * (last - first)) // 3
    for i in range(last, floor, -1):
        if _SENTENCE_END.search(text[words[i][0]:words[i][1]]):
            return i
    return last


def _next_first(sizes: list[int], first: int, last: int, overlap: int) -> int:
    """First word of the next chunk: back from `last` by up to `overlap` units, always advancing."""
    nxt, back = last + 1, 0
    while nxt - 1 > first and back + sizes[nxt - 1] <= overlap:
        nxt -= 1
        back += sizes[nxt]
    return nxt


def merge_graphs(graphs: Iterable[Graph]) -> Graph:
    """One graph from many: entities and relations deduplicated on normalised keys, order kept."""
    entities: dict[tuple[str, str], Entity] = {}
    relations: dict[tuple[str, str, str], Relation] = {}
    for graph in graphs:
        for ent in graph.entities:
            entities.setdefault((normalize(ent.text), normalize(ent.type)), ent)
        for rel in graph.relations:
            relations.setdefault((normalize(rel.head), normalize(rel.type), normalize(rel.tail)), rel)
    return Graph(tuple(entities.values()), tuple(relations.values()))
