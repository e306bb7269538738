"""Export: tiny model -> GGUF round trip, Modelfile template == chat template, clear errors, atomic outputs.

Needs llama.cpp's converter (`t2g fetch-llama-cpp`, done by scripts/setup_env.sh); tests that convert
skip with that command when it is absent. Converter runs cost ~5-10 s each on 2 cores: keep them few.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2g.export import modelfile_template
from t2g.export.gguf import ExportError, format_tensor_types, parse_tensor_types
from t2g.export.llama_cpp import LlamaCppNotFound, find_llama_cpp
from t2g.export.pipeline import export_model
from t2g.export.pipeline import check_tokenization, write_ggufs
from t2g.export.modelfile import ModelfileError, build_modelfile, check_template, derive_chat_format, go_template, sample_conversations
from t2g.task.prompts import PROMPT_VERSION, SYSTEM_PROMPT

LLAMA3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)
QWEN25_TEMPLATE = (  # Qwen2.5's shape: a default system block when the conversation has none
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for message in messages %}{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)


@pytest.fixture(scope="session")
def llama_cpp():
    try:
        return find_llama_cpp()
    except LlamaCppNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny_ggufs(tiny_model_dir, tmp_path_factory, llama_cpp):
    out = tmp_path_factory.mktemp("ggufs")
    paths, fallback, repair, imatrix = write_ggufs(tiny_model_dir, out, "tiny", ["f32", "q8_0", "q4_k_m"], llama_cpp)
    assert repair is None and imatrix is None
    return dict(zip(["f32", "q8_0", "q4_k_m"], paths)), fallback


def _tokenizer(path, **kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **kw)


def _prompt_ids(tokenizer) -> tuple[str, list[int]]:
    text = tokenizer.apply_chat_template(sample_conversations()[0], tokenize=False, add_generation_prompt=True)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


# --- GGUF round trip --------------------------------------------------------------------------------


def test_tiny_gguf_loads_back_with_same_tokens_and_logits(tiny_model_dir, tiny_ggufs):
    import torch
    from transformers import AutoModelForCausalLM

    paths, fallback = tiny_ggufs
    assert fallback == "qwen2"  # the tiny tokenizer's hash is unknown to llama.cpp; its structure is Qwen2's
    tok = _tokenizer(tiny_model_dir)
    text, ids = _prompt_ids(tok)
    reference = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), ids)
    for quant, tolerance in (("f32", 1e-5), ("q8_0", 0.05)):
        path = paths[quant]
        assert _tokenizer(path.parent, gguf_file=path.name)(text, add_special_tokens=False)["input_ids"] == ids
        loaded = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        diff = (_logits(loaded, ids) - reference).abs().max().item()
        assert diff <= tolerance, f"{quant}: max logit difference {diff}"
    # The q4_k_m file is a real llama.cpp quantization: smaller than q8_0, and a valid GGUF.
    assert paths["q4_k_m"].stat().st_size < paths["q8_0"].stat().st_size
    assert paths["q4_k_m"].read_bytes()[:4] == b"GGUF"


def test_llama_cpp_tokenizes_and_scores_like_hf(tiny_model_dir, tiny_ggufs):
    pytest.importorskip("llama_cpp")
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM


    paths, _ = tiny_ggufs
    tok = _tokenizer(tiny_model_dir)
    assert check_tokenization(paths["q4_k_m"], tok) == {"checked": True, "texts": 5, "identical": True}
    _, ids = _prompt_ids(tok)
    reference = _logits(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), ids).numpy()
    # f32 weights: llama.cpp's CPU repacking (which crashes some quant types on our AMX CPUs) does not apply.
    llm = Llama(model_path=str(paths["f32"]), n_ctx=1024, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    assert np.abs(scores - reference).max() < 2e-3
    assert (scores.argmax(-1) == reference.argmax(-1)).all()


def test_unknown_pretokenizer_is_refused_when_fallback_is_off(tiny_model_dir, tmp_path, llama_cpp):
    from t2g.export.gguf import convert_hf_to_gguf

    with pytest.raises(ExportError, match="pre-tokenizer was not recognized"):
        convert_hf_to_gguf(tiny_model_dir, tmp_path / "x.gguf", "f16", llama_cpp, pretokenizer="off")
    assert list(tmp_path.iterdir()) == []


def test_structural_fallback_is_narrow(tiny_model_dir):
    from tokenizers import Regex, pre_tokenizers

    from t2g.export._convert_main import structural_pretokenizer

    tok = _tokenizer(tiny_model_dir)
    assert structural_pretokenizer(tok) == "qwen2"
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\w+|[^\w\s]+|\s+"), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    assert structural_pretokenizer(tok) is None  # an unknown regex: the converter's refusal stands
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert structural_pretokenizer(tok) is None  # GPT-2 style: not claimed either


# --- Modelfile ------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [None, LLAMA3_TEMPLATE, QWEN25_TEMPLATE], ids=["chatml", "llama3", "qwen2.5"])
def test_modelfile_template_renders_like_the_chat_template(tiny_model_dir, template):
    tok = _tokenizer(tiny_model_dir)
    if template:
        tok.chat_template = template
        tok.bos_token = "<|endoftext|>"
    go = go_template(derive_chat_format(tok))
    for conv in sample_conversations():
        last_assistant = conv[-1]["role"] == "assistant"
        expected = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=not last_assistant,
                                           continue_final_message=last_assistant)
        assert modelfile_template.render(go, conv) == expected


def test_modelfile_contents(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    text = build_modelfile(tok, "tiny-q8_0.gguf", eos_token_ids=[tok.eos_token_id], num_ctx=4096)
    assert "FROM ./tiny-q8_0.gguf\n" in text
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    for line in ("PARAMETER temperature 0", "PARAMETER top_k 1", "PARAMETER repeat_penalty 1", "PARAMETER num_ctx 4096"):
        assert line + "\n" in text
    assert PROMPT_VERSION in text
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    check_template(tok, template)  # what is written is what was verified


def test_unfaithful_template_is_refused(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(ModelfileError, match="verbatim"):
        build_modelfile(tok, "x.gguf")


@pytest.mark.parametrize("template,messages,expected", [
    ('{{ range $i, $m := .Messages }}{{ $i }}:{{ $m.Role }};{{ end }}', [{"role": "a", "content": ""}, {"role": "b", "content": ""}], "0:a;1:b;"),
    ('{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}U{{ else if eq $m.Role "system" }}S{{ else }}O{{ end }}{{ end }}',
     [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "tool", "content": ""}], "SUO"),
    ('{{ range $i, $m := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}{{ if $last }}[{{ $m.Content }}]{{ else }}{{ $m.Content }},{{ end }}{{ end }}',
     [{"role": "u", "content": "x"}, {"role": "u", "content": "y"}, {"role": "u", "content": "z"}], "x,y,[z]"),
    ('{{ range $i, $m := .Messages }}{{ if and (eq $i 0) (ne $m.Role "system") }}D{{ end }}{{ if not (eq $i 0) }}+{{ end }}{{ end }}',
     [{"role": "user", "content": ""}, {"role": "user", "content": ""}], "D+"),
    ('{{ range $i, $m := .Messages }}{{ $m.Content }}{{ end }}', [{"role": "u", "content": "{{ not a tag }} é\n"}], "{{ not a tag }} é\n"),
])
def test_go_template_renderer_follows_go_semantics(template, messages, expected):
    assert modelfile_template.render(template, messages) == expected


@pytest.mark.parametrize("template", ["{{- range $i, $m := .Messages }}{{ end }}", "{{ if eq 1 1 }}x", "{{ printf \"%s\" 1 }}", "{{ $x }}"])
def test_go_template_renderer_refuses_what_it_does_not_implement(template):
    with pytest.raises(modelfile_template.GoTemplateError):
        modelfile_template.render(template, [])


# --- errors and atomicity -------------------------------------------------------------------------


def test_missing_llama_cpp_gives_the_command_not_a_traceback(tiny_model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("T2G_LLAMA_CPP", "UNSLOTH_LLAMA_CPP_PATH")}
    env.update(HOME=str(tmp_path / "home"), T2G_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-m", "t2g.cli", "export", "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "out"), "--hf=False"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "t2g: error: llama.cpp's converter (convert_hf_to_gguf.py) was not found" in proc.stderr
    assert "t2g fetch-llama-cpp" in proc.stderr and "pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_named_location_that_is_not_llama_cpp_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("T2G_LLAMA_CPP", str(tmp_path))
    with pytest.raises(LlamaCppNotFound, match=r"\$T2G_LLAMA_CPP points at"):
        find_llama_cpp()


def test_fetch_unpacks_only_the_converter(tmp_path):
    import io
    import tarfile

    from t2g.export.llama_cpp import fetch_llama_cpp

    sdist = tmp_path / "llama_cpp_python-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name in ("vendor/llama.cpp/convert_hf_to_gguf.py", "vendor/llama.cpp/gguf-py/gguf/__init__.py",
                     "vendor/llama.cpp/conversion/base.py", "vendor/llama.cpp/src/llama.cpp", "llama_cpp/llama.py"):
            info = tarfile.TarInfo(f"llama_cpp_python-9.9.9/{name}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"#"))
    found = fetch_llama_cpp(sdist=sdist, dest=tmp_path / "llama.cpp-src")
    files = sorted(str(p.relative_to(found.root)) for p in found.root.rglob("*") if p.is_file())
    assert files == ["conversion/base.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert find_llama_cpp(found.root).root == found.root


FAKE_CONVERTER = '''
import os, signal, sys
class TextModel:
    def get_vocab_base_pre(self, tokenizer):
        return "qwen2"
def main():
    out = sys.argv[sys.argv.index("--outfile") + 1]
    with open(out, "wb") as f:
        f.write(b"GGUF" + b"\\0" * 4096)  # a plausible beginning...
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # ...and the process dies mid-write
'''


def test_a_killed_conversion_leaves_no_complete_looking_file(tiny_model_dir, tmp_path):
    fake = tmp_path / "fake-llama.cpp"
    (fake / "gguf-py").mkdir(parents=True)
    (fake / "convert_hf_to_gguf.py").write_text(FAKE_CONVERTER)
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="exit -9"):
        export_model(str(tiny_model_dir), out, quant="q8_0", llama_cpp=str(fake), hf=False)
    assert sorted(p.name for p in out.iterdir()) == []  # no .gguf, no Modelfile, no export.json, no temp file


def test_an_interrupt_while_writing_removes_the_partial_file(tmp_path):
    from t2g.export.gguf import atomic_target

    target = tmp_path / "m.gguf"
    with pytest.raises(KeyboardInterrupt):
        with atomic_target(target) as tmp:
            tmp.write_bytes(b"GGUF partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


# --- the whole stage --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A run directory's adapter: LoRA with non-zero B matrices (merging visibly changes the model),
    the base recorded only in the run's config.json (the adapter's own base name is useless)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    run = tmp_path_factory.mktemp("run")
    adapter = run / "grpo" / "adapter"  # the layout t2g.train.runs gives a run; sft/adapter is older
    model.save_pretrained(adapter)
    _tokenizer(tiny_model_dir).save_pretrained(adapter)
    adapter_config = adapter / "adapter_config.json"
    adapter_config.write_text(json.dumps({**json.loads(adapter_config.read_text()), "base_model_name_or_path": "/nonexistent/base"}))
    (run / "config.json").write_text(json.dumps({"model": str(tiny_model_dir), "run_name": "tiny"}))
    (run / "sft" / "adapter").mkdir(parents=True)  # an older stage's (here: unusable) adapter is not picked
    return adapter


def test_export_run_writes_everything(tiny_model_dir, tiny_adapter, llama_cpp):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from t2g.export.pipeline import export_run

    run_dir = tiny_adapter.parent.parent
    out = run_dir / "export"
    manifest = export_run(run_dir, quant=("q8_0", "q4_k_m"), merged_dtype="f32", llama_cpp=str(llama_cpp.root),
                          parity_limit=2, parity_max_new_tokens=8)
    assert manifest["base"] == str(tiny_model_dir) and manifest["adapter"] == str(tiny_adapter)
    run = run_dir.name  # files are named after the run, not after its adapter folder
    names = sorted(p.name for p in out.iterdir())
    assert names == ["Modelfile", "README.md", "export.json", "hf", "parity-q4_k_m.json", "parity.json",
                     f"{run}-q4_k_m.gguf", f"{run}-q8_0.gguf"]
    assert manifest["ggufs"] == [f"{run}-q8_0.gguf", f"{run}-q4_k_m.gguf"]
    assert manifest["tokenization"]["identical"] and manifest["pretokenizer_fallback"] == "qwen2"
    assert json.loads((out / "export.json").read_text())["finished"]

    # The merged folder is the adapter applied to the base, and differs from the base.
    tok = _tokenizer(out / "hf")
    _, ids = _prompt_ids(tok)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_logits = _logits(base, ids)
    peft_logits = _logits(PeftModel.from_pretrained(base, tiny_adapter), ids)
    merged_logits = _logits(AutoModelForCausalLM.from_pretrained(out / "hf", dtype=torch.float32), ids)
    assert (merged_logits - peft_logits).abs().max().item() < 1e-4
    assert (merged_logits - base_logits).abs().max().item() > 1e-3

    parity = json.loads((out / "parity.json").read_text())
    assert parity["hf"]["n"] == parity["gguf_side"]["n"] == 2 and parity["gguf"] == f"{run}-q8_0.gguf"
    assert parity["hf"]["runtime"] == "hf" and parity["gguf_side"]["runtime"] == "llama.cpp"
    assert len(parity["examples"]) == 2 and parity["passed"] == (not parity["falls_behind_on"])
    card = (out / "README.md").read_text()
    assert PROMPT_VERSION in card and "Entity types:" in card and f"{run}-q8_0.gguf" in card
    # what each quant costs: one HF run, every GGUF against it, in export.json, the card and parity-<quant>.json
    per = manifest["parity"]["per_gguf"]
    assert list(per) == manifest["ggufs"] and per[f"{run}-q4_k_m.gguf"]["file"] == "parity-q4_k_m.json"
    q4 = json.loads((out / "parity-q4_k_m.json").read_text())
    assert q4["hf"] == parity["hf"] and q4["gguf"] == f"{run}-q4_k_m.gguf"
    assert per[f"{run}-q4_k_m.gguf"]["relation_f1"] == q4["gguf_side"]["relation_f1"]
    assert "What each GGUF costs" in card and f"| {run}-q4_k_m.gguf |" in card


def test_parity_fails_or_warns_by_flag(tmp_path, monkeypatch, capsys):
    from t2g.export import parity
    from t2g.data.load import load_examples

    def fake_side(model, runtime, examples, **kw):
        valid = 1.0 if runtime == "hf" else 0.5
        report = {"runtime": runtime, "n": len(examples), "json_valid": valid, "entity_f1": 0.8, "relation_f1": 0.41}
        return parity.SideResult(report, ["x"] * len(examples), [None] * len(examples))

    monkeypatch.setattr(parity, "run_side", fake_side)
    examples = load_examples("examples")[:3]
    with pytest.raises(parity.ParityError, match=r"json_valid \(1.000 -> 0.500\)"):
        parity.check_parity("m", tmp_path / "m.gguf", examples, tmp_path / "p.json", threshold=0.1)
    report = json.loads((tmp_path / "p.json").read_text())  # written before failing
    assert report["falls_behind_on"] == ["json_valid"] and report["drop"]["entity_f1"] == 0.0
    report = parity.check_parity("m", tmp_path / "m.gguf", examples, tmp_path / "p.json", threshold=0.1, on_fail="warn")
    assert not report["passed"] and "warning" in capsys.readouterr().err
    assert parity.check_parity("m", tmp_path / "m.gguf", examples, tmp_path / "p.json", threshold=0.5)["passed"]


def test_a_task_importance_matrix_reaches_the_quantizer(tiny_model_dir, tiny_ggufs, tmp_path, llama_cpp):
    import gguf
    import numpy as np

    from t2g.data.load import load_examples
    from t2g.export.imatrix import ImatrixError, task_imatrix

    paths, _ = tiny_ggufs
    examples = load_examples("examples")[:4]
    values = task_imatrix(tiny_model_dir, examples, paths["f32"])
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in gguf.GGUFReader(str(paths["f32"])).tensors}
    n_layers = sum(name.endswith("attn_q.weight") for name in shapes)
    # every linear layer of every block, named as the GGUF names it, one value per input column, finite and > 0
    assert len(values) == 7 * n_layers and set(values) <= set(shapes)
    for name, v in values.items():
        assert v.shape == (shapes[name][1],) and np.all(np.isfinite(v)) and np.all(v > 0), name
    with pytest.raises(ImatrixError, match="no calibration examples"):
        task_imatrix(tiny_model_dir, [], paths["f32"])

    out = tmp_path / "with"
    got, _, _, info = write_ggufs(tiny_model_dir, out, "tiny", ["q4_k_m"], llama_cpp, calibration=examples)
    assert info == {"file": "imatrix.npz", "tensors": len(values), "examples": 4, "columns": sum(v.size for v in values.values())}
    assert sorted(np.load(out / "imatrix.npz").files) == sorted(values)
    # the same quantization without the matrix gives other bytes: the quantizer used it
    assert got[0].read_bytes() != paths["q4_k_m"].read_bytes()
    assert got[0].stat().st_size == paths["q4_k_m"].stat().st_size  # same types, other scales


def test_per_tensor_types_reach_the_quantizer(tiny_model_dir, tiny_ggufs, tmp_path, llama_cpp, capsys):
    import gguf

    paths, _ = tiny_ggufs

    def types(path):
        return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}

    default = types(paths["q4_k_m"])
    assert {default[n] for n in default if "ffn_down" in n} != {"Q8_0"}  # so that the override below shows
    got, *_ = write_ggufs(tiny_model_dir, tmp_path / "mix", "tiny", ["q4_k_m"], llama_cpp,
                          tensor_types=parse_tensor_types("ffn_down=q8_0,attn_v=f16"))
    mixed = types(got[0])
    assert set(mixed) == set(default)
    for name, kind in mixed.items():
        matrix = name.endswith(".weight")  # biases and norms stay f32 whatever is asked (llama.cpp quantizes matrices only)
        want = "Q8_0" if matrix and "ffn_down" in name else "F16" if matrix and "attn_v" in name else default[name]
        assert kind == want, name
    # a type the tensor's row length cannot hold is stored as llama.cpp's replacement, and named on stderr
    width = min(int(t.shape[0]) for t in gguf.GGUFReader(str(paths["f32"])).tensors if t.name.endswith("attn_q.weight"))
    assert width % 256, "the tiny model's rows must not fit k-quant blocks for this check"
    capsys.readouterr()
    write_ggufs(tiny_model_dir, tmp_path / "kquant", "tiny", ["q4_k_m"], llama_cpp, tensor_types=parse_tensor_types("attn_q=q6_k"))
    assert re.search(rf"could not store \d+ tensor\(s\) .*blk\.0\.attn_q\.weight \({width} wide\) is \w+, not q6_k",
                     capsys.readouterr().err)
    # a pattern that matches no tensor would silently export the default mix: it is an error instead
    with pytest.raises(ExportError, match=r"ffn_dwn=q8_0 matches no tensor .*blk\.N\.ffn_down\.weight"):
        write_ggufs(tiny_model_dir, tmp_path / "typo", "tiny", ["q4_k_m"], llama_cpp,
                    tensor_types=parse_tensor_types("ffn_dwn=q8_0"))
    assert not list((tmp_path / "typo").glob("*.gguf"))


@pytest.mark.parametrize("spec, message", [
    ("ffn_down", "is not PATTERN=TYPE"),
    ("=q8_0", "is not PATTERN=TYPE"),
    ("ffn_down=q9_9", "unknown tensor type 'q9_9'"),
    ("ffn_(down=q8_0", "not a regular expression"),
])
def test_a_bad_tensor_types_flag_names_the_item(spec, message):
    with pytest.raises(ExportError, match=rf"--tensor_types: .*{re.escape(message)}"):
        parse_tensor_types(spec)


def test_tensor_types_parse_in_order_and_format_back():
    parsed = parse_tensor_types(" ffn_down=Q8_0, attn_v=q6_k ,")
    assert parsed == (("ffn_down", "q8_0"), ("attn_v", "q6_k")) and parse_tensor_types(["ffn_down=q8_0"]) == parsed[:1]
    assert format_tensor_types(parsed) == "ffn_down=q8_0,attn_v=q6_k" and parse_tensor_types("") == ()


def test_tensor_types_without_a_k_quant_is_an_error(tiny_model_dir, tmp_path):
    with pytest.raises(ExportError, match=r"--tensor_types=ffn_down=q8_0 applies to k-quants .* --quant=q8_0 has none"):
        export_model(str(tiny_model_dir), tmp_path / "out", quant="q8_0", tensor_types="ffn_down=q8_0")


@pytest.mark.slow
def test_smollm2_exports_with_a_faithful_modelfile(smollm2_hf_dir, tmp_path, llama_cpp):
    manifest = export_model(str(smollm2_hf_dir), tmp_path, quant="q8_0", hf=False, llama_cpp=str(llama_cpp.root),
                            parity_limit=0, name="smollm2")
    assert manifest["ggufs"] == ["smollm2-q8_0.gguf"] and manifest["pretokenizer_fallback"] is None
    assert manifest["tokenization"]["identical"]  # llama.cpp tokenizes like the HF folder's own tokenizer
    from gguf import GGUFReader

    fields = GGUFReader(tmp_path / "smollm2-q8_0.gguf").fields
    value = lambda key: bytes(fields[key].parts[fields[key].data[0]]).decode()
    # As in the GGUF SmolLM2 ships with: a GPT-2 style BPE with llama.cpp's "smollm" pre-tokenizer.
    assert (value("tokenizer.ggml.model"), value("tokenizer.ggml.pre")) == ("gpt2", "smollm")
    modelfile = (tmp_path / "Modelfile").read_text()
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "FROM ./smollm2-q8_0.gguf" in modelfile


@pytest.mark.parametrize("model,pre,expected", [
    ({"type": "BPE", "byte_fallback": True}, {"type": "ByteLevel"}, True),  # transformers' rebuild of a GGUF tokenizer
    ({"type": "BPE", "byte_fallback": True}, {"type": "Sequence", "pretokenizers": [{"type": "Digits"}, {"type": "ByteLevel"}]}, True),
    ({"type": "BPE", "byte_fallback": False}, {"type": "ByteLevel"}, False),  # a normal byte-level BPE
    ({"type": "BPE", "byte_fallback": True}, {"type": "Metaspace"}, False),  # a real SentencePiece-style BPE (Llama 2)
    ({"type": "Unigram"}, {"type": "ByteLevel"}, False),
])
def test_byte_fallback_repair_is_narrow(model, pre, expected):
    from t2g.export.gguf import misdeclared_byte_fallback

    assert misdeclared_byte_fallback({"model": model, "pre_tokenizer": pre}) is expected


def test_a_gguf_llama_cpp_cannot_load_is_an_error_not_a_crash(tmp_path):
    pytest.importorskip("llama_cpp")
    from t2g.export.gguf import gguf_tokenize

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ExportError, match="llama.cpp cannot load the tokenizer of bad.gguf"):
        gguf_tokenize(bad, ["hello"])


def test_adapter_only_export_copies_the_adapter_and_nothing_else(tiny_model_dir, tiny_adapter, tmp_path):
    out = tmp_path / "export"
    manifest = export_model(str(tiny_adapter), out, adapter_only=True, base_model=str(tiny_model_dir))
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter", "export.json"]
    assert manifest["adapter_dir"] == "adapter" and "ggufs" not in manifest
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json"):
        assert (out / "adapter" / name).read_bytes() == (tiny_adapter / name).read_bytes()
    assert "the LoRA adapter alone" in (out / "README.md").read_text()


def test_a_template_that_refuses_system_messages_is_a_clear_error(tiny_model_dir):
    tok = _tokenizer(tiny_model_dir)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}"
                         "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    with pytest.raises(ModelfileError, match="refuses a conversation with roles.*no system role"):
        build_modelfile(tok, "x.gguf")


@pytest.mark.slow
def test_bench_export_runs_all_three_runtimes(tiny_model_dir, conll04_dir, tmp_path, llama_cpp, monkeypatch):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("bench_export", Path(__file__).resolve().parents[2] / "scripts" / "bench_export.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_export", bench)  # dataclasses look their module up while the class is built
    spec.loader.exec_module(bench)
    bench.main(model=str(tiny_model_dir), data=str(conll04_dir / "test.json"), limit=2, max_new_tokens=4, out=str(tmp_path / "b.json"))
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["runtime"] for r in rows] == ["hf fp32", "gguf q8_0", "gguf q4_k_m"]
    assert rows[0]["speed_vs_hf_fp32"] == 1.0 and all(r["texts_per_second"] > 0 for r in rows)
    assert rows[1]["file_mb"] is not None and rows[0]["file_mb"] is None


def test_a_wrong_pretokenizer_is_caught_and_its_gguf_removed(tiny_model_dir, tmp_path, llama_cpp):
    pytest.importorskip("llama_cpp")
    out = tmp_path / "export"
    with pytest.raises(ExportError, match="llama.cpp tokenizes differently.*--pretokenizer"):
        export_model(str(tiny_model_dir), out, quant="q8_0", pretokenizer="gpt-2", llama_cpp=str(llama_cpp.root), hf=False)
    assert list(out.iterdir()) == []
