"""How a model is run, declared once: the flags every inference command shares and each runtime's options.

    InferenceFlags   which runtime, the endpoint, decoding, batching, chunking
    RuntimeOptions   the options only one runtime takes (field metadata `runtime`), None = unset
    RUNTIME_OPTIONS  runtime -> its option names, derived from RuntimeOptions
    inference_flags  a command's own flags followed by both, as one flags dataclass

`t2g extract`, `t2g evaluate` and the Python API (`t2g.infer.extractor.Extractor(model, **settings)`)
read the same fields, so a flag and a keyword never differ in name, default or meaning. An option
meant for another runtime is an error naming the runtime's options, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from t2g.flags import flag, names, nearest
from t2g.models.dtype import DTYPES

RUNTIMES = ("auto", "hf", "llama.cpp", "openai")
GRAMMAR_MODES = ("argmax_first", "full")
SCHEMA_STYLES = ("json_schema", "json_object")


def _option(runtime: str, default: Any, help: str, choices: tuple[str, ...] | None = None, unset: str = "") -> Any:
    """An option of one runtime. It stays None unless given, so that one given for another runtime is
    caught; `default` is what the runtime's backend uses then (a test checks it against the constructor)."""
    return flag(None, f"{runtime} only, unset = {unset or default}: {help}", choices=choices, runtime=runtime,
                runtime_default=default)


@dataclass
class RuntimeOptions:
    """Options of one runtime each; the backend's own default where unset."""

    device: str | None = _option("hf", "auto", "where the model runs: auto (CUDA when visible, else cpu), cpu, cuda, cuda:1")
    dtype: str | None = _option("hf", "auto", "weight dtype; auto = bf16 on a GPU that has it, fp32 on a CPU", DTYPES)
    trust_remote_code: bool | None = _option("hf", False, "run the Python code a hub model ships")
    n_ctx: int | None = _option("llama.cpp", 4096, "context window in tokens; longer texts are cut into chunks")
    n_threads: int | None = _option("llama.cpp", None, "CPU threads", unset="every core this process may use")
    n_gpu_layers: int | None = _option("llama.cpp", -1, "layers offloaded to a GPU (-1 = all, 0 = none)")
    extra_buffers: bool | None = _option("llama.cpp", False, "llama.cpp's extra CPU weight buffers (repacking, AMX); "
                                         "off because llama-cpp-python 0.3.36 crashes with them on AVX512+AMX CPUs")
    grammar_mode: str | None = _option("llama.cpp", "argmax_first", "--constrained decoding: argmax_first checks the "
                                       "best token first (same tokens, faster), full filters every token", GRAMMAR_MODES)
    api_key_env: str | None = _option("openai", "OPENAI_API_KEY", "the environment variable holding the API key (empty there: no key is sent)")
    timeout: float | None = _option("openai", 60.0, "seconds each socket operation may take")
    retries: int | None = _option("openai", 3, "repeats of a failed request (timeouts, 429, 5xx, malformed answers)")
    backoff: float | None = _option("openai", 1.0, "first wait between retries in seconds, doubled after each")
    concurrency: int | None = _option("openai", 1, "requests in flight at once")
    schema_style: str | None = _option("openai", "json_schema", "how --constrained sends the JSON schema: json_schema "
                                       "(OpenAI, vLLM, Ollama, llama.cpp's server) or json_object (llama-cpp-python's server)",
                                       SCHEMA_STYLES)


RUNTIME_OPTIONS: dict[str, tuple[str, ...]] = {
    runtime: tuple(f.name for f in dataclasses.fields(RuntimeOptions) if f.metadata["runtime"] == runtime)
    for runtime in RUNTIMES[1:]
}


@dataclass
class InferenceFlags:
    """How a model is run: the runtime, the endpoint, decoding, batching and chunking."""

    runtime: str = flag("auto", "what decodes: auto (a .gguf -> llama.cpp, a folder or hub name -> hf, --base_url -> "
                        "openai), hf (transformers), llama.cpp, openai (any OpenAI-compatible server)", choices=RUNTIMES)
    constrained: bool = flag(False, "decode under the type lists (llama.cpp: GBNF grammar, see --grammar_mode; openai: "
                             "JSON schema, see --schema_style); not with hf")
    base_url: str | None = flag(None, "an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (comma-separated: "
                                "a pool); --model is then the server's model name")
    base_model: str | None = flag(None, "the base model under an adapter (default: the run's recorded model, else the "
                                  "adapter's adapter_config.json)")
    reasoning: bool = flag(False, "ask for a <think> trace before the JSON (models trained with --reasoning)")
    max_new_tokens: int = flag(512, "tokens generated at most per text (per chunk of a long text)")
    batch_size: int = flag(8, "texts decoded together (llama.cpp: 1 = one at a time, as llama-cpp-python does)")
    chunk_size: int | None = flag(None, "cut texts into chunks of at most this many tokens (openai: characters); "
                                  "None = only what the context cannot hold")


def runtime_options(runtime: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were set (not None), checked against what `runtime` takes."""
    options = {k: v for k, v in given.items() if v is not None}
    known = names(RuntimeOptions)
    for name in options:
        if name not in known:
            hint = "it is called runtime= now" if name == "backend" else nearest(name, known).replace("--", "")
            raise ValueError(f"unknown runtime option {name!r}: {hint}")
    wrong = sorted(k for k in options if k not in RUNTIME_OPTIONS[runtime])
    if wrong:
        raise ValueError(f"--{wrong[0]} does not apply to --runtime={runtime} (its options: "
                         f"{', '.join('--' + o for o in RUNTIME_OPTIONS[runtime])})")
    return options


def inference_flags(cls: type) -> type:
    """The flags dataclass `cls` followed by InferenceFlags and RuntimeOptions, as one flags dataclass
    (`--help` lists the command's own flags first, which plain inheritance would put last)."""
    parts = (cls, InferenceFlags, RuntimeOptions)
    hints = {k: v for part in parts for k, v in typing.get_type_hints(part).items()}
    specs = [(f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory,
                                                        metadata=f.metadata))
             for part in parts for f in dataclasses.fields(part)]
    return dataclasses.make_dataclass(cls.__name__, specs, namespace={
        "__doc__": cls.__doc__, "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def inference_settings(flags: Any) -> dict[str, Any]:
    """The keywords of `t2g.infer.extractor.Extractor` out of a flags dataclass made by `inference_flags`."""
    return {name: getattr(flags, name) for name in names(InferenceFlags) + names(RuntimeOptions)}
