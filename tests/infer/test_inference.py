"""Inference: model resolution, each backend on CPU, endpoint faults, and `t2g extract`."""

from __future__ import annotations

import json
import time

import pytest

from servers import FakeServer, chat_body, llama_server, llama_server_available
from t2g.infer.extractor import extract
from t2g.infer.resolve import ModelSpec, resolve_model
from t2g.infer.runner import BACKEND_ERROR
from t2g.task.schema import Graph

ENTS = ["person", "organization", "location"]
RELS = ["works for", "based in"]
GOOD = json.dumps({"entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
                   "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}]})


# --- model resolution ---------------------------------------------------------------------------------


def test_resolve_model_specs(tmp_path, tiny_model_dir, smollm2_gguf):
    assert resolve_model("smollm2") == ModelSpec("llama.cpp", str(smollm2_gguf))
    assert resolve_model(str(smollm2_gguf), "hf") == ModelSpec("hf", str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name)
    assert resolve_model(str(tiny_model_dir)) == ModelSpec("hf", str(tiny_model_dir))
    assert resolve_model("org/name") == ModelSpec("hf", "org/name")
    assert resolve_model("my-model", "openai", base_url="http://127.0.0.1:1/v1") == ModelSpec("openai", "my-model")
    # A run directory: GRPO's adapter over SFT's, the base model from the run's recorded config.json.
    run = tmp_path / "run"
    for stage in ("sft", "grpo"):
        (run / stage / "adapter").mkdir(parents=True)
        (run / stage / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "elsewhere"}))
    (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir), "stages": ["sft", "grpo"]}))
    assert resolve_model(str(run)) == ModelSpec("hf", str(tiny_model_dir), adapter=str(run / "grpo" / "adapter"))
    # A bare adapter folder: the base model from adapter_config.json.
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    assert resolve_model(str(tmp_path / "ad")).adapter == str(tmp_path / "ad")
    # Other tools' layouts, in folders that are not runs: a model in merged/ (or final/), an adapter in adapter/.
    (tmp_path / "other" / "merged").mkdir(parents=True)
    (tmp_path / "other" / "merged" / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert resolve_model(str(tmp_path / "other")) == ModelSpec("hf", str(tmp_path / "other" / "merged"))
    (tmp_path / "ad").rename(tmp_path / "other" / "adapter")
    (tmp_path / "other" / "final").mkdir()
    assert resolve_model(str(tmp_path / "other")) == ModelSpec("hf", str(tmp_path / "other" / "merged"))  # merged first
    (tmp_path / "other" / "merged" / "config.json").unlink()
    assert resolve_model(str(tmp_path / "other")) == ModelSpec("hf", str(tiny_model_dir), adapter=str(tmp_path / "other" / "adapter"))


@pytest.mark.parametrize("model,runtime,kw,match", [
    ("x", "vllm", {}, "--runtime"),
    ("x", "openai", {}, "base_url"),
    ("missing.gguf", "auto", {}, "no such GGUF"),
    ("./nowhere", "auto", {}, "no such folder"),
    ("org/name", "llama.cpp", {}, "needs a .gguf"),
])
def test_resolve_model_errors(model, runtime, kw, match):
    with pytest.raises(ValueError, match=match):
        resolve_model(model, runtime, **kw)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="found no model"):
        resolve_model(str(tmp_path))


# --- HF ---------------------------------------------------------------------------------------------


def test_hf_batched_left_padding_matches_one_by_one(tiny_model_dir):
    texts = ["Tim Cook runs Apple.", "A much longer sentence about Paris, Berlin and Rome and more.", "Hi."]
    batched = extract(texts, ENTS, RELS, model=str(tiny_model_dir), runtime="hf", max_new_tokens=12, batch_size=3)
    single = extract(texts, ENTS, RELS, model=str(tiny_model_dir), runtime="hf", max_new_tokens=12, batch_size=1)
    assert [r.completion for r in batched] == [r.completion for r in single]
    assert all(r.completion for r in batched)
    assert all(r.graph is None and r.error for r in batched)  # noise from a random tiny model, parsed, never raised


def test_hf_adapter_is_loaded_and_changes_the_model(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    text = "Tim Cook runs Apple."
    with_adapter = extract(text, ENTS, RELS, model=str(tmp_path / "adapter"), runtime="hf", max_new_tokens=16)
    without = extract(text, ENTS, RELS, model=str(tiny_model_dir), runtime="hf", max_new_tokens=16)
    assert with_adapter[0].completion != without[0].completion


def test_hf_refuses_constrained_decoding_clearly(tiny_model_dir):
    from t2g.infer.backends import BackendError

    with pytest.raises(BackendError, match="runtime=llama.cpp"):
        extract("Tim Cook runs Apple.", ENTS, RELS, model=str(tiny_model_dir), runtime="hf", constrained=True)


@pytest.mark.slow
def test_hf_on_real_smollm2(smollm2_hf_dir):
    [r] = extract("Tim Cook is the CEO of Apple.", ENTS, RELS, model=str(smollm2_hf_dir), runtime="hf", max_new_tokens=16)
    assert r.completion.lstrip().startswith("{")  # a real instruct model answers in JSON-ish text


# --- llama.cpp ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_llama_cpp_on_smollm2_is_deterministic(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    texts = ["Tim Cook is the CEO of Apple.", "Paris is in France."]
    a = extract(texts, ENTS, RELS, model="smollm2", max_new_tokens=48, n_ctx=1024, n_threads=1)
    b = extract(texts, ENTS, RELS, model=str(smollm2_gguf), runtime="llama.cpp", max_new_tokens=48, n_ctx=1024, n_threads=1)
    assert [r.completion for r in a] == [r.completion for r in b]
    assert all(r.completion.lstrip().startswith("{") for r in a)


@pytest.mark.slow
def test_llama_cpp_chunks_a_text_longer_than_its_context(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.infer.runner import Runner, make_request

    sentence = "Tim Cook works for Apple in Cupertino . "
    request = make_request(sentence * 60, ENTS, RELS)  # ~540 tokens of text + ~300 of prompt > n_ctx
    backend = LlamaCppBackend(str(smollm2_gguf), n_ctx=768, n_threads=1)
    assert backend.count_tokens(request.text) > 500
    [whole] = backend.generate([request], max_new_tokens=32)
    assert whole.error and "context" in whole.error  # unchunked, the prompt does not fit
    [r] = Runner(backend, max_new_tokens=32, constrained=True).run([request])
    assert r.chunks >= 2 and len(r.chunk_completions) == r.chunks and all(c for c in r.chunk_completions)
    assert r.graph is not None or r.error == "chunk_failed"
    if r.graph is not None:  # one merged graph, deduplicated across chunks
        keys = [(e.text.casefold(), e.type) for e in r.graph.entities]
        assert len(keys) == len(set(keys))


@pytest.mark.slow
def test_llama_cpp_batched_greedy_matches_one_at_a_time(smollm2_gguf):
    """batch_size > 1 decodes a batch's requests together (t2g.infer.llama_batched): the same completions as
    llama-cpp-python's own loop on these texts (a near-tie elsewhere can flip a token: another float
    summation order), and a prompt over the context fails alone, as it does one at a time."""
    pytest.importorskip("llama_cpp")
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.infer.runner import make_request

    texts = ["Tim Cook is the CEO of Apple.", "Paris is in France.", "Angela Merkel met Emmanuel Macron in Berlin on Monday.",
             "Nothing here.", "Tim Cook works for Apple in Cupertino . " * 60, "Sundar Pichai leads Google, based in Mountain View."]
    requests = [make_request(t, ENTS, RELS) for t in texts]
    one = LlamaCppBackend(str(smollm2_gguf), n_ctx=768, n_threads=1, batch_size=1).generate(requests, max_new_tokens=40)
    batched = LlamaCppBackend(str(smollm2_gguf), n_ctx=768, n_threads=1, batch_size=4)
    together = batched.generate(requests, max_new_tokens=40)
    assert [g.completion for g in together] == [g.completion for g in one]
    assert [bool(g.error) for g in together] == [bool(g.error) for g in one] == [False] * 4 + [True, False]
    assert "context" in together[4].error
    assert all(g.completion for i, g in enumerate(together) if i != 4)
    # max_new_tokens bounds each sequence; a 1-token budget still gives text for every request
    short = batched.generate(requests[:3], max_new_tokens=1)
    assert [g.completion for g in short] == [g.completion for g in LlamaCppBackend(
        str(smollm2_gguf), n_ctx=768, n_threads=1, batch_size=1).generate(requests[:3], max_new_tokens=1)]
    batched.close()


@pytest.mark.slow
def test_llama_cpp_batching_needs_the_gguf_chat_template(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    from t2g.infer.backends import BackendError
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.infer.runner import make_request

    with pytest.raises(BackendError, match="--batch_size=0"):
        LlamaCppBackend(str(smollm2_gguf), n_ctx=512, n_threads=1, batch_size=0)
    backend = LlamaCppBackend(str(smollm2_gguf), n_ctx=512, n_threads=1, batch_size=2)
    backend.llm.chat_format = "llama-2"  # a GGUF without tokenizer.chat_template gets a guessed format
    requests = [make_request("Paris is in France.", ENTS, RELS)] * 2
    with pytest.raises(BackendError, match="pass --batch_size=1"):
        backend.generate(requests, max_new_tokens=4)
    assert len(backend.generate(requests, max_new_tokens=4, constrained=True)) == 2  # one at a time: no template needed


# --- OpenAI-compatible servers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_server_url(smollm2_gguf):
    if not llama_server_available():
        pytest.skip("llama-cpp-python[server] is not installed")
    with llama_server(smollm2_gguf, n_ctx=2048) as url:
        yield url


@pytest.mark.slow
def test_openai_backend_against_a_real_llama_cpp_server(llama_server_url):
    texts = ["Tim Cook is the CEO of Apple.", "Paris is in France."]
    free = extract(texts, ENTS, RELS, model="smollm2", runtime="openai", base_url=llama_server_url, max_new_tokens=32)
    assert all(r.error != BACKEND_ERROR and r.completion for r in free)
    # The server filters the whole vocabulary with its grammar at every step (slow): one short answer.
    fixed = extract(texts[:1], ENTS, RELS, model="smollm2", runtime="openai", base_url=llama_server_url, max_new_tokens=40,
                    constrained=True, schema_style="json_object")
    for r in fixed:  # the server turns the schema into a grammar: parses, types from the lists, or cut by the limit
        assert r.error in (None, "truncated"), (r.error, r.detail, r.completion)
        if r.graph is not None:
            assert {e.type for e in r.graph.entities} <= set(ENTS) and {x.type for x in r.graph.relations} <= set(RELS)


def _faulty_script(counts: dict):
    """Answers by the text in the prompt: 500s, a hang, garbage, or a good graph."""

    def script(body, headers):
        text = body["messages"][1]["content"]
        key = next(k for k in ("TIMEOUT", "FAIL500", "GARBAGE", "GOOD") if k in text)
        counts[key] = counts.get(key, 0) + 1
        if key == "FAIL500":
            return ("raw", 500, b"internal error")
        if key == "TIMEOUT":
            return ("sleep", 1.5, ("json", 200, chat_body(GOOD)))
        if key == "GARBAGE":
            return ("raw", 200, b"<html>proxy says hi</html>")
        return ("json", 200, chat_body(GOOD))

    return script


@pytest.mark.parametrize("concurrency", [1, 3])
def test_endpoint_faults_retry_then_fail_per_row_while_the_batch_completes(concurrency):
    counts: dict = {}
    texts = ["GOOD Tim Cook runs Apple.", "FAIL500 x", "TIMEOUT y", "GARBAGE z", "GOOD again: Tim Cook runs Apple."]
    with FakeServer(_faulty_script(counts)) as server:
        start = time.monotonic()
        results = extract(texts, ENTS, RELS, model="m", runtime="openai", base_url=server.base_url, timeout=0.5,
                          retries=2, backoff=0.0, concurrency=concurrency)
        elapsed = time.monotonic() - start
    assert counts == {"GOOD": 2, "FAIL500": 3, "TIMEOUT": 3, "GARBAGE": 3}  # 1 try + 2 retries for each failure
    good, fail500, timeout, garbage, good2 = results
    assert good.ok and good2.ok and good.graph == good2.graph and len(good.graph.entities) == 2
    for r, needle in ((fail500, "HTTP 500"), (timeout, "timed out"), (garbage, "not JSON")):
        assert r.graph is None and r.error == BACKEND_ERROR and needle in r.detail and "3 attempts" in r.detail
    assert elapsed < 30


def test_constrained_request_carries_the_schema():
    seen = []

    def script(body, headers):
        seen.append(body)
        return ("json", 200, chat_body(GOOD))

    with FakeServer(script) as server:
        extract("Tim Cook runs Apple.", ENTS, RELS, model="m", runtime="openai", base_url=server.base_url, constrained=True)
    fmt = seen[0]["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["properties"]["entities"]["items"]["properties"]["type"]["enum"] == ENTS
    assert seen[0]["temperature"] == 0.0


# --- t2g extract --------------------------------------------------------------------------------------


def run_cli(argv, capsys):
    from t2g.cli import main

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_extract_cli_jsonl_in_and_out(tmp_path, capsys):
    rows = [{"id": "a", "text": "GOOD Tim Cook runs Apple."}, {"text": "FAIL500 nothing", "entity_types": ["person"]}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with FakeServer(_faulty_script({})) as server:
        code, out, err = run_cli(["extract", "--input", str(src), "--output", str(tmp_path / "out.jsonl"),
                                  "--entity_types", "person,organization", "--relation_types", "works for",
                                  "--model", "m", "--runtime", "openai", "--base_url", server.base_url,
                                  "--retries", "0", "--timeout", "2"], capsys)
    assert code == 0, err
    got = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "2"]
    assert Graph.from_dict(got[0]["graph"]).entities[0].text == "Tim Cook" and got[0]["completion"] == GOOD
    # Each row carries its text, and the graph's offsets into it.
    assert [r["text"] for r in got] == [row["text"] for row in rows]
    assert got[0]["graph"]["entities"][0]["spans"] == [[5, 13]]
    assert got[0]["text"][5:13] == "Tim Cook"
    assert got[1]["graph"] is None and got[1]["error"] == BACKEND_ERROR and "HTTP 500" in got[1]["detail"]
    assert "1 without a graph" in err


@pytest.mark.parametrize("argv,match", [
    (["extract", "--text", "hi"], "--entity_types"),
    (["extract", "--text", "hi", "--input", "x.jsonl"], "either --text"),
    (["extract", "--input", "x.jsonl"], "--output"),
    (["extract", "--text", "hi", "--entity_types", "a", "--relation_types", "b", "--n_ctx", "64",
      "--runtime", "openai", "--base_url", "http://127.0.0.1:9/v1"], "does not apply"),
])
def test_extract_cli_errors(argv, match, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and match in err


def test_extract_cli_bad_input_row_names_the_line(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"txt": "typo"}\n')
    code, _, err = run_cli(["extract", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), "--entity_types", "a",
                            "--relation_types", "b", "--runtime", "openai", "--base_url", "http://127.0.0.1:9/v1"], capsys)
    assert code == 2 and f"{src}:2" in err and "'text'" in err


@pytest.mark.slow
def test_extract_cli_one_text_with_llama_cpp(capsys):
    pytest.importorskip("llama_cpp")
    code, out, err = run_cli(["extract", "--text", "Tim Cook is the CEO of Apple.", "--entity_types", "person,organization",
                              "--relation_types", "works for", "--constrained", "--max_new_tokens", "64",
                              "--n_ctx", "1024", "--n_threads", "1"], capsys)
    row = json.loads(out)
    assert set(row) >= {"id", "graph", "error", "completion"}
    assert (code == 0) == (row["graph"] is not None)
    assert row["error"] in (None, "truncated")
