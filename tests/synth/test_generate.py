"""t2g generate: inputs, filters, inventory, traces, resumption and faults (loopback fake teacher),
and one small run against the real llama_cpp.server serving SmolLM2."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest

from servers import FakeServer, chat_body, llama_server, llama_server_available
from t2g.cli import main as cli_main
from t2g.data.canonical import DataError, Example, read_jsonl
from t2g.synth.dedup import near_duplicates
from t2g.synth.config import GenerateConfig
from t2g.synth.generate import generate
from t2g.synth.inventory import Inventory, type_key
from t2g.task.schema import Graph, validate_graph
from t2g.synth.sources import read_sources, text_id
from t2g.synth.probe import PROBE_MAX_TOKENS, PROBE_TEXT
from t2g.synth.teacher import candidate_spans, structured_request, verify_trace

ENTS = ["person", "organization", "location"]
RELS = ["works for", "located in"]
TEXTS = [
    "Alice works for Acme in Paris.",
    "Bob founded Globex.",
    "Carol moved to Berlin.",
    "Dave met Erin in Rome.",
    "Frank leads Initech.",
    "Grace studies in Oslo.",
]


def request_text(body: dict) -> str:
    content = body["messages"][-1]["content"]
    match = re.search(r"Text: (.*?)\n\n", content, re.S)
    return match.group(1) if match else ""


def good_graph(text: str) -> dict:
    """A grounded graph: every capitalised word is a person (the fake teacher's whole skill)."""
    names = re.findall(r"\b[A-Z][a-z]+\b", text)
    return {"entities": [{"text": n, "type": "person"} for n in names], "relations": []}


def teacher_fake(overrides: dict | None = None, log: list | None = None):
    """Answers every request with good_graph(text), unless overrides[first word] gives an action
    (an action list is played in order, the last repeated). `log` gets the first word of each row's
    request (not of --structured=auto's probe)."""
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def script(body, headers):
        text = request_text(body)
        key = text.split(" ")[0]
        with lock:
            n = counts[key] = counts.get(key, 0) + 1
        if log is not None and text != PROBE_TEXT:  # rows only; the probe has tests of its own
            log.append(key)
        actions = (overrides or {}).get(key)
        if actions:
            action = actions[min(n, len(actions)) - 1]
            if action != "ok":
                return action
        return ("json", 200, chat_body(json.dumps(good_graph(text))))
    return script


def write_texts(tmp_path: Path, texts=TEXTS) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def config(tmp_path: Path, url: str, **kw) -> GenerateConfig:
    if "input" not in kw:
        kw["input"] = str(write_texts(tmp_path))
    base = dict(output=str(tmp_path / "out.jsonl"), base_url=url, model="teacher",
                entity_types=ENTS, relation_types=RELS, concurrency=3, timeout=5.0, retries=2, backoff=0.01,
                augment_copies=0, progress=False)
    base.update(kw)
    return GenerateConfig(**base)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def assert_valid_output(path: Path) -> list[Example]:
    examples = read_jsonl(path)  # canonical loader: unique ids, every field checked
    for ex in examples:
        assert Example.from_dict(ex.to_dict()) == ex
        assert validate_graph(ex.graph, ex.text, ex.entity_types, ex.relation_types) == []
    return examples


def side(tmp_path: Path, suffix: str) -> Path:
    return tmp_path / f"out{suffix}"


# --- inputs ---------------------------------------------------------------------------------


def test_txt_lines_paragraphs_and_jsonl_ids(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("one line\nsecond line\n\n  third  \nsecond line\n", encoding="utf-8")
    lines_ = read_sources(str(txt))
    assert [s.text for s in lines_.texts] == ["one line", "second line", "third"]
    assert lines_.texts[0].id == text_id("one line") and len(lines_.exact_duplicates) == 1
    paras = read_sources(str(txt), txt_split="paragraphs")
    assert [s.text for s in paras.texts] == ["one line second line", "third second line"]
    js = tmp_path / "a.jsonl"
    js.write_text('{"id": 7, "body": " x y "}\n\n{"body": "z", "text": "ignored"}\n', encoding="utf-8")
    got = read_sources(str(js), text_field="body").texts
    assert [(s.id, s.text) for s in got] == [("7", "x y"), (text_id("z"), "z")]
    with pytest.raises(DataError, match=r"a.jsonl:1: no field 'text'.*--text_field"):
        read_sources(str(js))


@pytest.mark.parametrize("content, match", [
    ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate id 'a'"),
    ('{"text": 3}\n', "must be a string"),
    ("not json\n", "not valid JSON"),
    ('["text"]\n', "expected a JSON object"),
])
def test_bad_jsonl_inputs_name_the_line(tmp_path, content, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match) as info:
        read_sources(str(path))
    assert "bad.jsonl:" in str(info.value)


def test_hf_dataset_folder_column(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"body": ["A b.", "C d."]})}).save_to_disk(str(tmp_path / "ds"))
    got = read_sources(str(tmp_path / "ds"), text_field="body")
    assert [s.text for s in got.texts] == ["A b.", "C d."]
    with pytest.raises(DataError, match="no split 'test'"):
        read_sources(str(tmp_path / "ds"), text_field="body", split="test")
    with pytest.raises(DataError, match="no column 'text'"):
        read_sources(str(tmp_path / "ds"))
    with pytest.raises(DataError, match=r"hf:nobody/none: cannot load split 'train'.*network/HF cache"):
        read_sources("hf:nobody/none")  # offline in tests (conftest): a message, not a traceback


# --- pieces ---------------------------------------------------------------------------------


def test_near_duplicates_keep_the_first_and_ignore_punctuation():
    texts = ["Alice works for Acme in Paris.", "alice works for  acme in paris!", "Bob founded Globex.",
             "A long sentence about the weather in the north of the country today.",
             "A long sentence about the weather in the north of the country yesterday."]
    assert near_duplicates(texts, 0.9) == {1: 0}
    assert near_duplicates(texts, 0.7) == {1: 0, 4: 3}
    assert near_duplicates(texts, 1.01) == {}


def test_inventory_merges_spellings_and_cuts_rare_types():
    from collections import Counter
    inv = Inventory.from_counts(Counter({"Person": 3, "persons": 2, "PERSON": 1, "works_for": 2, "Works-For": 1,
                                         "city": 2, "oddity": 1}), min_count=2, max_types=10)
    assert inv.types == ["person", "works for", "city"]
    assert inv.canonical("People") is None and inv.canonical("Persons") == "person"
    assert type_key("companies") == type_key("Company") and type_key("status") == "status"
    fixed = Inventory.fixed(["Person", "works for"], "--entity_types")
    assert fixed.canonical("persons") == "Person"
    with pytest.raises(ValueError, match="name the same type"):
        Inventory.fixed(["person", "persons"], "--entity_types")


def test_candidate_spans_are_exact_substrings_and_constrain_requests():
    spans = candidate_spans("Jean-Luc met O'Neil in N.Y. today.", max_words=2)
    assert "Jean-Luc" in spans and "O'Neil" in spans and "Jean-Luc met" in spans and "N.Y" in spans
    assert all(s in "Jean-Luc met O'Neil in N.Y. today." for s in spans)
    assert candidate_spans("a b c d e", max_words=5, max_spans=3) is None
    req = structured_request("json_object", ENTS, RELS, ["Alice"])
    props = req["response_format"]["schema"]["properties"]
    assert props["entities"]["items"]["properties"]["text"]["enum"] == ["Alice"]
    assert props["relations"]["items"]["properties"]["type"]["enum"] == RELS
    assert 'span ::= "\\"Alice\\""' in structured_request("grammar", ENTS, RELS, ["Alice"])["extra"]["grammar"]
    assert structured_request("none", ENTS, RELS) == {}


def test_verify_trace_table():
    graph = Graph.from_dict(good_graph("Alice met Bob."))
    answer = json.dumps(good_graph("Alice met Bob."))
    reasoning = "Alice and Bob are both people named in the text."
    assert verify_trace(f"<think>{reasoning}</think>{answer}", graph) == (reasoning, "")
    other = json.dumps(good_graph("Alice met."))
    assert verify_trace(f"<think>{reasoning}</think>{other}", graph) == (None, "trace_answer_disagrees")
    assert verify_trace(f"<think>ok</think>{answer}", graph) == (None, "trace_missing_or_too_short")
    assert verify_trace(answer, graph) == (None, "trace_missing_or_too_short")
    assert verify_trace(f"<think>{reasoning}", graph) == (None, "parse_unclosed_think")


# --- the pipeline against a fake teacher ----------------------------------------------------


def test_filters_account_for_every_text(tmp_path):
    bad = {
        "Bob": [("json", 200, chat_body('{"entities": [{"text": "Robert", "type": "person"}], "relations": []}'))],
        "Carol": [("json", 200, chat_body('{"entities": [{"text": "Carol", "type": "person"}], '
                                          '"relations": [{"head": "Carol", "tail": "Berlin", "type": "located in"}]}'))],
        "Dave": [("json", 200, chat_body('{"entities": [{"text": "Dave", "type": "animal"}], "relations": []}'))],
        "Frank": [("json", 200, chat_body('{"entities": [], "relations": []}'))],
        "Grace": [("json", 200, chat_body('Sure! {"entities": [], "relations": []}'))],
    }
    texts = TEXTS + ["Alice works for Acme in Paris!", ""]
    with FakeServer(teacher_fake(bad)) as srv:
        report = generate(config(tmp_path, srv.base_url, input=str(write_texts(tmp_path, texts)), structured="none"))
    assert report["dropped_before_teacher"] == {"near_duplicate_text": 1}  # the empty line is no text at all
    assert report["dropped_after_teacher"] == {"ungrounded_span": 1, "dangling_relation": 1,
                                               "out_of_inventory_type": 1, "empty_graph": 1,
                                               "parse_text_before_json": 1}
    assert report["examples_kept"] == report["rows_written"] == 1
    # Every input line is accounted for: dropped before, dropped after, or kept.
    teacher = report["teacher"]
    assert report["input_texts"] == 8 - 1 == sum(report["dropped_before_teacher"].values()) + \
        teacher["answered_before"] + teacher["answered_now"] + teacher["not_answered"]
    assert teacher["answered_now"] == report["examples_kept"] + sum(report["dropped_after_teacher"].values())
    assert [ex.text for ex in assert_valid_output(tmp_path / "out.jsonl")] == [TEXTS[0]]
    on_disk = json.loads(side(tmp_path, ".summary.json").read_text())
    assert on_disk["dropped_after_teacher"] == report["dropped_after_teacher"]
    assert on_disk["example_ids_per_drop_reason"]["empty_graph"] == [text_id(TEXTS[4])]


def test_teacher_requests_fan_out_over_several_endpoints(tmp_path):
    """--base_url=a,b: the same run as with one endpoint, its requests spread over both."""
    with FakeServer(teacher_fake()) as a, FakeServer(teacher_fake()) as b:
        report = generate(config(tmp_path, f"{a.base_url},{b.base_url}", structured="none", concurrency=2))
    assert report["teacher"]["answered_now"] == len(a.requests) + len(b.requests) == len(TEXTS)
    assert len(a.requests) >= 1 and len(b.requests) >= 1
    assert report["teacher"]["not_answered"] == 0


def test_oversized_and_keep_empty(tmp_path):
    with FakeServer(teacher_fake({"Frank": [("json", 200, chat_body('{"entities": [], "relations": []}'))]})) as srv:
        report = generate(config(tmp_path, srv.base_url, max_entities=2, keep_empty=True))
    assert report["dropped_after_teacher"] == {"oversized_graph": 2}  # Alice+Acme+Paris, Dave+Erin+Rome
    examples = assert_valid_output(tmp_path / "out.jsonl")
    assert any(ex.graph.is_empty for ex in examples) and len(examples) == 4


def test_augmentation_and_the_request_sent(tmp_path):
    log: list = []
    with FakeServer(teacher_fake(log=log)) as srv:
        report = generate(config(tmp_path, srv.base_url, augment_copies=2, empty_target_prob=0.5, ground_spans=True))
        probe_body, body = srv.requests[:2]  # --structured=auto asks once, with the run's own request shape
    assert request_text(probe_body) == PROBE_TEXT and probe_body["max_tokens"] == PROBE_MAX_TOKENS
    assert "enum" in json.dumps(probe_body["response_format"]) and len(srv.requests) == 1 + 6
    assert report["examples_kept"] == 6 and report["rows_written"] == 18
    examples = assert_valid_output(tmp_path / "out.jsonl")
    assert sum("#aug" in ex.id for ex in examples) == 12
    assert any(ex.graph.is_empty for ex in examples if "#aug" in ex.id)
    # The teacher saw the text, the student's prompt, and a schema whose spans come from the text.
    schema = body["response_format"]["json_schema"]["schema"]
    span_enum = schema["properties"]["entities"]["items"]["properties"]["text"]["enum"]
    assert request_text(body) in TEXTS and all(s in request_text(body) for s in span_enum)
    assert body["messages"][0]["role"] == "system" and body["model"] == "teacher"


def test_open_extraction_builds_a_merged_inventory(tmp_path):
    def script(body, headers):
        text = request_text(body)
        if text == PROBE_TEXT:
            return ("json", 200, chat_body("{}"))
        spelling = ["Person", "persons", "PERSON", "person", "Person", "person"][TEXTS.index(text)]
        ents = [{"text": n, "type": spelling} for n in re.findall(r"\b[A-Z][a-z]+\b", text)]
        if text.startswith("Alice"):
            ents.append({"text": "works", "type": "verb thing"})  # proposed once: too rare to keep
        return ("json", 200, chat_body(json.dumps({"entities": ents, "relations": []})))

    with FakeServer(script) as srv:
        report = generate(config(tmp_path, srv.base_url, entity_types=None, relation_types=None))
        assert "Entity types" not in srv.requests[0]["messages"][-1]["content"]  # open prompt: no list
    assert report["inventory"] == {"entity_types": ["person"], "relation_types": []}
    examples = assert_valid_output(tmp_path / "out.jsonl")
    assert len(examples) == 6 and {e.type for ex in examples for e in ex.graph.entities} == {"person"}
    assert all("works" not in [e.text for e in ex.graph.entities] for ex in examples)


def test_reasoning_traces_are_checked_against_the_graph(tmp_path):
    def script(body, headers):
        content = body["messages"][-1]["content"]
        if "The correct graph:" not in content:
            return ("json", 200, chat_body(json.dumps(good_graph(request_text(body)))))
        graph = json.loads(content.split("The correct graph:\n")[1].split("\n")[0])
        if graph["entities"][0]["text"] == "Bob":  # this trace ends with another answer
            graph = {"entities": [], "relations": []}
        trace = "The text names these people: " + ", ".join(e["text"] for e in graph["entities"])
        return ("json", 200, chat_body(f"<think>{trace}</think>\n{json.dumps(graph)}"))

    with FakeServer(script) as srv:
        report = generate(config(tmp_path, srv.base_url, reasoning=True))
        trace_requests = [b for b in srv.requests if "The correct graph:" in b["messages"][-1]["content"]]
    # The trace teacher sees each text together with its graph.
    contents = sorted(b["messages"][-1]["content"] for b in trace_requests)
    assert len(contents) == 6 and all(sum(f"Text: {text}" in c for c in contents) == 1 for text in TEXTS)
    assert all(json.dumps(good_graph(request_text({"messages": [{"content": c}]}))) in c for c in contents)
    assert report["traces"] == {"kept": 5, "trace_answer_disagrees": 1}
    examples = {ex.text: ex for ex in assert_valid_output(tmp_path / "out.jsonl")}
    assert examples[TEXTS[1]].reasoning is None and "Alice" in examples[TEXTS[0]].reasoning
    report = generate(config(tmp_path, "http://127.0.0.1:9/v1", reasoning=True, require_trace=True))  # all cached
    assert report["rows_written"] == 5 and report["teacher"]["answered_before"] == 6


def test_concurrency_is_bounded(tmp_path):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()
    inner = teacher_fake()

    def script(body, headers):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return inner(body, headers)

    with FakeServer(script) as srv:
        generate(config(tmp_path, srv.base_url, concurrency=2))
    assert state["max"] == 2


# --- faults and resumption ------------------------------------------------------------------


def teacher_ids(tmp_path: Path) -> list[str]:
    return [r["id"] for r in lines(side(tmp_path, ".teacher.jsonl"))]


def test_500s_timeouts_and_non_json_are_retried_and_failures_recorded(tmp_path):
    overrides = {
        "Alice": [("json", 500, {"error": "overloaded"}), "ok"],  # recovers on retry
        "Bob": [("sleep", 1.0, ("json", 200, chat_body("{}"))), "ok"],  # times out once
        "Carol": [("raw", 200, b"<html>proxy error</html>"), "ok"],  # non-JSON once
        "Dave": [("json", 500, {"error": "always broken"})],  # never recovers
        "Frank": [("raw", 200, b"garbage")],  # never recovers
    }
    log: list = []
    with FakeServer(teacher_fake(overrides, log)) as srv:
        report = generate(config(tmp_path, srv.base_url, timeout=0.5, retries=2))
    assert log.count("Alice") == 2 and log.count("Bob") == 2 and log.count("Carol") == 2
    assert log.count("Dave") == 3 and log.count("Frank") == 3  # 1 + retries, then recorded
    errors = {e["id"]: e for e in lines(side(tmp_path, ".errors.jsonl"))}
    assert set(errors) == {text_id(TEXTS[3]), text_id(TEXTS[4])}
    assert errors[text_id(TEXTS[3])]["status"] == 500 and "always broken" in errors[text_id(TEXTS[3])]["error"]
    assert "not JSON" in errors[text_id(TEXTS[4])]["error"] and errors[text_id(TEXTS[4])]["attempts"] == 3
    assert report["failed_rows"] == 2 and report["teacher"]["answered_now"] == 4 and report["rows_written"] == 4
    # A restart against a healthy server asks only for the two missing rows.
    log.clear()
    with FakeServer(teacher_fake(log=log)) as srv:
        report = generate(config(tmp_path, srv.base_url))
    assert sorted(log) == ["Dave", "Frank"] and report["failed_rows"] == 0
    assert sorted(teacher_ids(tmp_path)) == sorted(text_id(t) for t in TEXTS)
    assert len(assert_valid_output(tmp_path / "out.jsonl")) == 6


def test_server_dies_mid_run_then_restart_finishes_without_duplicates(tmp_path):
    served = {"n": 0}
    lock = threading.Lock()
    inner = teacher_fake()
    holder: dict = {}

    def dying(body, headers):
        with lock:
            served["n"] += 1
            if served["n"] > 2:  # the third request kills the server: no answer, then nothing listens
                threading.Thread(target=holder["srv"].stop, daemon=True).start()
                return ("drop",)
        return inner(body, headers)

    with FakeServer(dying) as srv:
        holder["srv"] = srv
        report = generate(config(tmp_path, srv.base_url, concurrency=1, retries=1, structured="json_schema"))
    assert report["teacher"]["answered_now"] == 2 and report["failed_rows"] == 4
    first = teacher_ids(tmp_path)
    assert len(first) == 2 and len(lines(side(tmp_path, ".errors.jsonl"))) == 4
    # The crash also left half a line behind (a kill during a write): it is dropped and redone.
    with side(tmp_path, ".teacher.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "' + text_id(TEXTS[5]) + '", "settings": "trunc')
    log: list = []
    with FakeServer(teacher_fake(log=log)) as srv:
        report = generate(config(tmp_path, srv.base_url, concurrency=3))
    assert report["recovered_partial_lines"] == 1 and len(log) == 4 and report["failed_rows"] == 0
    ids = teacher_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 6 and ids[:2] == first
    assert sorted(ex.id for ex in assert_valid_output(tmp_path / "out.jsonl")) == sorted(text_id(t) for t in TEXTS)


def test_a_crash_at_any_byte_of_the_teacher_file_resumes_exactly(tmp_path):
    """Whatever byte a kill interrupts the appends at, a rerun ends with every row exactly once."""
    import tempfile

    from hypothesis import given, settings, strategies as st

    with FakeServer(teacher_fake()) as srv:
        generate(config(tmp_path, srv.base_url))
        full = side(tmp_path, ".teacher.jsonl").read_bytes()
        expected = sorted(text_id(t) for t in TEXTS)

        @settings(max_examples=12, deadline=None, derandomize=True)
        @given(st.integers(0, len(full)))
        def resume_after_cut(cut: int) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                (tmp / "out.teacher.jsonl").write_bytes(full[:cut])
                report = generate(config(tmp, srv.base_url))
                ids = [r["id"] for r in lines(tmp / "out.teacher.jsonl")]
                assert sorted(ids) == expected
                assert report["recovered_partial_lines"] == (0 if cut == 0 or full[cut - 1:cut] == b"\n" else 1)
                assert report["teacher"]["answered_before"] == full[:cut].count(b"\n")
                assert sorted(ex.id for ex in assert_valid_output(tmp / "out.jsonl")) == expected

        resume_after_cut()


def test_a_dead_endpoint_stops_the_job_early_and_a_rerun_finishes(tmp_path):
    from servers import free_port
    def name(i: int) -> str:
        return chr(65 + i % 26) + chr(97 + i // 26) + "lan"
    texts = [f"{name(i)} met {name(i + 30)} today." for i in range(30)]
    cfg = dict(input=str(write_texts(tmp_path, texts)), concurrency=1, retries=0, max_consecutive_failures=3,
               structured="json_object")  # explicit: no probe, so every row meets the dead endpoint
    report = generate(config(tmp_path, f"http://127.0.0.1:{free_port()}/v1", **cfg))
    assert report["failed_rows"] == 3 and report["stopped_early"] == "teacher: stopped after 3 failures in a row; 27 rows not attempted"
    assert len(lines(side(tmp_path, ".errors.jsonl"))) == 3 and report["rows_written"] == 0
    with FakeServer(teacher_fake()) as srv:
        report = generate(config(tmp_path, srv.base_url, **cfg))
    assert report["teacher"]["answered_now"] == 30 and "stopped_early" not in report
    assert len(assert_valid_output(tmp_path / "out.jsonl")) == 30


def test_changed_settings_are_refused_not_mixed(tmp_path):
    with FakeServer(teacher_fake()) as srv:
        generate(config(tmp_path, srv.base_url))
        with pytest.raises(DataError, match="different settings"):
            generate(config(tmp_path, srv.base_url, model="another-teacher"))


def test_api_key_is_sent_but_never_written_or_printed(tmp_path, monkeypatch, capsys):
    key = "sk-t2g-test-0123456789"
    monkeypatch.setenv("T2G_TEACHER_KEY", key)

    def echo_key(body, headers):  # a hostile server that puts the credentials in its error page
        if request_text(body).startswith("Bob"):
            return ("raw", 500, f"denied for {headers.get('Authorization')}".encode())
        return teacher_fake()(body, headers)

    with FakeServer(echo_key) as srv:
        generate(config(tmp_path, srv.base_url, api_key_env="T2G_TEACHER_KEY", retries=0))
        assert {h["Authorization"] for h in srv.headers} == {f"Bearer {key}"}
    written = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir() if p.is_file())
    out = capsys.readouterr()
    assert "denied for" in written and "<redacted>" in written
    assert key not in written and key not in out.out + out.err


def test_cli_generate_flags_and_exit_status(tmp_path, capsys):
    texts = write_texts(tmp_path)
    with FakeServer(teacher_fake({"Dave": [("json", 400, {"error": "bad request"})]})) as srv:
        with pytest.raises(SystemExit) as info:
            cli_main(["generate", "--input", str(texts), "--output", str(tmp_path / "out.jsonl"),
                      "--base_url", srv.base_url, "--model", "teacher", "--entity_types", "person,location",
                      "--relation_types", "works for,located in", "--concurrency", "2", "--augment_copies", "0",
                      "--progress", "False", "--structured", "json_schema"])
    assert info.value.code == 1  # written, but one row failed: scripts must notice
    err = capsys.readouterr().err
    assert "1 rows failed" in err and "hint:" in err and "--structured=json_object" in err
    assert len(assert_valid_output(tmp_path / "out.jsonl")) == 5
    with pytest.raises(SystemExit) as info:
        cli_main(["generate", "--input", str(texts), "--output", str(tmp_path / "o2.jsonl"),
                  "--base_url", "http://127.0.0.1:9/v1", "--model", "t", "--entity_types", "person"])
    assert info.value.code == 2 and "give both --entity_types and --relation_types" in capsys.readouterr().err


@pytest.mark.parametrize("kw, match", [
    ({"entity_types": ["person", "persons"]}, "name the same type"),
    ({"relation_types": None}, "give both"),
    ({"base_url": "localhost:8000"}, "--base_url='localhost:8000'"),
    ({"base_url": "http://127.0.0.1:9/v1,localhost:8001"}, "--base_url='localhost:8001'"),
    ({"base_url": "http://127.0.0.1:9/v1,http://127.0.0.1:9/v1"}, "names an endpoint twice"),
    ({"output": "out.json"}, "must end with .jsonl"),
    ({"structured": "xml"}, "--structured='xml'"),
    ({"structured": "none", "ground_spans": True}, "--ground_spans needs structured output"),
    ({"concurrency": 0, "timeout": 0}, "--concurrency must be >= 1; --timeout must be > 0"),
])
def test_bad_settings_are_refused_before_any_request(tmp_path, kw, match):
    with pytest.raises(DataError, match=re.escape(match)):
        config(tmp_path, "http://127.0.0.1:9/v1", **kw)


# --- the real thing -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not llama_server_available(), reason="needs llama-cpp-python[server] (the llama extra)")
def test_real_llama_cpp_server_small_run_validates(tmp_path, smollm2_gguf):
    """SmolLM2-135M as the teacher. A 135M model invents spans, so the run uses a fixed inventory
    and schema-constrained output whose spans must come from the text (--ground_spans): what it
    writes must then validate, and every text must be accounted for in the summary."""
    texts = ["Jeff Bezos founded Amazon in Seattle.", "Satya Nadella works for Microsoft in Redmond."]
    with llama_server(smollm2_gguf) as url:
        report = generate(config(tmp_path, url, input=str(write_texts(tmp_path, texts)), model="smollm2",
                                 structured="json_object", ground_spans=True, max_tokens=64, concurrency=2,
                                 timeout=180, augment_copies=1))
    assert report["failed_rows"] == 0 and report["teacher"]["answered_now"] == 2
    assert report["examples_kept"] + sum(report["dropped_after_teacher"].values()) == 2
    assert report["examples_kept"] >= 1  # grounded, typed spans: SmolLM2 gets at least one right
    examples = assert_valid_output(tmp_path / "out.jsonl")
    assert len(examples) == report["rows_written"] == 2 * report["examples_kept"]
    assert {ex.text for ex in examples} <= set(texts)
