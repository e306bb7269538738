"""OpenAIChatClient against a loopback fake (every fault) and the real llama_cpp.server."""

from __future__ import annotations

import json

import pytest

from servers import FakeServer, chat_body, llama_server, llama_server_available
from t2g.infer.openai_client import EndpointError, EndpointPool, OpenAIChatClient, chat_client, split_base_urls

MESSAGES = [{"role": "user", "content": "hi"}]


def client(url: str, **kw) -> tuple[OpenAIChatClient, list[float]]:
    waits: list[float] = []
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0.5)
    kw.setdefault("timeout", 5.0)
    return OpenAIChatClient(url, "teacher", sleep=waits.append, **kw), waits


def sequence(*actions):
    """A script that plays `actions` in order, repeating the last one."""
    state = {"i": 0}

    def script(body, headers):
        i = min(state["i"], len(actions) - 1)
        state["i"] += 1
        return actions[i]
    return script


def test_success_sends_the_request_and_returns_content(monkeypatch):
    monkeypatch.setenv("T2G_TEST_KEY", "sk-secret-123")
    with FakeServer(sequence(("json", 200, chat_body("hello")))) as srv:
        c, waits = client(srv.base_url + "/", api_key_env="T2G_TEST_KEY")
        fmt = {"type": "json_object"}
        out = c.chat(MESSAGES, temperature=0.3, max_tokens=7, response_format=fmt, extra={"grammar": "root ::= x"})
    assert out == "hello" and waits == []
    body = srv.requests[0]
    assert body == {"model": "teacher", "messages": MESSAGES, "temperature": 0.3, "max_tokens": 7,
                    "response_format": fmt, "grammar": "root ::= x"}
    assert srv.headers[0]["Authorization"] == "Bearer sk-secret-123"


def test_no_key_means_no_authorization_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeServer(sequence(("json", 200, chat_body("ok")))) as srv:
        assert client(srv.base_url)[0].chat(MESSAGES) == "ok"
    assert "Authorization" not in srv.headers[0]


def test_complete_reports_finish_reason_and_usage():
    with FakeServer(sequence(("json", 200, chat_body("cut", "length")))) as srv:
        resp = client(srv.base_url)[0].complete(MESSAGES)
    assert (resp.content, resp.finish_reason, resp.usage["total_tokens"]) == ("cut", "length", 2)


@pytest.mark.parametrize("fault", [
    ("json", 500, {"error": "boom"}),
    ("json", 503, {"error": "busy"}),
    ("json", 429, {"error": "slow down"}),
    ("raw", 200, b"<html>bad gateway</html>"),
    ("json", 200, {"choices": []}),
    ("json", 200, {"choices": [{"message": {"content": None}}]}),
    ("json", 200, {"error": {"message": "model overloaded"}}),
    ("drop",),
])
def test_transient_faults_are_retried_with_exponential_backoff(fault):
    with FakeServer(sequence(fault, fault, ("json", 200, chat_body("finally")))) as srv:
        c, waits = client(srv.base_url)
        assert c.chat(MESSAGES) == "finally"
    assert len(srv.requests) == 3
    assert waits == [0.5, 1.0]


def test_persistent_500_raises_endpoint_error_naming_url_status_and_error():
    with FakeServer(sequence(("json", 500, {"error": "kaput"}))) as srv:
        c, waits = client(srv.base_url, retries=2)
        with pytest.raises(EndpointError) as info:
            c.chat(MESSAGES)
    err = info.value
    assert len(srv.requests) == 3 and waits == [0.5, 1.0]
    assert (err.status, err.attempts, err.url) == (500, 3, srv.base_url + "/chat/completions")
    assert srv.base_url in str(err) and "HTTP 500" in str(err) and "kaput" in str(err) and "3 attempts" in str(err)


def test_non_json_after_retries_is_an_error():
    with FakeServer(sequence(("raw", 200, b"not json at all"))) as srv:
        with pytest.raises(EndpointError, match="not JSON.*not json at all"):
            client(srv.base_url, retries=1)[0].chat(MESSAGES)
    assert len(srv.requests) == 2


def test_client_errors_are_not_retried():
    with FakeServer(sequence(("json", 400, {"error": "bad field"}))) as srv:
        c, waits = client(srv.base_url)
        with pytest.raises(EndpointError, match="HTTP 400.*bad field") as info:
            c.chat(MESSAGES)
    assert len(srv.requests) == 1 and waits == [] and info.value.attempts == 1


def test_retry_after_header_is_honoured():
    with FakeServer(sequence(("json", 429, {"error": "x"}, {"Retry-After": "3"}), ("json", 200, chat_body("y")))) as srv:
        c, waits = client(srv.base_url)
        assert c.chat(MESSAGES) == "y"
    assert waits == [3.0]


def test_timeouts_are_retried_then_reported():
    with FakeServer(sequence(("sleep", 1.0, ("json", 200, chat_body("late"))))) as srv:
        c, waits = client(srv.base_url, timeout=0.2, retries=1)
        with pytest.raises(EndpointError, match="timed out after 0.2 s"):
            c.chat(MESSAGES)
    assert len(srv.requests) == 2 and waits == [0.5]


def test_connection_refused_is_reported():
    from servers import free_port
    c, waits = client(f"http://127.0.0.1:{free_port()}/v1", retries=1)
    with pytest.raises(EndpointError, match="cannot connect") as info:
        c.chat(MESSAGES)
    assert info.value.status is None and waits == [0.5]


def test_the_api_key_never_appears_in_errors(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-leaky-987")

    def echo(body, headers):  # a server that echoes the credentials back in its error page
        return ("raw", 500, json.dumps({"error": f"bad auth {headers.get('Authorization')}"}).encode())
    with FakeServer(echo) as srv:
        with pytest.raises(EndpointError) as info:
            client(srv.base_url, retries=0)[0].chat(MESSAGES)
    assert srv.headers[0]["Authorization"] == "Bearer sk-leaky-987"  # it was sent ...
    assert "sk-leaky-987" not in str(info.value) and "<redacted>" in str(info.value)  # ... never shown
    assert "sk-leaky-987" not in repr(info.value.args)


@pytest.mark.parametrize("kw, match", [
    ({"base_url": "localhost:8000"}, "http://"),
    ({"model": ""}, "model"),
    ({"timeout": 0}, "timeout"),
    ({"retries": -1}, "retries"),
])
def test_bad_construction_is_rejected(kw, match):
    args = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kw}
    with pytest.raises(ValueError, match=match):
        OpenAIChatClient(**args)


@pytest.mark.slow
@pytest.mark.skipif(not llama_server_available(), reason="needs llama-cpp-python[server] (the llama extra)")
def test_real_llama_cpp_server_answers_with_schema_constrained_json(smollm2_gguf):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    with llama_server(smollm2_gguf) as url:
        c = OpenAIChatClient(url, "smollm2", timeout=120, retries=1)
        plain = c.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
        constrained = c.chat([{"role": "user", "content": "What is the capital of France? Answer in JSON."}],
                             max_tokens=24, response_format={"type": "json_object", "schema": schema})
    assert isinstance(plain, str) and plain.strip()
    assert isinstance(json.loads(constrained)["answer"], str)


# --- several endpoints: EndpointPool ------------------------------------------------------------


def test_one_url_gives_a_plain_client_and_a_list_gives_a_pool():
    assert isinstance(chat_client("http://127.0.0.1:1/v1", "m"), OpenAIChatClient)
    pool = chat_client(" http://127.0.0.1:1/v1 , http://127.0.0.1:2/v1 ", "m")
    assert isinstance(pool, EndpointPool)
    assert [c.base_url for c in pool.clients] == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]


@pytest.mark.parametrize("value, match", [(",", "names no endpoint"), ("http://a/v1,http://a/v1", "twice")])
def test_bad_url_lists_are_rejected(value, match):
    with pytest.raises(ValueError, match=match):
        split_base_urls(value)


def test_sequential_requests_go_round_robin_over_the_endpoints():
    answer = sequence(("json", 200, chat_body("ok")))
    with FakeServer(answer) as a, FakeServer(answer) as b, FakeServer(answer) as c:
        pool = chat_client(",".join(s.base_url for s in (a, b, c)), "teacher", timeout=5.0, retries=0)
        for _ in range(7):
            assert pool.chat(MESSAGES) == "ok"
    assert (len(a.requests), len(b.requests), len(c.requests)) == (3, 2, 2)
    assert pool.served == [3, 2, 2] and pool.in_flight == [0, 0, 0]


def test_concurrent_requests_go_to_the_least_busy_endpoint():
    """A slow endpoint keeps its request in flight, so the others take the rest of the work."""
    from concurrent.futures import ThreadPoolExecutor

    with FakeServer(sequence(("sleep", 1.5, ("json", 200, chat_body("slow"))))) as slow, \
            FakeServer(sequence(("sleep", 0.05, ("json", 200, chat_body("fast"))))) as fast:
        pool = chat_client(f"{slow.base_url},{fast.base_url}", "teacher", timeout=10.0, retries=0)
        with ThreadPoolExecutor(2) as ex:
            first = ex.submit(pool.chat, MESSAGES)  # goes to `slow` (first among idle endpoints)
            import time as _time
            _time.sleep(0.3)
            rest = [ex.submit(pool.chat, MESSAGES) for _ in range(4)]
            answers = [f.result() for f in rest]
            assert first.result() == "slow"
    assert answers == ["fast"] * 4
    assert (len(slow.requests), len(fast.requests)) == (1, 4)


def test_a_dead_endpoint_in_a_pool_fails_loudly_naming_its_url():
    with FakeServer(sequence(("json", 200, chat_body("ok")))) as alive:
        dead = "http://127.0.0.1:9/v1"
        pool = chat_client(f"{dead},{alive.base_url}", "teacher", timeout=2.0, retries=0)
        with pytest.raises(EndpointError, match="127.0.0.1:9/v1"):
            pool.chat(MESSAGES)  # no silent move to the live endpoint
        assert pool.chat(MESSAGES) == "ok"  # the next request goes round to the other one
