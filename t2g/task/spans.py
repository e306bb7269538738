"""Where a mention occurs in its text: the one normalisation, and character spans found with it.

`normalize` (NFKC, casefold, whitespace collapsed) is what the scorer, validation and the rewards
compare strings with. A mention *occurs* in a text where some stretch of the text, as written,
normalises to the mention's normal form; `find_spans(text, mention)` returns every such stretch as
(start, end) Python string indices, end exclusive, in text order, never overlapping one another:

    find_spans("Tim  COOK met tim cook.", "Tim Cook")  ->  [(0, 9), (14, 22)]

A mention is grounded when it has at least one span; the grounding reward, validation
(`SPAN_NOT_IN_TEXT`) and the offsets inference writes all use this one rule (`SpanIndex.grounded`).
Matching is on characters, not words (as the scorer's substring rule always was), so texts without
spaces between words (Chinese, Japanese) ground too.

How: the text is normalised piece by piece, a piece being a character with the combining marks
that follow it (or any run that NFKC would compose), so each normalised character knows which
original characters it came from. A match in that string maps back to the original stretch, and is
kept only if that stretch normalises to the mention exactly; a match that starts or ends inside one
piece's output (the "f" of a "ﬁ" ligature, one "s" of "ß") therefore does not count.
"""

from __future__ import annotations

import re
import unicodedata

Span = tuple[int, int]

_NON_SPACE = re.compile(r"\S+")  # `re` and `str.split` agree on what whitespace is (str.isspace)


def normalize(s: str) -> str:
    """Unicode NFKC, casefold, whitespace collapsed and stripped."""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


class SpanIndex:
    """One text, normalised once; `find(mention)` for each mention. The character map back to the
    text is built on the first mention that passes the cheap test (its normal form is a substring
    of the text's), so texts whose mentions are all ungrounded cost one `normalize`."""

    def __init__(self, text: str):
        self.text = text
        self.norm = normalize(text)
        self._ascii = text.isascii()
        self._mapped: str | None = None  # the text normalised piece by piece (== self.norm but in odd cases)
        self._starts: list[int] = []  # per character of _mapped: where its piece starts in the text
        self._ends: list[int] = []  # ... and ends

    def find(self, mention: str) -> list[Span]:
        """Every stretch of the text that normalises to `mention`, in order, non-overlapping; [] when none."""
        return list(self._iter(normalize(mention)))

    def grounded(self, mention: str) -> bool:
        """Does `mention` occur in the text (at least one span)? The grounding rule of the whole kit."""
        target = normalize(mention)
        if self._ascii:
            # In ASCII text every match in the normal form is a stretch that normalises to it (the map
            # is one to one but for whitespace runs), so the first span exists iff the substring does:
            # rewards ground ASCII texts at the cost of one `in`, without building the map.
            return bool(target) and target in self.norm
        return next(self._iter(target), None) is not None

    def _iter(self, target: str):
        if not target or target not in self.norm:
            return
        if self._mapped is None:
            self._build()
        mapped, starts, ends, text = self._mapped, self._starts, self._ends, self.text
        pos, last_end = 0, 0
        while (i := mapped.find(target, pos)) >= 0:
            start, end = starts[i], ends[i + len(target) - 1]
            if start >= last_end and normalize(text[start:end]) == target:
                yield start, end
                last_end, pos = end, i + len(target)
            else:
                pos = i + 1

    def _build(self) -> None:
        chars: list[str] = []
        if self._ascii:
            # ASCII is NFKC-stable and casefolds to lower(), one character for one: only the
            # whitespace runs change, so the map is the positions of the words.
            lowered = self.text.lower()
            for word in _NON_SPACE.finditer(lowered):
                if chars:
                    chars.append(" ")
                    self._starts.append(self._ends[-1])
                    self._ends.append(word.start())
                chars.append(word.group())
                self._starts.extend(range(word.start(), word.end()))
                self._ends.extend(range(word.start() + 1, word.end() + 1))
        else:
            self._build_pieces(chars)
        self._mapped = "".join(chars)

    def _build_pieces(self, chars: list[str]) -> None:
        pending_space = False
        for start, end in _pieces(self.text):
            for ch in unicodedata.normalize("NFKC", self.text[start:end]).casefold():
                if ch.isspace():
                    pending_space = bool(chars)  # leading whitespace is dropped, runs become one space
                    continue
                if pending_space:
                    chars.append(" ")
                    self._starts.append(self._ends[-1])
                    self._ends.append(start)
                    pending_space = False
                chars.append(ch)
                self._starts.append(start)
                self._ends.append(end)


def _pieces(text: str) -> list[Span]:
    """The text cut where normalising the parts apart equals normalising them together: a piece is
    a character with the combining marks after it, or a run NFKC composes (Hangul jamo, some
    Indic vowel signs)."""
    out: list[Span] = []
    start = 0
    for i in range(1, len(text) + 1):
        if i < len(text):
            ch = text[i]
            if unicodedata.combining(ch):
                continue
            if not (ch.isascii() and text[i - 1].isascii()):
                piece = text[start:i]
                if unicodedata.normalize("NFKC", piece + ch) != unicodedata.normalize("NFKC", piece) + unicodedata.normalize("NFKC", ch):
                    continue
        if i > start:
            out.append((start, i))
        start = i
    return out


def find_spans(text: str, mention: str) -> list[Span]:
    """Every (start, end) where `mention` occurs in `text` under `normalize`; see the module docstring."""
    return SpanIndex(text).find(mention)
