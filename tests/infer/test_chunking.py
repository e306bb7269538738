"""Chunking long texts and merging the chunk graphs (unit level, plus the Runner on a scripted backend)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from t2g.infer.backends import Generation, Request
from t2g.infer.chunking import chunk_text, merge_graphs
from t2g.infer.runner import CHUNK_FAILED, Runner, make_request
from t2g.task.schema import Entity, Graph, Relation


def words(text: str) -> int:
    return len(text.split())


def test_short_text_is_one_chunk():
    [c] = chunk_text("Tim Cook runs Apple.", 10, 2, words)
    assert (c.text, c.start, c.end) == ("Tim Cook runs Apple.", 0, 20)


def test_chunks_fit_overlap_and_cover_every_word():
    text = " ".join(f"w{i}" for i in range(50))
    chunks = chunk_text(text, 10, 3, words)
    assert all(words(c.text) <= 10 for c in chunks)
    assert all(text[c.start:c.end] == c.text for c in chunks)
    covered = [w for c in chunks for w in c.text.split()]
    assert set(covered) == set(text.split())
    for a, b in zip(chunks, chunks[1:]):
        shared = set(a.text.split()) & set(b.text.split())
        assert len(shared) == 3 and b.start > a.start


def test_chunks_prefer_sentence_ends():
    text = "One two three four five six seven. Eight nine ten eleven twelve thirteen fourteen."
    first = chunk_text(text, 9, 0, words)[0]
    assert first.text.endswith("seven.")


def test_a_word_longer_than_the_limit_is_its_own_chunk():
    chunks = chunk_text("a " + "x" * 30 + " b", 10, 0, len)
    assert [c.text for c in chunks] == ["a", "x" * 30, "b"]


@pytest.mark.parametrize("size,overlap", [(0, 0), (10, 5), (10, -1)])
def test_bad_sizes_are_rejected(size, overlap):
    with pytest.raises(ValueError):
        chunk_text("a b c", size, overlap)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abcXYZ.,é", min_size=1, max_size=12), min_size=1, max_size=80),
       st.integers(3, 40), st.integers(0, 20))
def test_chunking_property(tokens, size, overlap):
    overlap = min(overlap, (size - 1) // 2)
    text = " ".join(tokens)
    chunks = chunk_text(text, size, overlap, len)
    starts = [c.start for c in chunks]
    assert starts == sorted(set(starts))
    assert chunks[-1].end == len(text.rstrip())
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert len(c.text) <= size or " " not in c.text  # only a lone over-long word may exceed
    for m in re.finditer(r"\S+", text):  # every word lies whole inside some chunk
        assert any(c.start <= m.start() and m.end() <= c.end for c in chunks)


def test_merge_dedups_on_normalised_keys_and_keeps_first_form():
    a = Graph((Entity("Tim Cook", "person"), Entity("Apple", "organization")), (Relation("Tim Cook", "Apple", "works for"),))
    b = Graph((Entity("tim  cook", "Person"), Entity("Cupertino", "location")),
              (Relation("TIM COOK", "apple", "Works For"), Relation("Apple", "Cupertino", "based in")))
    merged = merge_graphs([a, b])
    assert [e.text for e in merged.entities] == ["Tim Cook", "Apple", "Cupertino"]
    assert [(r.head, r.type) for r in merged.relations] == [("Tim Cook", "works for"), ("Apple", "based in")]
    assert merge_graphs([]) == Graph()


class WordBackend:
    """Counts words as tokens and answers with the capitalised words of each chunk as entities."""

    name = "scripted"

    def __init__(self, context_length: int, fail_on: str | None = None):
        self.context_length = context_length
        self.fail_on = fail_on
        self.seen: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, requests, *, max_new_tokens, constrained=False, reasoning=False):
        out = []
        for r in requests:
            self.seen.append(r.text)
            if self.fail_on and self.fail_on in r.text:
                out.append(Generation("{\"entities\": [", None))
                continue
            caps = [w.strip(".") for w in r.text.split() if w[0].isupper()]
            ents = [{"text": w, "type": "name"} for w in caps]
            rels = [{"head": a, "tail": b, "type": "next"} for a, b in zip(caps, caps[1:])]
            out.append(Generation(json.dumps({"entities": ents, "relations": rels})))
        return out


def long_text(n: int) -> str:
    return " ".join(f"Name{i} met someone there." for i in range(n))


def test_runner_chunks_a_text_longer_than_the_context_and_merges():
    request = make_request(long_text(60), ["name"], ["next"])
    backend = WordBackend(context_length=300)
    prompt = sum(len(m["content"].split()) for m in make_request(".", ["name"], ["next"]).messages()) - 1
    [result] = Runner(backend, max_new_tokens=100, chunk_overlap=8).run([request])
    assert result.chunks == len(backend.seen) > 1
    assert all(prompt + len(t.split()) + 100 <= 300 for t in backend.seen)  # each chunk's prompt fits
    assert result.ok and result.graph is not None
    assert [e.text for e in result.graph.entities] == [f"Name{i}" for i in range(60)]  # overlap deduplicated
    assert len(result.chunk_completions) == result.chunks and result.completion.count("\n\n") == result.chunks - 1


def test_a_chunked_text_gets_offsets_into_the_whole_text():
    text = long_text(60)
    [result] = Runner(WordBackend(context_length=300), max_new_tokens=100, chunk_overlap=8).run([make_request(text, ["name"], ["next"])])
    assert result.chunks > 1
    by_text = {e.text: e.spans for e in result.graph.entities}
    last = text.index("Name59 ")
    assert (last, last + 6) in by_text["Name59"] and last > len(text) // 2  # far beyond the first chunk
    for entity in result.graph.entities:  # every occurrence ("Name1" is in "Name10" too), each as written
        assert entity.spans and all(text[s:e] == entity.text for s, e in entity.spans)
    for rel in result.graph.relations:
        assert rel.head_spans == by_text[rel.head] and rel.tail_spans == by_text[rel.tail]


def test_runner_keeps_good_chunks_when_one_fails():
    request = make_request(long_text(60), ["name"], ["next"])
    [result] = Runner(WordBackend(300, fail_on="Name30 "), max_new_tokens=100, chunk_overlap=0).run([request])
    assert result.error == CHUNK_FAILED and "truncated" in result.detail
    assert result.graph is not None and "Name0" in {e.text for e in result.graph.entities}
    assert "Name30" not in {e.text for e in result.graph.entities}


def test_runner_refuses_a_context_too_small_for_the_prompt():
    with pytest.raises(ValueError, match="n_ctx"):
        Runner(WordBackend(50), max_new_tokens=40).run([make_request("a b", ["x"], ["y"])])


def test_short_texts_are_not_chunked_and_keep_their_order():
    backend = WordBackend(context_length=2000)
    texts = ["Zed is long " * 5, "Amy.", "Bo went home."]
    results = Runner(backend, batch_size=2).run([make_request(t, ["name"], ["next"]) for t in texts])
    assert [r.chunks for r in results] == [1, 1, 1]
    assert [[e.text for e in r.graph.entities][0] for r in results] == ["Zed", "Amy", "Bo"]
    assert isinstance(Request("a", ("x",), ("y",)).messages()[1]["content"], str)
