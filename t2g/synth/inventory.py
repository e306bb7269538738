"""Type inventories: turn the type names a teacher proposes into one clean list, and map onto it.

Teachers spell the same type many ways: "Person", "persons", "PERSON", "works_for", "Works-For".
Two names are the same type when their keys agree: `normalize` (NFKC, casefold, whitespace),
`_` and `-` read as spaces, and the last word singularised by a few English rules (people ->
person is left alone: a rule list that guesses wrong is worse than two types). The inventory
keeps the types seen in at least `min_count` graphs, the `max_types` most frequent, each under
its most frequent spelling. A fixed inventory from the user goes through the same keys, so a
teacher answering "Persons" for "person" is mapped, not dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from t2g.task.schema import normalize


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def type_key(name: str) -> str:
    """The key under which spellings of one type collapse ("Works_For" == "works for")."""
    words = re.sub(r"[_\-]+", " ", normalize(name)).split()
    if not words:
        return ""
    return " ".join(words[:-1] + [_singular(words[-1])])


def display_name(name: str) -> str:
    """The spelling written to the data: lower case, single spaces, no underscores."""
    return " ".join(re.sub(r"[_\-]+", " ", normalize(name)).split())


@dataclass(frozen=True)
class Inventory:
    """Type names by key; `canonical(name)` is the inventory's spelling, or None if not in it."""

    names: dict[str, str]  # key -> canonical spelling, in inventory order

    @classmethod
    def fixed(cls, types: Sequence[str], flag: str) -> "Inventory":
        names: dict[str, str] = {}
        for t in types:
            key = type_key(t)
            if not key:
                raise ValueError(f"{flag}: empty type name in {list(types)!r}")
            if key in names and names[key] != t:
                raise ValueError(f"{flag}: {names[key]!r} and {t!r} name the same type; give one of them")
            names[key] = t  # the user's spelling is kept exactly
        return cls(names)

    @classmethod
    def from_counts(cls, counts: Counter, min_count: int, max_types: int) -> "Inventory":
        """From {proposed spelling: number of graphs using it}: merged by key, rare ones cut."""
        by_key: dict[str, Counter] = {}
        for name, n in counts.items():
            key = type_key(name)
            if key:
                by_key.setdefault(key, Counter())[display_name(name)] += n
        totals = sorted(by_key.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        names = {}
        for key, spellings in totals[:max_types]:
            if sum(spellings.values()) >= min_count:
                # Most frequent spelling; ties go to the shortest, then alphabetical: deterministic.
                names[key] = min(spellings.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0]
        return cls(names)

    @property
    def types(self) -> list[str]:
        return list(self.names.values())

    def canonical(self, name: str) -> str | None:
        return self.names.get(type_key(name))


def count_types(names_per_graph: Iterable[Iterable[str]]) -> Counter:
    """How many graphs use each spelling (a type repeated within one graph counts once)."""
    counts: Counter = Counter()
    for names in names_per_graph:
        counts.update(set(names))
    return counts
