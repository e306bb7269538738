"""Loading a dataset from any source the kit reads: a file in any supported format, the shipped
examples, or a HF hub dataset; every row becomes a canonical `Example` with a unique id."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from t2g.data import convert
from t2g.data.canonical import DataError, Example, read_jsonl

EXAMPLES_RESOURCE = "examples.jsonl"


def example_dataset_path() -> Path:
    """The small multi-domain dataset shipped with the package (for demos, smoke runs and tests)."""
    return Path(str(resources.files("t2g.data") / "examples" / EXAMPLES_RESOURCE))


def load_examples(source: str | os.PathLike, format: str = "auto", split: str = "train", label_map: str = "auto") -> list[Example]:
    """Load a dataset from any supported source into canonical examples.

    source: a canonical `.jsonl`; a SpERT-style `.json` (CoNLL04, SciERC, ADE); an
    open-r1-text2graph `.json`/`.jsonl` (`prompt`/`solution` rows); `examples` for the shipped
    example data; or a HF hub dataset name (needs the network or a local HF cache).
    """
    source = str(source)
    if format != "auto" and format != "canonical" and format not in convert.CONVERTERS:
        raise DataError(f"--format={format}: unknown format; use one of auto, canonical, {', '.join(convert.CONVERTERS)}")
    if source == "examples":
        return read_jsonl(example_dataset_path())
    path = Path(source)
    if path.is_dir():
        raise DataError(f"{source}: is a directory; give a dataset file")
    if path.is_file():
        fmt = format if format != "auto" else convert.sniff_format(path)
        if fmt == "canonical":
            if path.read_bytes()[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):  # a JSON array of rows
                rows = convert.load_records(path)
                return unique_ids([Example.from_dict(r, f"{path}: item {i}") for i, r in enumerate(rows)], source)
            return read_jsonl(path)
        return unique_ids(convert.CONVERTERS[fmt](path, label_map=label_map), source)
    if not _looks_like_hub_name(source):
        raise DataError(f"{source}: no such file")
    return unique_ids(convert.from_hub(source, split=split, format=format, label_map=label_map), source)


_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def _looks_like_hub_name(source: str) -> bool:
    """`owner/name` or `name`, not a path to a missing file (`data/x.jsonl`, `./x`, `existing_dir/x`)."""
    if not _HUB_NAME.fullmatch(source) or Path(source).suffix in {".json", ".jsonl"}:
        return False
    parent = Path(source).parent
    return parent == Path(".") or not parent.is_dir()


def unique_ids(examples: list[Example], source: str) -> list[Example]:
    """Converted data must have unique ids too (predictions are matched to gold by id)."""
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise DataError(f"{source}: rows {seen[ex.id]} and {i} share the id {ex.id!r}; ids must be unique")
        seen[ex.id] = i
    return examples
