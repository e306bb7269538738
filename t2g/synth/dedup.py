"""Near-duplicate texts: MinHash over word shingles, LSH banding, exact Jaccard to confirm.

Near-duplicates (boilerplate, re-posted news, templated sentences) waste teacher calls and let a
model memorise. Two texts are near-duplicates when the Jaccard similarity of their sets of word
3-grams (after `normalize`, punctuation ignored) is at least `threshold`; the first one in input order is kept.

Deterministic across processes (blake2b, not Python's salted `hash`), because a resumed run must
drop exactly the same texts as the first one. Candidate pairs come from LSH (16 bands of 4
MinHash values: pairs at Jaccard 0.8 collide with probability ~0.999, at 0.3 ~0.13), and every
candidate is confirmed exactly, so the banding only costs recall far below the threshold.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np

from t2g.task.schema import normalize

SHINGLE = 3
BANDS, ROWS = 16, 4
_PRIME = (1 << 31) - 1  # a*h + b < 2**63 for a, b, h < p: exact in uint64


def _stable(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "big") % _PRIME


# Fixed (a, b) pairs for the MinHash permutations h -> (a*h + b) mod p.
_A = np.array([_stable(f"a{i}") or 1 for i in range(BANDS * ROWS)], dtype=np.uint64)
_B = np.array([_stable(f"b{i}") for i in range(BANDS * ROWS)], dtype=np.uint64)


def shingles(text: str) -> frozenset[str]:
    words = re.findall(r"\w+", normalize(text))  # punctuation and spacing do not make a text new
    if len(words) <= SHINGLE:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1))


def _minhash(sh: frozenset[str]) -> list[int]:
    hashes = np.array([_stable(s) for s in sh], dtype=np.uint64)
    return ((np.outer(hashes, _A) + _B) % _PRIME).min(axis=0).tolist()


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicates(texts: Sequence[str], threshold: float = 0.9) -> dict[int, int]:
    """{index of a dropped text: index of the earlier text it duplicates}. threshold > 1 disables."""
    if threshold > 1:
        return {}
    sets = [shingles(t) for t in texts]
    buckets: dict[tuple, list[int]] = {}
    dropped: dict[int, int] = {}
    for i, sh in enumerate(sets):
        sig = _minhash(sh)
        keys = [(band, tuple(sig[band * ROWS:(band + 1) * ROWS])) for band in range(BANDS)]
        twin = _first_match(i, sets, keys, buckets, threshold)
        if twin is not None:
            dropped[i] = twin
            continue  # a dropped text is not a reference for later ones: compare against kept texts
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return dropped


def _first_match(i: int, sets: list[frozenset[str]], keys: list[tuple], buckets: dict, threshold: float) -> int | None:
    candidates = sorted({j for key in keys for j in buckets.get(key, ())})
    for j in candidates:
        if jaccard(sets[i], sets[j]) >= threshold:
            return j
    return None
