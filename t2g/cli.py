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


COMMANDS = {"convert": convert, "score": score}


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
