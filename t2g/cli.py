"""The `t2g` command line: `t2g <command> --flag=value`. `t2g <command> --help` shows a command's flags."""

from __future__ import annotations

import json
import sys


def convert(input: str, output: str, format: str = "auto", label_map: str = "auto") -> None:
    """Convert a dataset (SpERT JSON, open-r1-text2graph rows, canonical JSONL) to canonical JSONL.

    Example: t2g convert --format spert --input ../shared/data/conll04/test.json --output test.jsonl
    """
    from t2g.data.canonical import DataError, write_jsonl
    from t2g.data.load import load_examples

    input, output = _text(input, "--input"), _text(output, "--output")
    format, label_map = _text(format, "--format", "auto"), _text(label_map, "--label_map", "none")
    examples = load_examples(input, format=format, label_map=label_map)
    try:
        n = write_jsonl(output, examples)
    except OSError as exc:
        raise DataError(f"cannot write {output}: {exc.strerror or exc} ({exc.filename})") from None
    print(f"wrote {n} examples to {output}", file=sys.stderr)


def score(gold: str, pred: str) -> None:
    """Score predictions (`{"id", "graph"}` or `{"id", "completion"}` rows) against gold; prints JSON.

    Example: t2g score --gold test.jsonl --pred predictions.jsonl
    """
    from t2g.data.load import load_examples
    from t2g.eval.predictions import read_predictions, score_predictions

    gold, pred = _text(gold, "--gold"), _text(pred, "--pred")
    report = score_predictions(load_examples(gold), read_predictions(pred), source=pred)
    print(json.dumps(report, indent=2))


def compare(gold: str, pred_a: str, pred_b: str, resamples: int = 1000, seed: int = 0) -> None:
    """Is B better than A? F1 of both, B - A and its 95% interval from a paired bootstrap over the
    gold examples (entity, strict relation, lenient relation); prints JSON.

    Example: t2g compare --gold test.jsonl --pred_a sft/predictions.jsonl --pred_b grpo/predictions.jsonl
    """
    from t2g.eval.compare import paired_bootstrap
    from t2g.data.canonical import DataError
    from t2g.data.load import load_examples
    from t2g.eval.predictions import read_predictions

    gold, pred_a, pred_b = _text(gold, "--gold"), _text(pred_a, "--pred_a"), _text(pred_b, "--pred_b")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise DataError(f"--resamples={resamples!r}: give a whole number of resamples, e.g. --resamples=1000")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"--seed={seed!r}: give a whole number")
    report = paired_bootstrap(load_examples(gold), read_predictions(pred_a), read_predictions(pred_b),
                              resamples=resamples, seed=seed, sources=(pred_a, pred_b))
    print(json.dumps({"gold": gold, "a": pred_a, "b": pred_b, **report}, indent=2))


def _text(value, flag: str, if_none: str | None = None) -> str:
    """A string flag as given: Fire turns `None`, `1` or `true` into Python values; turn them back."""
    from t2g.data.canonical import DataError

    if value is None and if_none is not None:
        return if_none
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
        return str(value)
    raise DataError(f"{flag}: expected a name or a path, got {value!r}")


def _type_names(value, flag: str) -> list[str] | None:
    """`a,b` (Fire may hand over a tuple) -> ["a", "b"]; None stays None (open extraction)."""
    from t2g.data.canonical import DataError

    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(t, str) for t in items):
        raise DataError(f"{flag}: give comma-separated names, e.g. {flag} person,organization")
    return [t.strip() for t in items if t.strip()]


def generate(input: str, output: str, base_url: str, model: str, entity_types=None, relation_types=None,
             concurrency: int = 4, structured: str = "json_schema", ground_spans: bool = False,
             max_consecutive_failures: int = 20,
             reasoning: bool = False,
             text_field: str = "text", id_field: str = "id", txt_split: str = "lines", split: str = "train",
             limit: int | None = None, timeout: float = 120.0, retries: int = 3, backoff: float = 2.0,
             api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0, max_tokens: int = 1024,
             max_text_chars: int = 4000, max_entities: int = 50, max_relations: int = 100,
             keep_empty: bool = False, near_dup_threshold: float = 0.9, min_type_count: int = 2,
             max_types: int = 30, reasoning_model: str | None = None, reasoning_base_url: str | None = None,
             trace_max_tokens: int = 2048, require_trace: bool = False, augment_copies: int = 1,
             empty_target_prob: float = 0.1, seed: int = 0, progress: bool = True) -> None:
    """Make training data with a teacher model behind any OpenAI-compatible endpoint (see t2g/synth/generate.py).

    Input: a .txt (one text per line; --txt_split=paragraphs for blank-line separated paragraphs),
    a .jsonl with a `text` field, a datasets save_to_disk folder, or hf:owner/name. Without
    --entity_types/--relation_types the teacher proposes types (open extraction). The API key is read
    from the variable named by --api_key_env. Rerun the same command to resume.

    Example: t2g generate --input texts.txt --output data.jsonl --base_url http://127.0.0.1:8000/v1
             --model teacher --entity_types person,organization --relation_types "works for"
    """
    from t2g.synth.generate import GenerateConfig, generate as run

    options = dict(locals())
    for name in ("input", "output", "base_url", "model", "structured", "text_field", "id_field", "txt_split",
                 "split", "api_key_env"):
        options[name] = _text(options[name], f"--{name}")
    for name in ("reasoning_model", "reasoning_base_url"):
        options[name] = None if options[name] is None else _text(options[name], f"--{name}")
    options["entity_types"] = _type_names(entity_types, "--entity_types")
    options["relation_types"] = _type_names(relation_types, "--relation_types")
    del options["run"], options["GenerateConfig"]
    report = run(GenerateConfig(**options))
    if report["failed_rows"] or report.get("stopped_early"):
        sys.exit(1)  # the data is written, but incomplete: say so to scripts and CI


def export(model: str, out: str | None = None, quant: str = "q8_0", base_model: str | None = None,
           llama_cpp: str | None = None, pretokenizer: str = "auto", hf: bool = True, merged_dtype: str = "bf16",
           adapter_only: bool = False, name: str | None = None, parity_data: str = "examples", parity_limit: int = 20,
           parity_threshold: float = 0.05, on_parity_fail: str = "fail", parity_max_new_tokens: int = 256) -> None:
    """Export a run directory, LoRA adapter or HF folder: merged HF, GGUF(s), Modelfile, parity.json, README.

    --quant: comma-separated, from f32 f16 bf16 q8_0 (converter) and q4_k_m q5_k_m q6_k ... (quantizer).
    --llama_cpp: a llama.cpp folder (else $T2G_LLAMA_CPP, $UNSLOTH_LLAMA_CPP_PATH, ~/.unsloth/llama.cpp,
    the cache filled by `t2g fetch-llama-cpp`). --parity_limit=0 skips the parity check.

    Example: t2g export --model runs/smollm2-smoke --quant q8_0,q4_k_m   (writes runs/smollm2-smoke/export/)
    """
    from pathlib import Path

    from t2g.export.pipeline import export_model

    target = Path(out) if out else (Path(model) / "export" if Path(model).is_dir() else Path("export"))
    with _export_errors():
        manifest = export_model(model, target, quant=quant, base_model=base_model, llama_cpp=llama_cpp,
                                pretokenizer=pretokenizer, hf=hf, merged_dtype=merged_dtype, adapter_only=adapter_only,
                                name=name, parity_data=parity_data, parity_limit=parity_limit,
                                parity_threshold=parity_threshold, on_parity_fail=on_parity_fail,
                                parity_max_new_tokens=parity_max_new_tokens)
    print(json.dumps({"out": str(target), **manifest}, indent=2))


def fetch_llama_cpp(sdist: str | None = None, version: str | None = None, dest: str | None = None,
                    force: bool = False) -> None:
    """Unpack llama.cpp's GGUF converter from the llama-cpp-python source distribution (PyPI, not GitHub).

    Without --sdist it runs `pip download --no-deps --no-binary :all: llama-cpp-python==VERSION` (~77 MB);
    with --sdist it uses that .tar.gz. Nothing is compiled; an existing copy is kept unless --force.
    Example: t2g fetch-llama-cpp
    """
    from t2g.export.llama_cpp import DEFAULT_SDIST_VERSION, fetch_llama_cpp as fetch

    with _export_errors():
        found = fetch(sdist=sdist, version=version or DEFAULT_SDIST_VERSION, dest=dest, force=force)
    print(f"llama.cpp converter ready in {found.root}", file=sys.stderr)


class _export_errors:
    """Export failures (missing llama.cpp, unfaithful template, parity) as one message, not a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        import subprocess

        from t2g.export.gguf import ExportError
        from t2g.export.llama_cpp import LlamaCppNotFound
        from t2g.export.merge import MergeError
        from t2g.export.modelfile import ModelfileError
        from t2g.export.parity import ParityError

        if isinstance(exc, (ExportError, LlamaCppNotFound, MergeError, ModelfileError, ParityError, ValueError,
                            subprocess.CalledProcessError)):
            print(f"t2g: error: {exc}", file=sys.stderr)
            sys.exit(2)
        return False


_BACKEND_FLAGS = ("device", "dtype", "n_ctx", "n_threads", "grammar_mode", "api_key_env", "timeout", "retries",
                  "concurrency", "schema_style")


def extract(text=None, entity_types=None, relation_types=None, input=None, output=None, model: str = "smollm2",
            backend: str = "auto", constrained: bool = False, base_url=None, base_model=None, max_new_tokens: int = 512,
            batch_size: int = 8, chunk_size=None, reasoning: bool = False, device=None, dtype=None, n_ctx=None,
            n_threads=None, grammar_mode=None, api_key_env=None, timeout=None, retries=None, concurrency=None,
            schema_style=None) -> None:
    """Extract graphs: one text from flags (prints a JSON row), or a JSONL file in and out.

    Examples:
      t2g extract --text "Tim Cook runs Apple." --entity_types person,organization --relation_types "works for"
      t2g extract --input texts.jsonl --output graphs.jsonl --entity_types person,location --relation_types "live in"
      t2g extract --model runs/my-run --backend hf --input texts.jsonl --output graphs.jsonl --constrained=False
    --model: smollm2 | a .gguf | an HF folder, adapter or run directory | a hub name | the server's model name with
    --backend openai --base_url http://127.0.0.1:8000/v1. Input rows: {"text", "id"?, "entity_types"?,
    "relation_types"?, "type_descriptions"?}; the type flags are the default for rows without their own.
    Output rows: {"id", "graph" (null when none), "error", "detail", "completion"}.
    """
    from t2g.infer import extract_command as extract_cli

    flags = {name: value for name, value in locals().items() if name in _BACKEND_FLAGS}
    with _inference_errors():
        extract_cli.run(text=text, entity_types=_type_names(entity_types, "--entity_types"),
                        relation_types=_type_names(relation_types, "--relation_types"), input=input, output=output,
                        model=_text(model, "--model"), backend=_text(backend, "--backend"), constrained=bool(constrained),
                        base_url=base_url, base_model=base_model, max_new_tokens=int(max_new_tokens),
                        batch_size=int(batch_size), chunk_size=chunk_size, reasoning=bool(reasoning), flags=flags)


def evaluate(model: str, data: str, out: str, limit=None, backend: str = "auto", constrained: bool = False,
             base_url=None, base_model=None, max_new_tokens: int = 512, batch_size: int = 8, chunk_size=None,
             reasoning: bool = False, device=None, dtype=None, n_ctx=None, n_threads=None, grammar_mode=None,
             api_key_env=None, timeout=None, retries=None, concurrency=None, schema_style=None) -> None:
    """Evaluate a model on a dataset: DIR/report.json, report.md, per_type_f1.png, predictions.jsonl.

    Example: t2g evaluate --model smollm2 --data ../shared/data/conll04/test.json --out eval/smollm2 --limit 20
    --backend: auto (a .gguf -> llama.cpp, a folder -> hf) | hf | llama.cpp | openai (with --base_url).
    --constrained: decode under the type lists (llama.cpp: GBNF grammar; openai: JSON schema, see --schema_style).
    `t2g score --gold DIR/gold.jsonl --pred DIR/predictions.jsonl` reproduces the report's P/R/F1.
    """
    from t2g.eval.evaluate import evaluate as run_evaluation

    flags = {name: value for name, value in locals().items() if name in _BACKEND_FLAGS}
    with _inference_errors():
        report = run_evaluation(_text(model, "--model"), _text(data, "--data"), _text(out, "--out"), limit,
                                _text(backend, "--backend"), bool(constrained), max_new_tokens=int(max_new_tokens),
                                batch_size=int(batch_size), reasoning=bool(reasoning), chunk_size=chunk_size,
                                base_url=base_url, base_model=base_model, **flags)
    print(f"entity F1 {report['entity']['f1']:.3f}, relation F1 {report['relation']['f1']:.3f}, "
          f"JSON valid {report['json_valid_rate']:.3f} on {report['n_examples']} examples "
          f"({report['timing']['sentences_per_s']:.2f} sentences/s); wrote {out}/report.json, report.md, "
          "per_type_f1.png, predictions.jsonl, gold.jsonl", file=sys.stderr)


class _inference_errors:
    """Model/backend/endpoint set-up failures as one message, not a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from t2g.models.offline import AssetError
        from t2g.infer.backends import BackendError

        if isinstance(exc, (BackendError, AssetError, ValueError)) and not isinstance(exc, _data_error()):
            print(f"t2g: error: {exc}", file=sys.stderr)
            sys.exit(2)
        return False


def _data_error():
    from t2g.data.canonical import DataError

    return DataError



COMMANDS = {"convert": convert, "score": score, "compare": compare, "generate": generate}
COMMANDS.update({"export": export, "fetch-llama-cpp": fetch_llama_cpp})
COMMANDS.update({"extract": extract, "evaluate": evaluate})


def main(argv: list[str] | None = None) -> None:
    import fire

    from t2g.data.canonical import DataError

    try:
        fire.Fire(COMMANDS, command=argv, name="t2g")
    except (DataError, OSError) as exc:  # bad input or an unreadable/unwritable path: a message, not a traceback
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename and exc.strerror else exc
        print(f"t2g: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
