"""`t2g view`: the page's data (statuses by the scorer's keys, per-text F1, offsets), escaping, bad
input, and the page itself in a real headless Chromium (offsets, diff classes, escaping, hover,
anchors across pages, filters, a screenshot)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from devtools import FLAGS as BROWSER_FLAGS
from devtools import Browser

from t2g.data.canonical import Example, write_jsonl
from t2g.eval.view import page_data, read_rows, type_colour, write_view
from t2g.task.schema import Graph, locate
from t2g.task.spans import find_spans

TYPES = (["person", "organization", "location"], ["works for", "located in"])
TEXT_A = "Tim Cook works for Apple in Cupertino. 😀 Apple!"  # an astral character before the second Apple
TEXT_B = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> Ada met Bob & Eve."


def ents(*pairs):
    return [{"text": t, "type": y} for t, y in pairs]


def rels(*triples):
    return [{"head": h, "tail": t, "type": y} for h, t, y in triples]


GOLD = [
    Example("a", TEXT_A, *TYPES, Graph.from_dict({
        "entities": ents(("Tim Cook", "person"), ("Apple", "organization"), ("Cupertino", "location")),
        "relations": rels(("Tim Cook", "Apple", "works for"), ("Apple", "Cupertino", "located in"))})),
    Example("b", TEXT_B, *TYPES, Graph.from_dict({"entities": ents(("Ada", "person"), ("Bob", "person")), "relations": []})),
    Example("c", "Nobody answered for this one, Paris.", *TYPES,
            Graph.from_dict({"entities": ents(("Paris", "location")), "relations": []})),
    Example("d", "It rained.", *TYPES, Graph()),
]
PRED_A = Graph.from_dict({
    "entities": ents(("Tim Cook", "person"), ("Apple", "organization"), ("Tim", "person"), ("Steve", "person")),
    "relations": rels(("Tim Cook", "Apple", "works for"), ("Tim Cook", "Cupertino", "located in"))})
PRED_B = Graph.from_dict({"entities": ents(("<script>", "person"), ("Ada", "person")), "relations": []})
# What a careful reader expects for each item: (text, type, status), in the page's order.
EXPECTED = {
    "a": ([("Tim Cook", "person", "correct"), ("Apple", "organization", "correct"), ("Tim", "person", "spurious"),
           ("Steve", "person", "spurious"), ("Cupertino", "location", "missed")],
          [("Tim Cook", "Apple", "correct"), ("Tim Cook", "Cupertino", "spurious"), ("Apple", "Cupertino", "missed")]),
    "b": ([("<script>", "person", "spurious"), ("Ada", "person", "correct"), ("Bob", "person", "missed")], []),
    "c": ([("Paris", "location", "missed")], []),
    "d": ([], []),
}


def pred_rows():
    """Rows as `t2g evaluate` writes them: the text, the located graph, the completion."""
    return [
        {"id": "a", "text": TEXT_A, "graph": locate(PRED_A, TEXT_A).to_dict(spans=True), "completion": PRED_A.to_json(), "error": None},
        {"id": "b", "text": TEXT_B, "graph": locate(PRED_B, TEXT_B).to_dict(spans=True), "completion": PRED_B.to_json(), "error": None},
        {"id": "d", "text": "It rained.", "graph": None, "completion": "I found nothing.", "error": "no_json"},
    ]


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def files(tmp_path):
    gold = tmp_path / "gold.jsonl"
    write_jsonl(gold, GOLD)
    return write_rows(tmp_path / "pred.jsonl", pred_rows()), gold


def test_statuses_f1_and_offsets_on_a_hand_made_case(files):
    pred, gold = files
    data = page_data(read_rows(pred), GOLD)
    rows = {r["id"]: r for r in data["rows"]}
    assert list(rows) == ["a", "b", "c", "d"]  # gold order; "c" has no prediction row
    for rid, (want_ents, want_rels) in EXPECTED.items():
        assert [(e["t"], e["y"], e["k"]) for e in rows[rid]["ents"]] == want_ents, rid
        assert [(r["h"], r["t"], r["k"]) for r in rows[rid]["rels"]] == want_rels, rid
        for e in rows[rid]["ents"]:
            assert e["s"] == [list(s) for s in find_spans(rows[rid]["text"], e["t"])]
    assert rows["a"]["ents"][1]["s"] == [[19, 24], [41, 46]] and TEXT_A[41:46] == "Apple"  # code points, past the emoji
    assert rows["a"]["ents"][3]["s"] == []  # "Steve" is not in the text
    assert rows["a"]["f1"] == [pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)), 0.5]
    assert rows["c"]["error"] == "no_prediction" and rows["c"]["f1"] == [0.0, 1.0]
    assert rows["d"]["error"] == "no_json" and rows["d"]["completion"] == "I found nothing." and rows["d"]["f1"] == [1.0, 1.0]
    assert all(r["bad"] for r in rows.values())
    assert data["colours"] == {t: type_colour(t) for t in ("person", "organization", "location")}


def test_without_gold_the_file_is_shown_as_it_is(tmp_path):
    """`t2g extract` output: texts from the rows, the spans the rows state, no statuses."""
    row = {"id": 7, "text": "Apple and apple", "graph": {"entities": [{"text": "Apple", "type": "org", "spans": [[0, 5]]}],
                                                           "relations": []}}
    data = page_data(read_rows(write_rows(tmp_path / "p.jsonl", [row, {"id": "x", "text": "Bo", "completion": '{"entities": '
                                                                      '[{"text": "bo", "type": "p"}], "relations": []}'}])), None)
    first, second = data["rows"]
    assert first["id"] == "7" and first["ents"] == [{"t": "Apple", "y": "org", "s": [[0, 5]]}]  # as stated
    assert second["ents"] == [{"t": "bo", "y": "p", "s": [[0, 2]]}]  # a completion: located by the one rule
    assert data["totals"] is None and "f1" not in first


def test_every_text_reaches_the_page_as_data_never_as_markup(tmp_path, files):
    pred, gold = files
    out = tmp_path / "page.html"
    write_view(out, pred, gold, title="<b>title</b> %DATA%")
    page = out.read_text(encoding="utf-8")
    assert page.count("<script") == 2 and page.count("</script>") == 2  # the data element and the page's own
    assert "<img" not in page and "<b>title" not in page and "&lt;b&gt;title&lt;/b&gt; %DATA%" in page
    blob = page.split('<script type="application/json" id="t2g-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(blob)["rows"][1]["text"] == TEXT_B
    assert "http://" not in page and "https://" not in page  # nothing fetched


def test_colours_are_stable_per_type():
    assert type_colour("person") == type_colour("PERSON ") == "hsl(96, 70%, 80%)"  # pinned: the same on every page
    assert type_colour("person") != type_colour("location")


def test_thousands_of_rows_are_quick(tmp_path):
    n = 5000
    gold = [Example(f"r{i}", f"Person{i} works for Org{i}.", *TYPES, Graph.from_dict({
        "entities": ents((f"Person{i}", "person"), (f"Org{i}", "organization")),
        "relations": rels((f"Person{i}", f"Org{i}", "works for"))})) for i in range(n)]
    write_jsonl(tmp_path / "g.jsonl", gold)
    write_rows(tmp_path / "p.jsonl", [{"id": ex.id, "text": ex.text, "graph": locate(ex.graph, ex.text).to_dict(spans=True)}
                                      for ex in gold])
    start = time.perf_counter()
    assert write_view(tmp_path / "v.html", tmp_path / "p.jsonl", tmp_path / "g.jsonl", page_size=100) == n
    assert time.perf_counter() - start < 20
    assert (tmp_path / "v.html").stat().st_size < 400 * n


@pytest.mark.parametrize("case,fragment", [
    ("missing_pred", "nowhere.jsonl: no such prediction file"),
    ("missing_gold", "nogold.jsonl: no such gold file"),
    ("no_id", "pred.jsonl:2: a prediction row needs an 'id'"),
    ("not_in_gold", "pred.jsonl:3: id 'zz' is not in the gold data"),
    ("no_text", "pred.jsonl:1: the row has no 'text'; give --gold"),
    ("bad_spans", "pred.jsonl:1: 'spans' of 'Tim'"),
    ("not_json", "pred.jsonl:2: not valid JSON"),
])
def test_bad_input_is_one_line_naming_the_file_and_line(tmp_path, files, capsys, case, fragment):
    from t2g.cli import main

    pred, gold = files
    rows = pred_rows()
    argv = ["view", "--pred", str(pred), "--gold", str(gold), "--out", str(tmp_path / "v.html")]
    if case == "missing_pred":
        argv[2] = str(tmp_path / "nowhere.jsonl")
    elif case == "missing_gold":
        argv[4] = str(tmp_path / "nogold.jsonl")
    elif case == "no_id":
        write_rows(pred, [rows[0], {"text": "x", "completion": "{}"}])
    elif case == "not_in_gold":
        write_rows(pred, rows[:2] + [{"id": "zz", "text": "x", "completion": "{}"}])
    elif case == "no_text":
        write_rows(pred, [{"id": "a", "completion": "{}"}])
        argv = argv[:3] + argv[5:]
    elif case == "bad_spans":
        write_rows(pred, [{"id": "a", "text": TEXT_A, "graph": {"entities": [{"text": "Tim", "type": "person", "spans": [[0, 999]]}],
                                                                "relations": []}}])
    elif case == "not_json":
        pred.write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("t2g: error: ") and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "v.html").exists()


def test_cli_writes_the_page(tmp_path, files, capsys):
    from t2g.cli import main

    pred, gold = files
    main(["view", "--pred", str(pred), "--gold", str(gold), "--out", str(tmp_path / "v.html")])
    assert "wrote" in capsys.readouterr().err and (tmp_path / "v.html").read_text().startswith("<!DOCTYPE html>")


# --- in a real browser -------------------------------------------------------------------------

VOID = {"meta", "input", "br", "img", "link", "hr"}


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    pytest.skip("no Chromium on this machine: `apt-get install chromium` (.ci/run installs it when it runs as root)")


class Dom(HTMLParser):
    """The rendered page read back: per row its text pieces (with the segment around each), entity
    and relation items with their classes; every tag counted."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, dict] = {}
        self.tags: Counter = Counter()
        self.title = ""
        self.stack: list[tuple[str, dict, list[str]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        cls = a.get("class", "").split()
        self.tags[tag] += 1
        if tag == "article":
            self.row = self.rows[a["id"]] = {"pieces": [], "ents": [], "rels": [], "classes": cls}
        if tag == "li" and "ent" in cls:
            self.row["ents"].append({"classes": cls, "text": ""})
        if tag == "li" and "rel" in cls:
            self.row["rels"].append({"classes": cls, "text": ""})
        if tag not in VOID:
            self.stack.append((tag, a, cls))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        names = [t for t, _, _ in self.stack]
        if names and names[-1] == "title":
            self.title += data
        classes = [c for _, _, cls in self.stack for c in cls]
        if "text" in classes and "row" in classes:
            seg = next((a for t, a, cls in reversed(self.stack) if "seg" in cls), None)
            self.row["pieces"].append((data, seg))
        elif "ent" in classes:
            self.row["ents"][-1]["text"] += data
        elif "rel" in classes and self.stack[-1][2] and self.stack[-1][2][0] in ("head", "tail"):
            self.row["rels"][-1]["text"] += ("" if self.stack[-1][2][0] == "head" else " -> ") + data


def highlighted(row: dict) -> tuple[str, dict[int, list[list[int]]]]:
    """The row's text as drawn, and for each entity index the stretches drawn for it (merged)."""
    text, runs = "", {}
    for data, seg in row["pieces"]:
        start, text = len(text), text + data
        if seg is None:
            continue
        assert (int(seg["data-s"]), int(seg["data-x"])) == (start, len(text))  # the attributes hover relies on
        for i in map(int, seg["data-e"].split()):
            spans = runs.setdefault(i, [])
            if spans and spans[-1][1] == start:
                spans[-1][1] = len(text)
            else:
                spans.append([start, len(text)])
    return text, runs


def browse(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_the_page_in_headless_chromium(tmp_path, files, chromium):
    pred, gold = files
    page = tmp_path / "view.html"
    write_view(page, pred, gold, title="hand-made case")
    done = browse(chromium, tmp_path, "--virtual-time-budget=5000", "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = Dom(done.stdout)
    assert set(dom.rows) == {"row-a", "row-b", "row-c", "row-d"}
    data = {r["id"]: r for r in page_data(read_rows(pred), GOLD)["rows"]}
    stated = {r["id"]: r for r in map(json.loads, pred.read_text().splitlines())}
    for rid, (want_ents, want_rels) in EXPECTED.items():
        row = dom.rows[f"row-{rid}"]
        text, runs = highlighted(row)
        assert text == data[rid]["text"]  # every character, in order, as text
        graph = stated[rid]["graph"] if rid in stated else None
        for i, ent in enumerate(data[rid]["ents"]):
            assert runs.get(i, []) == ent["s"], (rid, ent)  # highlighted exactly at the offsets
            if graph and i < len(graph["entities"]):
                assert ent["s"] == graph["entities"][i]["spans"]  # ... which are the file's own
        assert [(e["text"], [c for c in e["classes"] if c.startswith("st-")]) for e in row["ents"]] == \
            [(t + y + ("not in text" if t == "Steve" else "") + {"correct": "✓ correct"}.get(k, k), [f"st-{k}"])
             for t, y, k in want_ents]
        assert [(r["text"], [c for c in r["classes"] if c.startswith("st-")]) for r in row["rels"]] == \
            [(f"{h} -> {t}", [f"st-{k}"]) for h, t, k in want_rels]
    # Escaping: the markup in row b is text; no element came from it and the title is untouched.
    assert dom.tags["img"] == 0 and dom.tags["script"] == 2 and dom.title == "hand-made case"
    assert "row" in dom.rows["row-b"]["classes"] and "bad" in dom.rows["row-b"]["classes"]
    shot = tmp_path / "view.png"
    done = browse(chromium, tmp_path, "--hide-scrollbars", "--window-size=1100,800", f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


SEGMENTS = """(function (cls) { return Array.from(document.querySelectorAll('#row-a .seg.' + cls))
  .map(function (s) { return [+s.dataset.s, +s.dataset.x]; }); })"""
COUNT = "document.getElementById('count').textContent"


@pytest.mark.slow
def test_hover_anchors_pages_and_filters_in_headless_chromium(tmp_path, chromium):
    extra = [Example(f"r{i}", f"Person{i} works for Org{i}.", *TYPES, Graph.from_dict({
        "entities": ents((f"Person{i}", "person"), (f"Org{i}", "organization")), "relations": []})) for i in range(2000)]
    write_jsonl(tmp_path / "gold.jsonl", GOLD + extra)
    rows = pred_rows() + [{"id": ex.id, "text": ex.text, "graph": {"entities": ents((f"Person{i}", "person")) +
                           (ents((f"Org{i}", "organization")) if i % 2 else []), "relations": []}} for i, ex in enumerate(extra)]
    write_rows(tmp_path / "pred.jsonl", rows)
    page_file = tmp_path / "view.html"
    write_view(page_file, tmp_path / "pred.jsonl", tmp_path / "gold.jsonl", page_size=50)
    with Browser(chromium, tmp_path / "profile", page_file.as_uri() + "#row-r1300") as page:
        page.wait_for("document.readyState === 'complete' && !!document.querySelector('article.target')")
        # An anchor to a row on page 27 of 41 (index 1304 of 2004): that page is drawn, and only it.
        state = page.js("({n: document.querySelectorAll('article.row').length, target: document.querySelector("
                        "'article.target').id, count: " + COUNT + "})")
        assert state == {"n": 50, "target": "row-r1300", "count": "1301\u20131350 of 2004 rows, page 27 of 41"}
        page.js("location.hash = '#row-a'")
        page.wait_for("!!document.querySelector('#row-a.target')")
        # Hovering a relation marks both of its ends; leaving clears them; a click pins them.
        head, tail = [[list(s) for s in find_spans(TEXT_A, m)] for m in ("Tim Cook", "Apple")]
        relation = "document.querySelector('#row-a li.rel[data-r=\"0\"]')"
        page.js(relation + ".dispatchEvent(new MouseEvent('mouseenter'))")
        assert _merged(page.js(SEGMENTS + "('hl-h')")) == head and _merged(page.js(SEGMENTS + "('hl-t')")) == tail
        page.js(relation + ".dispatchEvent(new MouseEvent('mouseleave'))")
        assert page.js(SEGMENTS + "('hl-h')") == [] and page.js(SEGMENTS + "('hl-t')") == []
        page.js(relation + ".click(); " + relation + ".dispatchEvent(new MouseEvent('mouseleave'))")
        assert _merged(page.js(SEGMENTS + "('hl-t')")) == tail and page.js(relation + ".classList.contains('pinned')")
        # Filters: rows with errors (a, b, c, d and the 1,000 even rows that missed their organization),
        # by type, and the search box.
        page.js("var c = document.getElementById('only-errors'); c.checked = true; c.dispatchEvent(new Event('change'))")
        assert page.js(COUNT) == "1\u201350 of 1004 rows (2004 in all), page 1 of 21"
        page.js("c.checked = false; c.dispatchEvent(new Event('change'));"
                "var s = document.getElementById('type-filter'); s.value = 'location'; s.dispatchEvent(new Event('change'))")
        assert page.js(COUNT).startswith("1\u20132 of 2 rows")  # a (Cupertino) and c (Paris)
        page.js("s.value = ''; s.dispatchEvent(new Event('change'));"
                "var q = document.getElementById('search'); q.value = 'PERSON1999 '; q.dispatchEvent(new Event('input'))")
        assert page.js(COUNT).startswith("1\u20131 of 1 rows")
        assert page.js("document.querySelector('article.row').id") == "row-r1999"


def _merged(spans: list[list[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and out[-1][1] == s:
            out[-1][1] = e
        else:
            out.append([s, e])
    return out
