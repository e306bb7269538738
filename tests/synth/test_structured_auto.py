"""`--structured=auto` (one probe before the run picks the mode the endpoint takes) and errors that no
retry can fix (attempted once; the run stops when its first rows all hit the same one). Loopback
fake endpoints only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from servers import FakeServer, chat_body, free_port
from t2g.data.canonical import DataError
from t2g.infer.openai_client import EndpointError, OpenAIChatClient
from t2g.synth.config import GenerateConfig
from t2g.synth.generate import generate
from t2g.synth.jobs import SAME_FATAL_STOP
from t2g.synth.probe import PROBE_MAX_TOKENS, PROBE_TEXT, choose

ENTS = ["person", "location"]
RELS = ["lives in"]
TEXTS = ["Alice lives in Paris.", "Bob lives in Rome.", "Carol lives in Oslo.", "Dave lives in Lima.",
         "Erin lives in Bern.", "Frank lives in Kyiv."]
# What llama-cpp-python 0.3.36's server answers to response_format={"type": "json_schema", ...}.
LLAMA_CPP_PYTHON_500 = {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
    "type": "internal_server_error", "param": None, "code": None}}
REFUSED = ("json", 400, {"error": {"message": "unknown field", "type": "invalid_request_error"}})


def text_of(body: dict) -> str:
    match = re.search(r"Text: (.*?)\n\n", body["messages"][-1]["content"], re.S)
    return match.group(1) if match else ""


def mode_of(body: dict) -> str:
    if "response_format" in body:
        return body["response_format"]["type"]
    return "grammar" if "grammar" in body else "none"


def endpoint(refuse: dict[str, tuple] | None = None):
    """A teacher that answers every request with the text's capitalised words as persons, unless the
    request's mode is in `refuse` (mode -> the action answered instead)."""
    def script(body, headers):
        action = (refuse or {}).get(mode_of(body))
        if action is not None:
            return action
        names = re.findall(r"\b[A-Z][a-z]+\b", text_of(body))[:1]
        return ("json", 200, chat_body(json.dumps({"entities": [{"text": n, "type": "person"} for n in names],
                                                   "relations": []})))
    return script


def config(tmp_path: Path, url: str, texts=TEXTS, **kw) -> GenerateConfig:
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    base = dict(input=str(tmp_path / "texts.txt"), output=str(tmp_path / "out.jsonl"), base_url=url, model="teacher",
                entity_types=ENTS, relation_types=RELS, concurrency=3, timeout=5.0, retries=2, backoff=0.01,
                augment_copies=0, progress=False)
    return GenerateConfig(**{**base, **kw})


def probes(srv: FakeServer) -> list[dict]:
    return [b for b in srv.requests if text_of(b) == PROBE_TEXT]


def rows(srv: FakeServer) -> list[dict]:
    return [b for b in srv.requests if text_of(b) != PROBE_TEXT]


# --- the probe ------------------------------------------------------------------------------


@pytest.mark.parametrize("refuse, expected, probed", [
    ({}, "json_schema", ["json_schema"]),
    ({"json_schema": ("json", 500, LLAMA_CPP_PYTHON_500)}, "json_object", ["json_schema", "json_object"]),
    ({"json_schema": REFUSED, "json_object": ("json", 422, {"detail": "bad"})}, "grammar",
     ["json_schema", "json_object", "grammar"]),
    ({"json_schema": REFUSED, "json_object": REFUSED,  # a server that ignores `grammar` is not taken at its word
      "grammar": ("json", 200, chat_body("Sure, here is"))}, "none", ["json_schema", "json_object", "grammar"]),
    ({"json_schema": REFUSED, "json_object": REFUSED, "grammar": REFUSED}, "none",
     ["json_schema", "json_object", "grammar"]),
])
def test_probe_takes_the_first_mode_the_endpoint_accepts(refuse, expected, probed):
    with FakeServer(endpoint(refuse)) as srv:
        choice = choose(OpenAIChatClient(srv.base_url, "teacher", retries=2, backoff=0), ENTS, RELS)
    assert choice.mode == expected
    assert [mode_of(b) for b in srv.requests] == probed  # each refused mode asked once, never retried
    assert all(b["max_tokens"] == PROBE_MAX_TOKENS and text_of(b) == PROBE_TEXT for b in srv.requests)
    assert choice.line().startswith(f"t2g generate: --structured=auto chose {expected} (")


def test_auto_picks_json_schema_when_accepted(tmp_path, capsys):
    with FakeServer(endpoint()) as srv:
        report = generate(config(tmp_path, srv.base_url))
    assert report["structured"] == {"asked": "auto", "used": "json_schema", "why": "the server accepted json_schema"}
    assert len(probes(srv)) == 1 and {mode_of(b) for b in rows(srv)} == {"json_schema"}
    assert report["teacher"]["answered_now"] == 6 and report["failed_rows"] == 0
    assert "--structured=auto chose json_schema (the server accepted json_schema)" in capsys.readouterr().err


def test_auto_falls_back_to_json_object_on_the_llama_cpp_python_500(tmp_path, capsys):
    with FakeServer(endpoint({"json_schema": ("json", 500, LLAMA_CPP_PYTHON_500)})) as srv:
        report = generate(config(tmp_path, srv.base_url, ground_spans=True))
    assert [mode_of(b) for b in probes(srv)] == ["json_schema", "json_object"]  # a 500 that blames the request: once
    assert {mode_of(b) for b in rows(srv)} == {"json_object"} and len(rows(srv)) == 6
    assert report["failed_rows"] == 0 and report["examples_kept"] == 6
    used = json.loads((tmp_path / "out.summary.json").read_text())["structured"]
    assert used["used"] == "json_object" and used["why"].startswith("the server refused json_schema: HTTP 500")
    assert "Input should be 'text' or 'json_object'" in used["why"]
    err = capsys.readouterr().err
    assert "t2g generate: --structured=auto chose json_object (the server refused json_schema: HTTP 500" in err


def test_auto_falls_back_to_none_and_ground_spans_then_names_both_flags(tmp_path):
    nothing = {"json_schema": REFUSED, "json_object": REFUSED, "grammar": REFUSED}
    with FakeServer(endpoint(nothing)) as srv:
        report = generate(config(tmp_path, srv.base_url))
        assert report["structured"]["used"] == "none" and {mode_of(b) for b in rows(srv)} == {"none"}
        assert report["teacher"]["answered_now"] == 6 and len(probes(srv)) == 3
        with pytest.raises(DataError, match=r"--ground_spans needs structured output, but --structured=auto found "
                                            r"none .*give --structured json_schema, json_object or grammar"):
            generate(config(tmp_path, srv.base_url, output=str(tmp_path / "spans.jsonl"), ground_spans=True))
        assert len(probes(srv)) == 3 + 3 and len(rows(srv)) == 6  # three probes again, then no row asked
    assert not (tmp_path / "spans.teacher.jsonl").exists()


def test_the_probe_runs_once_per_run_and_not_when_nothing_is_left(tmp_path):
    with FakeServer(endpoint({"json_schema": ("json", 500, LLAMA_CPP_PYTHON_500)})) as srv:
        generate(config(tmp_path, srv.base_url, concurrency=3))
        assert len(probes(srv)) == 2 and len(rows(srv)) == 6  # json_schema refused, json_object taken: one probe
    # Everything is cached: no request at all, not even a probe (the endpoint is gone).
    report = generate(config(tmp_path, f"http://127.0.0.1:{free_port()}/v1"))
    assert report["teacher"]["answered_before"] == 6 and report["structured"]["used"] == "json_object"
    # New rows resume the cache with its mode, asked first (one probe request), and an explicit
    # --structured json_object resumes it too: the cache is keyed by the mode the requests carried.
    with FakeServer(endpoint()) as srv:
        report = generate(config(tmp_path, srv.base_url, texts=TEXTS + ["Grace lives in Riga."]))
        assert [mode_of(b) for b in probes(srv)] == ["json_object"] and len(rows(srv)) == 1
        report = generate(config(tmp_path, srv.base_url, texts=TEXTS + ["Grace lives in Riga.", "Heidi lives in Baku."],
                                 structured="json_object"))
        assert len(probes(srv)) == 1 and report["structured"] == {"asked": "json_object", "used": "json_object"}
    assert report["teacher"]["answered_before"] == 7 and report["failed_rows"] == 0


def test_a_cache_whose_mode_the_endpoint_now_refuses_is_not_mixed(tmp_path):
    with FakeServer(endpoint()) as srv:
        generate(config(tmp_path, srv.base_url, structured="json_object", texts=TEXTS[:2]))
    with FakeServer(endpoint({"json_object": REFUSED})) as srv:
        with pytest.raises(DataError, match=r"asked with --structured=json_object, but the endpoint now takes "
                                            r"json_schema.*another --output"):
            generate(config(tmp_path, srv.base_url))
        assert rows(srv) == []


def test_explicit_modes_are_not_probed(tmp_path):
    with FakeServer(endpoint()) as srv:
        for mode in ("json_schema", "json_object", "grammar", "none"):
            report = generate(config(tmp_path, srv.base_url, structured=mode, output=str(tmp_path / f"{mode}.jsonl")))
            assert report["structured"] == {"asked": mode, "used": mode}
        assert probes(srv) == [] and [mode_of(b) for b in srv.requests] == [m for m in ("json_schema", "json_object",
                                                                                         "grammar", "none") for _ in TEXTS]


def test_a_dead_endpoint_fails_the_probe_with_a_message_not_rows(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(DataError, match=r"--structured=auto could not probe the endpoint: .*cannot connect.*"
                                        r"Is the server up\? \(or give --structured"):
        generate(config(tmp_path, url, retries=0))
    assert not (tmp_path / "out.errors.jsonl").exists()


# --- errors that no retry can fix -----------------------------------------------------------


@pytest.mark.parametrize("action, fatal", [
    (("json", 400, {"error": "bad field"}), True),
    (("json", 404, {"error": "no such model"}), True),
    (("json", 422, {"detail": [{"msg": "field required"}]}), True),
    (("json", 500, LLAMA_CPP_PYTHON_500), True),
    (("json", 500, {"error": "1 validation error for CreateChatCompletionRequest"}), True),
    (("json", 500, {"error": {"message": "grammar is unsupported here"}}), True),
    (("json", 200, {"error": {"message": "Invalid request: max_tokens", "type": "invalid_request_error"}}), True),
    (("json", 429, {"error": "slow down"}), False),
    (("json", 408, {"error": "request timeout"}), False),
    (("json", 503, {"error": "overloaded"}), False),
    (("json", 500, {"error": "CUDA out of memory"}), False),
    (("json", 200, {"error": "model is loading"}), False),
])
def test_an_error_no_retry_can_fix_is_attempted_once(action, fatal):
    waits: list[float] = []
    with FakeServer(lambda body, headers: action) as srv:
        client = OpenAIChatClient(srv.base_url, "m", retries=3, backoff=0.5, sleep=waits.append)
        with pytest.raises(EndpointError) as info:
            client.chat([{"role": "user", "content": "hi"}])
    assert info.value.fatal is fatal and info.value.status == action[1]
    assert len(srv.requests) == info.value.attempts == (1 if fatal else 4)
    assert waits == ([] if fatal else [0.5, 1.0, 2.0])  # the retryable ones keep their backoff
    assert info.value.detail.startswith(f"HTTP {action[1]}: ") and srv.base_url not in info.value.detail


def test_the_same_unfixable_error_on_the_first_rows_stops_the_run(tmp_path, capsys):
    """The README's teacher before auto: --structured json_schema against llama-cpp-python's server."""
    texts = [f"{name} lives in Paris." for name in ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi")]
    slow_500 = ("sleep", 0.05, ("json", 500, LLAMA_CPP_PYTHON_500))  # a worker cannot race far ahead of the run
    with FakeServer(endpoint({"json_schema": slow_500})) as srv:
        report = generate(config(tmp_path, srv.base_url, texts=texts, structured="json_schema", concurrency=1))
    assert report["failed_rows"] == SAME_FATAL_STOP  # one attempt per row, then stop (the next was in flight)
    assert SAME_FATAL_STOP <= len(srv.requests) <= SAME_FATAL_STOP + 1
    errors = [json.loads(line) for line in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert [(e["attempts"], e["retryable"], e["status"]) for e in errors] == [(1, False, 500)] * SAME_FATAL_STOP
    assert report["stopped_early"].startswith(f"teacher: stopped after the first {SAME_FATAL_STOP} rows failed with "
                                              "the same error, which no retry can fix (HTTP 500: ")
    assert report["stopped_early"].endswith(f"; {len(texts) - SAME_FATAL_STOP} rows not attempted")
    assert "--structured=auto" in report["hint"] and "hint:" in capsys.readouterr().err


def test_unfixable_errors_of_single_rows_do_not_stop_the_run(tmp_path):
    def script(body, headers):  # a row-specific refusal (its own message), then the rest answer
        name = text_of(body).split(" ")[0]
        if name in ("Alice", "Bob", "Carol"):
            return ("json", 400, {"error": f"prompt of {name} too long"})
        return endpoint()(body, headers)

    def after_a_success(body, headers):  # the same refusal, but only after a row was answered
        if text_of(body).startswith("Alice"):
            return endpoint()(body, headers)
        return ("json", 400, {"error": "context too long"})

    with FakeServer(script) as srv:
        report = generate(config(tmp_path, srv.base_url, structured="none", concurrency=1))
    assert report["failed_rows"] == 3 and report["teacher"]["answered_now"] == 3 and "stopped_early" not in report
    assert len(srv.requests) == 6  # each refused row asked once
    with FakeServer(after_a_success) as srv:
        report = generate(config(tmp_path, srv.base_url, structured="none", concurrency=1,
                                 output=str(tmp_path / "two.jsonl")))
    assert report["failed_rows"] == 5 and "stopped_early" not in report and len(srv.requests) == 6
