"""The `t2g` command line: `t2g <command> --flag=value`. `t2g <command> --help` shows a command's flags."""

from __future__ import annotations

import json
import sys


def convert(input: str, output: str, format: str = "auto", label_map: str = "auto") -> None:
    """Convert a dataset (SpERT JSON, open-r1-text2graph rows, canonical JSONL) to canonical JSONL.

    Example: t2g convert --format spert --input ../shared/data/conll04/test.json --output test.jsonl
    """
    from t2g.data import load_examples, write_jsonl

    from t2g.data import DataError

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
    from t2g.data import load_examples
    from t2g.predictions import read_predictions, score_predictions

    report = score_predictions(load_examples(gold), read_predictions(pred), source=pred)
    print(json.dumps(report, indent=2))


def _type_names(value, flag: str) -> list[str] | None:
    """`a,b` (Fire may hand over a tuple) -> ["a", "b"]; None stays None (open extraction)."""
    from t2g.data import DataError

    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(t, str) for t in items):
        raise DataError(f"{flag}: give comma-separated names, e.g. {flag} person,organization")
    return [t.strip() for t in items if t.strip()]


def generate(input: str, output: str, base_url: str, model: str, entity_types=None, relation_types=None,
             concurrency: int = 4, structured: str = "json_schema", ground_spans: bool = False,
             reasoning: bool = False,
             text_field: str = "text", id_field: str = "id", txt_split: str = "lines", split: str = "train",
             limit: int | None = None, timeout: float = 120.0, retries: int = 3, backoff: float = 2.0,
             api_key_env: str = "OPENAI_API_KEY", temperature: float = 0.0, max_tokens: int = 1024,
             max_text_chars: int = 4000, max_entities: int = 50, max_relations: int = 100,
             keep_empty: bool = False, near_dup_threshold: float = 0.9, min_type_count: int = 2,
             max_types: int = 30, reasoning_model: str | None = None, reasoning_base_url: str | None = None,
             trace_max_tokens: int = 2048, require_trace: bool = False, augment_copies: int = 1,
             empty_target_prob: float = 0.1, seed: int = 0, progress: bool = True) -> None:
    """Make training data with a teacher model behind any OpenAI-compatible endpoint (see t2g/generate.py).

    Input: a .txt (one text per line; --txt_split=paragraphs for blank-line separated paragraphs),
    a .jsonl with a `text` field, a datasets save_to_disk folder, or hf:owner/name. Without
    --entity_types/--relation_types the teacher proposes types (open extraction). The API key is read
    from the variable named by --api_key_env. Rerun the same command to resume.

    Example: t2g generate --input texts.txt --output data.jsonl --base_url http://127.0.0.1:8000/v1
             --model teacher --entity_types person,organization --relation_types "works for"
    """
    from t2g.generate import GenerateConfig, generate as run

    options = dict(locals())
    options["entity_types"] = _type_names(entity_types, "--entity_types")
    options["relation_types"] = _type_names(relation_types, "--relation_types")
    del options["run"], options["GenerateConfig"]
    report = run(GenerateConfig(**options))
    if report["failed_rows"]:
        sys.exit(1)  # the data is written, but incomplete: say so to scripts and CI


COMMANDS = {"convert": convert, "score": score, "generate": generate}


def main(argv: list[str] | None = None) -> None:
    import fire

    from t2g.data import DataError

    try:
        fire.Fire(COMMANDS, command=argv, name="t2g")
    except (DataError, OSError) as exc:  # bad input or an unreadable/unwritable path: a message, not a traceback
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename and exc.strerror else exc
        print(f"t2g: error: {message}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
