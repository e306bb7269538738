"""`t2g convert` and `t2g score` through the real entry point, and every bad input's error message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2g.cli import main

CONLL04 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll04"
needs_conll04 = pytest.mark.skipif(
    not (CONLL04 / "test.json").is_file(), reason=f"CoNLL04 not found at {CONLL04} (the ../shared checkout is absent)"
)

GRAPH = {
    "entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
    "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}],
}


def row(i="a", **over) -> dict:
    base = {"id": i, "text": "Tim Cook runs Apple.", "entity_types": ["person", "organization"],
            "relation_types": ["works for"], "graph": GRAPH}
    base.update(over)
    return base


def jsonl(*rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def t2g_command() -> list[str]:
    script = Path(sys.executable).parent / "t2g"
    return [str(script)] if script.exists() else [sys.executable, "-m", "t2g.cli"]


# --- the happy paths --------------------------------------------------------------------------

@needs_conll04
def test_conll04_convert_and_self_score(tmp_path, capsys):
    out = tmp_path / "conll04-test.jsonl"
    code, _, err = run_cli(["convert", "--format", "spert", "--input", str(CONLL04 / "test.json"), "--output", str(out)], capsys)
    assert code == 0 and "wrote 288 examples" in err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 288
    # a graph is a set: the file's 1,079 entity and 422 relation mentions are 1,059 and 407 distinct ones
    assert sum(len(r["graph"]["entities"]) for r in rows) == 1059
    assert sum(len(r["graph"]["relations"]) for r in rows) == 407
    assert all(e["text"] in r["text"] for r in rows for e in r["graph"]["entities"])  # verbatim spans

    preds = tmp_path / "self.jsonl"
    preds.write_text(jsonl(*({"id": r["id"], "graph": r["graph"]} for r in rows)))
    code, stdout, _ = run_cli(["score", "--gold", str(out), "--pred", str(preds)], capsys)
    report = json.loads(stdout)
    assert code == 0 and report["n_examples"] == 288 and report["n_missing_predictions"] == 0
    # sets per example: the counts are the distinct mentions, 1,059 entities and 407 relations
    assert (report["entity"]["n_gold"], report["relation"]["n_gold"]) == (1059, 407)
    for key in ("entity", "relation", "entity_boundaries", "relation_boundaries"):
        assert report[key]["precision"] == report[key]["recall"] == report[key]["f1"] == 1.0
    assert set(report["per_type"]["entity"]) == {"person", "location", "organization", "other"}
    assert all(v["f1"] == 1.0 for v in report["per_type"]["relation"].values())


@needs_conll04
def test_conll04_through_the_console_script(tmp_path):
    """The installed `t2g` command itself, as a user runs it: convert, then score completions."""
    out = tmp_path / "c.jsonl"
    cmd = t2g_command()
    subprocess.run(cmd + ["convert", "--format=spert", f"--input={CONLL04 / 'test.json'}", f"--output={out}"], check=True, capture_output=True)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    preds = tmp_path / "p.jsonl"
    # raw completions, as a model would write them (a think block first), for every other row
    preds.write_text(jsonl(*({"id": r["id"], "completion": "<think>ok</think>" + json.dumps(r["graph"])} for r in rows[::2])))
    done = subprocess.run(cmd + ["score", f"--gold={out}", f"--pred={preds}"], check=True, capture_output=True, text=True)
    report = json.loads(done.stdout)
    assert report["entity"]["precision"] == 1.0 and report["json_valid_rate"] == 1.0
    assert report["n_missing_predictions"] == 144 and report["entity"]["recall"] < 1.0


def test_score_completions_graphs_and_missing(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(jsonl(row("a"), row("b"), row("c"), row("d", graph={"entities": [], "relations": []})))
    preds = tmp_path / "pred.jsonl"
    preds.write_text(jsonl(
        {"id": "a", "graph": GRAPH},
        {"id": "b", "completion": "```json\n" + json.dumps(GRAPH) + "\n```"},
        {"id": "c", "completion": "Sure! " + json.dumps(GRAPH)},  # text before the JSON: no credit
        # d: no prediction, gold empty -> counts as an empty prediction, nothing lost
    ))
    code, stdout, _ = run_cli(["score", "--gold", str(gold), "--pred", str(preds)], capsys)
    report = json.loads(stdout)
    # entities: tp 2 + 2 + 0 + 0 = 4, pred 4, gold 6 -> P 1, R 2/3; relations: tp 2, pred 2, gold 3 -> P 1, R 2/3
    assert code == 0 and report["n_missing_predictions"] == 1
    assert (report["entity"]["tp"], report["entity"]["n_pred"], report["entity"]["n_gold"]) == (4, 4, 6)
    assert report["relation"]["recall"] == pytest.approx(2 / 3) and report["relation"]["f1"] == pytest.approx(0.8)
    assert report["json_valid_rate"] == pytest.approx(1 / 2)  # 2 completions, 1 parse failure


def test_convert_examples_and_text2graph(tmp_path, capsys):
    out = tmp_path / "ex.jsonl"
    code, _, err = run_cli(["convert", "--input", "examples", "--output", str(out)], capsys)
    assert code == 0 and "wrote 36 examples" in err
    src = tmp_path / "t2g.jsonl"
    src.write_text(jsonl({"prompt": "Tim Cook runs Apple.", "solution": json.dumps(GRAPH)}))
    code, _, _ = run_cli(["convert", "--input", str(src), "--output", str(out)], capsys)
    assert code == 0 and json.loads(out.read_text())["graph"] == GRAPH


def test_convert_canonical_json_array(tmp_path, capsys):
    src = tmp_path / "rows.json"
    src.write_text(json.dumps([row("a"), row("b")], indent=2))
    code, _, err = run_cli(["convert", "--input", str(src), "--output", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0 and "wrote 2 examples" in err


def test_fire_literals_are_read_back_as_text(tmp_path, capsys):
    # Fire turns `None` into None: --label_map None means the same as --label_map none
    src = tmp_path / "s.json"
    src.write_text(json.dumps([{"tokens": ["Ann"], "entities": [{"type": "Gene", "start": 0, "end": 1}], "relations": []}]))
    out = tmp_path / "o.jsonl"
    code, _, err = run_cli(["convert", "--input", str(src), "--output", str(out), "--label_map", "None"], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["entity_types"] == ["Gene"]


def test_fire_usage_errors_exit_nonzero(capsys):
    code, _, err = run_cli(["convert"], capsys)
    assert code == 2 and "input" in err
    code, _, _ = run_cli(["no-such-command"], capsys)
    assert code == 2


# --- every bad input: `t2g: error: <where>: <what>`, exit code 2, no traceback ---------------

SPERT_OK = {"tokens": ["Tim", "Cook"], "entities": [{"type": "Peop", "start": 0, "end": 2}], "relations": []}
GOLD = jsonl(row("a"))
CONVERT = ["convert", "--input", "{d}/in", "--output", "{d}/out.jsonl"]
SCORE = ["score", "--gold", "{d}/gold.jsonl", "--pred", "{d}/pred.jsonl"]

# (name, files {name: content}, argv, fragments the message must contain)
BAD_INPUTS = [
    ("malformed jsonl line", {"in": GOLD + "{oops\n"}, CONVERT + ["--format", "canonical"], ["in:2:", "not valid JSON"]),
    ("missing field", {"in": GOLD + jsonl({k: v for k, v in row("b").items() if k != "text"})}, CONVERT, ["in:2:", "missing field 'text'"]),
    ("missing id", {"in": jsonl({k: v for k, v in row().items() if k != "id"})}, CONVERT + ["--format", "canonical"], ["in:1:", "missing field 'id'"]),
    ("wrong field type", {"in": jsonl(row("a", entity_types="person"))}, CONVERT, ["in:1:", "'entity_types' must be a list"]),
    ("wrong graph field type", {"in": jsonl(row("a", graph={"entities": [{"text": "A", "type": 1}], "relations": []}))}, CONVERT,
     ["in:1:", "graph.entities[0].type", "expected a string"]),
    ("duplicate id", {"in": GOLD + jsonl(row("a"))}, CONVERT, ["in:2:", "duplicate id 'a'", "first on line 1"]),
    ("empty text", {"in": jsonl(row("a", text="  "))}, CONVERT, ["in:1:", "'text' is empty"]),
    ("not utf-8", {"in": GOLD.encode() + b'{"id": "\xff"}\n'}, CONVERT + ["--format", "canonical"], ["in:2:", "not UTF-8"]),
    ("lone surrogate escape", {"in": jsonl(row("a", text="Tim Cook runs Apple. \ud800"))}, CONVERT, ["'a'", "surrogate"]),
    ("spert span out of range", {"in": json.dumps([{"tokens": ["a", "b"], "entities": [{"type": "Peop", "start": 1, "end": 5}]}])},
     CONVERT, ["item 0", "entities[0]", "[1, 5)", "2 tokens"]),
    ("spert relation index out of range", {"in": json.dumps([dict(SPERT_OK, relations=[{"type": "Kill", "head": 0, "tail": 3}])])},
     CONVERT, ["item 0", "relations[0]", "0/3", "there are 1"]),
    ("spert entity without type", {"in": json.dumps([SPERT_OK, dict(SPERT_OK, entities=[{"start": 0, "end": 1}])])},
     CONVERT, ["item 1", "entities[0]", "'type'"]),
    ("spert empty tokens", {"in": json.dumps([dict(SPERT_OK, tokens=[], entities=[])])}, CONVERT, ["item 0", "tokens"]),
    ("spert token not a string", {"in": json.dumps([dict(SPERT_OK, tokens=["Tim", 3])])}, CONVERT, ["item 0", "tokens"]),
    ("spert whitespace entity", {"in": json.dumps([dict(SPERT_OK, tokens=["Tim", " "], entities=[{"type": "Peop", "start": 1, "end": 2}])])},
     CONVERT, ["item 0", "entities[0]", "whitespace"]),
    ("unknown labels with auto", {"in": json.dumps([dict(SPERT_OK, entities=[{"type": "Gene", "start": 0, "end": 1}])])},
     CONVERT, ["'Gene'", "no known label map", "--label_map=none"]),
    ("unknown label map name", {"in": json.dumps([SPERT_OK])}, CONVERT + ["--label_map", "conll05"], ["conll05", "not a known map", "conll04"]),
    ("label missing from the named map", {"in": json.dumps([SPERT_OK])}, CONVERT + ["--label_map", "scierc"], ["'Peop'", "scierc", "--label_map=none"]),
    ("label map file not json", {"in": json.dumps([SPERT_OK]), "map.json": "{nope"}, CONVERT + ["--label_map", "{d}/map.json"], ["map.json", "not a JSON file"]),
    ("missing input file", {}, CONVERT, ["in", "no such file"]),
    ("missing gold file", {"pred.jsonl": ""}, SCORE, ["gold.jsonl", "no such file"]),
    ("missing prediction file", {"gold.jsonl": GOLD}, SCORE, ["pred.jsonl", "no such prediction file"]),
    ("unsniffable format", {"in": jsonl({"sentence": "x", "labels": []})}, CONVERT, ["cannot tell the format", "--format="]),
    ("not json at all", {"in": "id\ttext\n1\thello\n"}, CONVERT, ["in:1:", "not JSON"]),
    ("invalid json array", {"in": '[{"tokens": ["a"],'}, CONVERT, ["invalid JSON"]),
    ("empty input file", {"in": ""}, CONVERT, ["empty"]),
    ("unknown format flag", {"in": GOLD}, CONVERT + ["--format", "xml"], ["--format=xml", "unknown format", "spert"]),
    ("prediction with unknown id", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": "zz", "graph": GRAPH})}, SCORE,
     ["pred.jsonl", "not in the gold data", "'zz'"]),
    ("prediction without graph or completion", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": "a", "output": "x"})}, SCORE,
     ["pred.jsonl:1:", "'graph' or 'completion'"]),
    ("prediction without id", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"graph": GRAPH})}, SCORE, ["pred.jsonl:1:", "'id'"]),
    ("prediction graph of the wrong shape", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": "a", "graph": {"entities": []}})}, SCORE,
     ["pred.jsonl:1:", "missing key 'relations'"]),
    ("prediction completion not a string", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": "a", "completion": 3})}, SCORE,
     ["pred.jsonl:1:", "'completion' must be a string"]),
    ("duplicate prediction", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": "a", "graph": GRAPH}) * 2}, SCORE,
     ["pred.jsonl:2:", "duplicate prediction"]),
    ("canonical json array with a bad row", {"in": json.dumps([row("a"), {"id": "b"}])}, CONVERT, ["item 1", "missing field 'text'"]),
    ("text2graph rows sharing an id", {"in": jsonl(*({"id": 1, "prompt": "Tim Cook runs Apple.", "solution": json.dumps(GRAPH)},) * 2)},
     CONVERT, ["rows 0 and 1", "'1'"]),
    ("prediction id not a string", {"gold.jsonl": GOLD, "pred.jsonl": jsonl({"id": True, "graph": GRAPH})}, SCORE, ["pred.jsonl:1:", "'id'"]),
    ("flag that fire reads as a bool", {}, ["convert", "--input", "True", "--output", "{d}/out.jsonl"], ["--input", "True"]),
    ("malformed prediction line", {"gold.jsonl": GOLD, "pred.jsonl": "{\n"}, SCORE, ["pred.jsonl:1:", "not valid JSON"]),
    ("unwritable output", {"in": GOLD}, ["convert", "--input", "{d}/in", "--output", "{d}/in/out.jsonl"], ["cannot write", "in/out.jsonl"]),
    ("input is a directory", {}, ["convert", "--input", "{d}", "--output", "{d}/out.jsonl"], ["is a directory"]),
]


@pytest.mark.parametrize("name,files,argv,fragments", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gives_a_clear_error(name, files, argv, fragments, tmp_path, capsys):
    for fname, content in files.items():
        path = tmp_path / fname
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    code, out, err = run_cli([a.format(d=tmp_path) for a in argv], capsys)
    assert code == 2, (code, err)
    assert err.startswith("t2g: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written


def test_console_script_error_has_no_traceback(tmp_path):
    done = subprocess.run(t2g_command() + ["score", f"--gold={tmp_path}/nope.jsonl", f"--pred={tmp_path}/p.jsonl"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 2
    assert done.stderr.startswith("t2g: error: ") and "no such file" in done.stderr and "Traceback" not in done.stderr


# --- every command is a flags dataclass: --help, misspelt flags, values that do not fit -----------

COMMAND_NAMES = ["convert", "score", "compare", "generate", "export", "fetch-llama-cpp", "extract", "evaluate", "view",
                 "type-conditions"]


def test_every_command_lists_every_flag_with_type_default_and_meaning(capsys):
    import typing

    from t2g.cli import COMMANDS
    from t2g.flags import flag_fields, type_name

    assert list(COMMANDS) == COMMAND_NAMES
    for name in COMMAND_NAMES:
        code, out, err = run_cli([name, "--help"], capsys)
        assert code == 0 and err == "" and out.startswith(f"usage: t2g {name} ")
        lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  --")}
        cls = COMMANDS[name]()[0]
        hints = typing.get_type_hints(cls)
        for field in flag_fields(cls):
            line = lines[f"--{field.name}"]
            assert f"({type_name(hints[field.name])}, " in line, line
            assert field.metadata.get("help") and field.metadata["help"] in line, (name, field.name)
    code, out, _ = run_cli([], capsys)
    assert code == 0 and all(f"  {name} " in out for name in COMMAND_NAMES)


@pytest.mark.parametrize("argv,fragments", [
    (["extract", "--text", "x", "--n_ctxx", "5"], ["unknown flag --n_ctxx", "did you mean --n_ctx"]),
    (["extract", "--text", "x", "--backend", "hf"], ["unknown flag --backend"]),  # the runtime is --runtime
    (["convert", "--inptu", "a", "--output", "b"], ["--inptu", "did you mean --input"]),
    (["extract", "--text", "x", "--runtime", "vllm"], ["--runtime='vllm' is not one of auto, hf, llama.cpp, openai"]),
    (["evaluate", "--model", "m", "--data", "d", "--out", "o", "--dtype", "fp8"], ["--dtype='fp8'", "bf16"]),
    (["compare", "--gold", "g", "--pred_a", "a", "--pred_b", "b", "--resamples", "0"], ["--resamples=0"]),
    (["compare", "--gold", "g", "--pred_a", "a", "--pred_b", "b", "--seed", "x"], ["--seed", "whole number"]),
    (["export", "--model", "m", "--on_parity_fail", "ignore"], ["--on_parity_fail='ignore'", "fail, warn"]),
    (["extrat"], ["unknown command 'extrat'", "did you mean extract"]),
    (["score", "stray", "--gold", "g"], ["unexpected argument", "stray"]),
])
def test_a_flag_that_does_not_fit_is_one_line(argv, fragments, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("t2g: error: ") and err.count("\n") == 1 and out == "", err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
