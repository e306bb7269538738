"""`t2g evaluate`: report numbers from the shared scorer, re-scorable predictions, diagnostics, files, CLI."""

from __future__ import annotations

import json

import pytest

from servers import FakeServer, chat_body
from t2g.data.canonical import Example, write_jsonl
from t2g.data.load import load_examples
from t2g.eval.evaluate import evaluate
from t2g.eval.predictions import read_predictions, score_predictions
from t2g.task.schema import Graph

ENTS = ["person", "organization"]
RELS = ["works for"]


def example(i: str, text: str, graph: dict) -> Example:
    return Example(i, text, ENTS, RELS, Graph.from_dict(graph))


GOLD = [
    example("a", "Tim Cook works for Apple.", {
        "entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
        "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}]}),
    example("b", "Ada Lovelace met Babbage.", {
        "entities": [{"text": "Ada Lovelace", "type": "person"}, {"text": "Babbage", "type": "person"}], "relations": []}),
    example("c", "It rained all day.", {"entities": [], "relations": []}),
    example("d", "Nothing to see here.", {"entities": [], "relations": []}),
    example("e", "Satya Nadella leads Microsoft.", {
        "entities": [{"text": "Satya Nadella", "type": "person"}, {"text": "Microsoft", "type": "organization"}],
        "relations": [{"head": "Satya Nadella", "tail": "Microsoft", "type": "works for"}]}),
]

# What the "model" answers, by the first word of the text.
ANSWERS = {
    "Tim": json.dumps(GOLD[0].graph.to_dict()),  # exact
    # one right, one hallucinated span, one off-list type, one dangling relation
    "Ada": json.dumps({"entities": [{"text": "Ada Lovelace", "type": "person"}, {"text": "Charles", "type": "person"},
                                    {"text": "Babbage", "type": "scientist"}],
                       "relations": [{"head": "Ada Lovelace", "tail": "Nobody", "type": "works for"}]}),
    "It": '{"entities": [], "relations": []}',  # right: nothing here
    "Nothing": "I found nothing.",  # not JSON: wrong even though the gold graph is empty
    "Satya": 'Here: {"entities": [], "relations": []}',  # text before the JSON
}


def script(body, headers):
    text = body["messages"][1]["content"].split("Text: ", 1)[1]
    return ("json", 200, chat_body(ANSWERS[text.split()[0]]))


@pytest.fixture()
def gold_file(tmp_path):
    path = tmp_path / "gold.jsonl"
    write_jsonl(path, GOLD)
    return path


def test_report_comes_from_the_shared_scorer_and_rescored_predictions_agree(tmp_path, gold_file):
    with FakeServer(script) as server:
        report = evaluate("m", str(gold_file), str(tmp_path / "out"), runtime="openai", base_url=server.base_url,
                          progress=False, retries=0)
    out = tmp_path / "out"
    rescored = score_predictions(load_examples(out / "gold.jsonl"), read_predictions(out / "predictions.jsonl"))
    for key in ("entity", "relation", "entity_boundaries", "relation_boundaries", "per_type", "json_valid_rate"):
        assert report[key] == rescored[key]
    # entities: gold 6, predicted 2 (a) + 3 (b); right: 2 + 1
    assert (report["entity"]["tp"], report["entity"]["n_pred"], report["entity"]["n_gold"]) == (3, 5, 6)
    assert report["entity"]["precision"] == pytest.approx(3 / 5) and report["entity"]["recall"] == pytest.approx(3 / 6)
    assert report["json_valid_rate"] == pytest.approx(3 / 5)
    assert report["output"]["hallucinated_span_rate"] == pytest.approx(1 / 5)  # "Charles"
    assert report["output"]["out_of_schema_rate"] == pytest.approx(1 / 7)  # "scientist", of 5 entities + 2 relations
    assert report["output"]["dangling_relation_rate"] == pytest.approx(1 / 2)
    assert report["empty_gold"] == {"n": 2, "accuracy": 0.5}
    assert report["failures"] == {"no_json": 1, "text_before_json": 1}
    assert report["run"]["prompt_version"] and report["run"]["runtime"] == "openai"
    assert report["timing"]["sentences_per_s"] > 0
    assert json.loads((out / "report.json").read_text())["entity"] == report["entity"]
    md = (out / "report.md").read_text()
    assert "| entity (strict) | 60.0 | 50.0 |" in md and "| relation | works for |" in md
    assert (out / "per_type_f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Each prediction row carries its text and the located graph; the page sits beside the report.
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == [ex.text for ex in GOLD]
    assert rows[0]["graph"]["entities"] == [{"text": "Tim Cook", "type": "person", "spans": [[0, 8]]},
                                            {"text": "Apple", "type": "organization", "spans": [[19, 24]]}]
    assert rows[0]["graph"]["relations"][0]["head_spans"] == [[0, 8]]
    assert [e["spans"] for e in rows[1]["graph"]["entities"]] == [[[0, 12]], [], [[17, 24]]]  # "Charles" is not there
    assert rows[3]["graph"] is None and rows[3]["completion"] == "I found nothing."
    assert "[view.html](view.html)" in md
    page = (out / "view.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Ada Lovelace met Babbage." in page


def test_limit_and_cli(tmp_path, gold_file, capsys):
    from t2g.cli import main

    with FakeServer(script) as server:
        main(["evaluate", "--model", "m", "--data", str(gold_file), "--out", str(tmp_path / "o"), "--limit", "2",
              "--runtime", "openai", "--base_url", server.base_url])
    assert "entity F1" in capsys.readouterr().err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["n_examples"] == 2 and len((tmp_path / "o" / "gold.jsonl").read_text().splitlines()) == 2
    main(["score", "--gold", str(tmp_path / "o" / "gold.jsonl"), "--pred", str(tmp_path / "o" / "predictions.jsonl")])
    assert json.loads(capsys.readouterr().out)["entity"] == report["entity"]


@pytest.mark.parametrize("argv,match", [
    (["--limit", "0"], "--limit"),
    (["--data", "nowhere.jsonl"], "nowhere.jsonl"),
    (["--model", "nowhere.gguf"], "no such GGUF"),
    (["--runtime", "hf", "--constrained", "True"], "not available with --runtime=hf"),
    (["--n_ctx", "512", "--runtime", "openai", "--base_url", "http://127.0.0.1:9/v1"], "does not apply"),
])
def test_evaluate_cli_errors(tmp_path, gold_file, capsys, argv, match):
    from t2g.cli import main

    base = {"--model": "smollm2", "--data": str(gold_file), "--out": str(tmp_path / "o")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    with pytest.raises(SystemExit) as exc:
        main(["evaluate"] + [x for kv in base.items() for x in kv])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "o" / "report.json").exists()


@pytest.mark.slow
def test_ci_evaluates_real_smollm2_on_conll04_end_to_end(tmp_path, conll04_dir, smollm2_gguf, capsys):
    """The real SmolLM2-135M-Instruct, through `t2g evaluate`, on a handful of CoNLL04 test sentences."""
    pytest.importorskip("llama_cpp")
    from t2g.cli import main

    out = tmp_path / "eval"
    main(["evaluate", "--model", "smollm2", "--data", str(conll04_dir / "test.json"), "--out", str(out), "--limit", "4",
          "--runtime", "llama.cpp", "--constrained", "--max_new_tokens", "96", "--n_ctx", "1024", "--n_threads", "1"])
    report = json.loads((out / "report.json").read_text())
    assert report["n_examples"] == 4 and report["run"]["resolved"]["path"] == str(smollm2_gguf)
    for key in ("entity", "relation", "entity_boundaries", "relation_boundaries"):
        assert 0.0 <= report[key]["f1"] <= 1.0 and report[key]["n_gold"] > 0
    assert set(report["failures"]) <= {"truncated"}  # under the grammar nothing else can go wrong
    assert report["output"]["out_of_schema_rate"] in (None, 0.0)
    main(["score", "--gold", str(out / "gold.jsonl"), "--pred", str(out / "predictions.jsonl")])
    rescored = json.loads(capsys.readouterr().out)
    assert rescored["entity"] == report["entity"] and rescored["relation"] == report["relation"]
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "per_type_f1.png", "predictions.jsonl"}


def test_chunked_texts_are_merged_and_still_rescorable(tmp_path, gold_file):
    """--chunk_size (characters, for a server) cuts texts; rows keep the merged graph and every chunk's output."""

    def capitals(body, headers):
        text = body["messages"][1]["content"].split("Text: ", 1)[1].rsplit("\n\n", 1)[0]
        names = [w.strip(".") for w in text.split() if w[:1].isupper()]
        return ("json", 200, chat_body(json.dumps({"entities": [{"text": n, "type": "person"} for n in names],
                                                   "relations": []})))

    with FakeServer(capitals) as server:
        report = evaluate("m", str(gold_file), str(tmp_path / "out"), runtime="openai", base_url=server.base_url,
                          progress=False, chunk_size=16)
    rows = [json.loads(l) for l in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    first = rows[0]  # "Tim Cook works for Apple." in chunks of <= 16 characters
    assert len(first["chunk_completions"]) >= 2 and "completion" not in first
    assert [e["text"] for e in first["graph"]["entities"]] == ["Tim", "Cook", "Apple"]
    # Offsets into the whole text, not into the chunk each entity came from.
    assert first["text"] == "Tim Cook works for Apple."
    assert [e["spans"] for e in first["graph"]["entities"]] == [[[0, 3]], [[4, 8]], [[19, 24]]]
    out = tmp_path / "out"
    rescored = score_predictions(load_examples(out / "gold.jsonl"), read_predictions(out / "predictions.jsonl"))
    assert report["entity"] == rescored["entity"] and report["json_valid_rate"] == 1.0
