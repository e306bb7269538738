"""The Python API (`from t2g import Extractor`) as the README shows it, and the one declaration of the
runtime options that the API, `t2g extract` and `t2g evaluate` share."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from servers import FakeServer, chat_body
from t2g.infer.options import RUNTIME_OPTIONS, InferenceFlags, RuntimeOptions
from t2g.task.parsing import ERRORS
from t2g.task.schema import Graph

ENTS = ["person", "organization"]
RELS = ["works for"]
TEXT = "Tim Cook runs Apple."
GOOD = {"entities": [{"text": "Tim Cook", "type": "person"}, {"text": "Apple", "type": "organization"}],
        "relations": [{"head": "Tim Cook", "tail": "Apple", "type": "works for"}]}


def test_import_t2g_stays_light():
    code = ("import sys, t2g; t2g.Extractor, t2g.ExtractionError, t2g.Extraction, t2g.extract; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'llama_cpp', 'peft')); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir):
    """A training run as t2g.train writes it: config.json naming the base, sft/adapter with its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("run")
    (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir), "stages": ["sft"]}))
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(run / "sft" / "adapter")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run / "sft" / "adapter")
    return run


def test_readme_example_on_a_run_directory(run_dir, tiny_model_dir):
    from t2g import Extraction, ExtractionError, Extractor
    from t2g.infer.resolve import ModelSpec

    with Extractor(str(run_dir), max_new_tokens=12) as ex:
        assert ex.spec == ModelSpec("hf", str(tiny_model_dir), adapter=str(run_dir / "sft" / "adapter"))
        # The tiny model's answer is noise: no graph, so `extract` raises and says what came out.
        with pytest.raises(ExtractionError) as info:
            ex.extract(TEXT, ENTS, RELS)
        failure = info.value
        assert failure.reason in ERRORS and failure.completion and failure.result.graph is None
        assert failure.reason in str(failure)
        rows = ex.extract_batch([TEXT, "Paris is in France."], ENTS, RELS)
    assert [type(r) for r in rows] == [Extraction, Extraction]
    assert rows[0].completion == failure.completion and not rows[0].ok  # greedy: the same answer again


def test_readme_example_against_an_endpoint():
    from t2g import ExtractionError, Extractor

    answers = {"Tim": ("json", 200, chat_body(json.dumps(GOOD))), "Nobody": ("json", 200, chat_body("I found nothing.")),
               "Down": ("raw", 500, b"internal error")}

    def script(body, headers):
        return answers[body["messages"][1]["content"].split("Text: ", 1)[1].split()[0]]

    with FakeServer(script) as server:
        ex = Extractor("teacher", base_url=server.base_url, retries=0)
        assert ex.spec.runtime == "openai"
        graph = ex.extract(TEXT, ENTS, RELS)
        assert graph == Graph.from_dict(GOOD)
        # Located: offsets into the text given ("Tim Cook runs Apple.").
        assert [e.spans for e in graph.entities] == [((0, 8),), ((14, 19),)]
        assert (graph.relations[0].head_spans, graph.relations[0].tail_spans) == (((0, 8),), ((14, 19),))
        with pytest.raises(ExtractionError) as info:
            ex.extract("Nobody here.", ENTS, RELS)
        assert info.value.reason == "no_json" and info.value.completion == "I found nothing."
        rows = ex.extract_batch([TEXT, "Down again.", "Nobody at all."], ENTS, RELS)
    assert rows[0].graph == Graph.from_dict(GOOD)
    assert rows[1].error == "backend_error" and "HTTP 500" in rows[1].detail and rows[2].error == "no_json"


@pytest.mark.slow
def test_readme_example_on_the_smollm2_gguf(smollm2_gguf):
    pytest.importorskip("llama_cpp")
    from t2g import ExtractionError, Extractor

    with Extractor("smollm2", constrained=True, max_new_tokens=128, n_ctx=1024, n_threads=1) as ex:
        assert ex.spec.path == str(smollm2_gguf)
        try:
            graph = ex.extract("Tim Cook is the CEO of Apple.", ENTS, RELS)
        except ExtractionError as exc:  # under the grammar only the token limit can stop a graph
            assert exc.reason == "truncated", exc
        else:
            assert {e.type for e in graph.entities} <= set(ENTS)


@pytest.mark.parametrize("options,match", [
    ({"n_ctx": 512}, "--n_ctx does not apply to --runtime=openai"),
    ({"n_ctxx": 512}, "did you mean n_ctx"),
    ({"backend": "hf"}, "runtime="),
])
def test_an_option_of_another_runtime_is_an_error(options, match):
    from t2g import Extractor

    with pytest.raises(ValueError, match=match):
        Extractor("m", base_url="http://127.0.0.1:9/v1", **options)


# --- one declaration ------------------------------------------------------------------------------


def test_runtime_options_name_each_runtime_and_its_defaults():
    from t2g.infer.hf_backend import HFBackend
    from t2g.infer.llama_cpp_backend import LlamaCppBackend
    from t2g.infer.openai_backend import OpenAIBackend

    assert RUNTIME_OPTIONS == {
        "hf": ("device", "dtype", "trust_remote_code"),
        "llama.cpp": ("n_ctx", "n_threads", "n_gpu_layers", "extra_buffers", "grammar_mode"),
        "openai": ("api_key_env", "timeout", "retries", "backoff", "concurrency", "schema_style"),
    }
    backends = {"hf": HFBackend, "llama.cpp": LlamaCppBackend, "openai": OpenAIBackend}
    for option in RuntimeOptions.__dataclass_fields__.values():
        parameter = inspect.signature(backends[option.metadata["runtime"]]).parameters[option.name]
        assert parameter.default == option.metadata["runtime_default"], option.name  # what --help says


def test_extractor_keywords_are_the_inference_flags():
    from t2g.infer.extractor import Extractor

    parameters = inspect.signature(Extractor).parameters
    for name, field in InferenceFlags.__dataclass_fields__.items():
        assert parameters[name].default == field.default, name


def test_extract_and_evaluate_flags_hold_every_option():
    from t2g.eval.evaluate import EvaluateFlags
    from t2g.infer.extract_command import ExtractFlags

    shared = list(InferenceFlags.__dataclass_fields__) + list(RuntimeOptions.__dataclass_fields__)
    for flags in (ExtractFlags, EvaluateFlags):
        names = list(flags.__dataclass_fields__)
        assert names[-len(shared):] == shared  # the command's own flags first in --help
