"""Raw input texts for synthetic data generation, each with a stable id.

Sources:
- `.txt`: `txt_split="lines"` (default): one text per non-blank line; `"paragraphs"`: texts are
  separated by blank lines and the lines of one paragraph are joined with a space.
- `.jsonl`: one JSON object per line with a text field (`text_field`, default "text") and,
  optionally, an id field (`id_field`, default "id"); other fields are ignored.
- a folder written by `datasets.Dataset.save_to_disk` (a DatasetDict: `split` picks one), or a
  hub dataset name `hf:owner/name` (needs the network or a local HF cache), column `text_field`.

The id is the input's own id when it has one (must be unique), otherwise `t-` + the first 16 hex
digits of the SHA-1 of the text: it survives reordering and appending to the input, so a restarted
or extended run recognises the rows it already has.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from t2g.data.canonical import DataError, iter_jsonl

TXT_SPLITS = ("lines", "paragraphs")


@dataclass(frozen=True)
class Sources:
    texts: list["SourceText"]
    exact_duplicates: list[str]  # `where` of each text dropped as an exact repeat (no id of its own)


@dataclass(frozen=True)
class SourceText:
    id: str
    text: str
    where: str  # file:line or dataset[row], for error messages


def text_id(text: str) -> str:
    return "t-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def read_sources(source: str, text_field: str = "text", id_field: str = "id", txt_split: str = "lines",
                 split: str = "train") -> Sources:
    """All texts of `source`, in input order; raises DataError naming the file/row and the fix."""
    if txt_split not in TXT_SPLITS:
        raise DataError(f"--txt_split={txt_split!r}: use one of {', '.join(TXT_SPLITS)}")
    path = Path(source)
    if source.startswith("hf:"):
        rows = _hub_rows(source[3:], text_field, split)
    elif path.is_dir():
        rows = _disk_rows(path, text_field, split)
    elif path.is_file() and path.suffix == ".txt":
        rows = _txt_rows(path, txt_split)
    elif path.is_file() and path.suffix == ".jsonl":
        rows = _jsonl_rows(path, text_field, id_field)
    elif path.is_file():
        raise DataError(f"{source}: unknown input kind; give a .txt, a .jsonl with a '{text_field}' field, "
                        "a save_to_disk folder, or hf:owner/name")
    else:
        raise DataError(f"{source}: no such file or folder (for a hub dataset write hf:owner/name)")
    return _with_unique_ids(rows)


def _with_unique_ids(rows: Iterable[tuple[str | None, str, str]]) -> Sources:
    out: list[SourceText] = []
    repeats: list[str] = []
    seen: dict[str, str] = {}
    for given_id, text, where in rows:
        ex_id = given_id if given_id is not None else text_id(text)
        if ex_id in seen:
            if given_id is None:
                repeats.append(where)  # the same text again: one copy is enough
                continue
            raise DataError(f"{where}: duplicate id {ex_id!r} (first at {seen[ex_id]}); ids must be unique")
        seen[ex_id] = where
        out.append(SourceText(ex_id, text, where))
    return Sources(out, repeats)


def _txt_rows(path: Path, txt_split: str) -> Iterator[tuple[None, str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if txt_split == "lines":
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                yield None, line.strip(), f"{path}:{lineno}"
        return
    block: list[str] = []
    start = 0
    for lineno, line in enumerate(lines + [""], 1):
        if line.strip():
            start = start or lineno
            block.append(line.strip())
        elif block:
            yield None, " ".join(block), f"{path}:{start}"
            block, start = [], 0


def _jsonl_rows(path: Path, text_field: str, id_field: str) -> Iterator[tuple[str | None, str, str]]:
    for _, where, row in iter_jsonl(path):
        yield _row_text(row, text_field, id_field, where)


def _row_text(row: object, text_field: str, id_field: str | None, where: str) -> tuple[str | None, str, str]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object with a '{text_field}' field")
    if text_field not in row:
        raise DataError(f"{where}: no field '{text_field}' (pick the text column with --text_field; "
                        f"fields here: {', '.join(sorted(map(str, row)))})")
    text = row[text_field]
    if not isinstance(text, str):
        raise DataError(f"{where}: field '{text_field}' must be a string, got {type(text).__name__}")
    given = row.get(id_field) if id_field else None
    if given is not None and (isinstance(given, bool) or not isinstance(given, (str, int))):
        raise DataError(f"{where}: field '{id_field}' must be a string or an integer")
    return (str(given) if given is not None and str(given) else None), text.strip(), where


def _dataset_rows(ds, name: str, text_field: str) -> Iterator[tuple[str | None, str, str]]:
    if text_field not in ds.column_names:
        raise DataError(f"{name}: no column '{text_field}' (columns: {', '.join(ds.column_names)}); use --text_field")
    ids = ds["id"] if "id" in ds.column_names else None
    for i, text in enumerate(ds[text_field]):
        where = f"{name}[{i}]"
        if not isinstance(text, str):
            raise DataError(f"{where}: column '{text_field}' must hold strings, got {type(text).__name__}")
        yield (str(ids[i]) if ids is not None else None), text.strip(), where


def _disk_rows(path: Path, text_field: str, split: str) -> Iterator[tuple[str | None, str, str]]:
    import datasets  # lazy: heavy, and only this input kind needs it

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"{path}: no split '{split}' (splits: {', '.join(ds)}); use --split")
        ds = ds[split]
    return _dataset_rows(ds, str(path), text_field)


def _hub_rows(name: str, text_field: str, split: str) -> Iterator[tuple[str | None, str, str]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, bad split: say which and what to do
        raise DataError(f"hf:{name}: cannot load split '{split}' ({type(exc).__name__}: {exc}); "
                        "check the name and split, or the network/HF cache") from None
    return _dataset_rows(ds, f"hf:{name}", text_field)
