"""Converters from public dataset formats into canonical examples.

- SpERT-style JSON (CoNLL04, SciERC, ADE): token lists with entity spans (end exclusive) and
  relations that index entities. Short labels become readable ones through LABEL_MAPS, the single
  place that knows them, so evaluation can map back (`label_map_inverse`).
- open-r1-text2graph (`Ihor/Text2Graph-Open-R1`): rows with the text in `prompt` (or `text`) and
  the gold graph as a JSON string in `solution`; the type lists come from the gold graph.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from t2g.data.canonical import DataError, Example, decode_line
from t2g.task.schema import Entity, Graph, Relation, SchemaError, normalize, validate_graph

# dataset -> {"entities": {short: readable}, "relations": {short: readable}}
LABEL_MAPS: dict[str, dict[str, dict[str, str]]] = {
    "conll04": {
        "entities": {"Peop": "person", "Loc": "location", "Org": "organization", "Other": "other"},
        "relations": {
            "Work_For": "work for",
            "Kill": "kill",
            "OrgBased_In": "organization based in",
            "Live_In": "live in",
            "Located_In": "located in",
        },
    },
    "scierc": {
        "entities": {
            "Task": "task",
            "Method": "method",
            "Metric": "metric",
            "Material": "material",
            "OtherScientificTerm": "other scientific term",
            "Generic": "generic",
        },
        "relations": {
            "USED-FOR": "used for",
            "FEATURE-OF": "feature of",
            "HYPONYM-OF": "hyponym of",
            "PART-OF": "part of",
            "COMPARE": "compare",
            "CONJUNCTION": "conjunction",
            "EVALUATE-FOR": "evaluate for",
        },
    },
    "ade": {
        "entities": {"Adverse-Effect": "adverse effect", "Drug": "drug"},
        "relations": {"Adverse-Effect": "has adverse effect"},
    },
}


def label_map_inverse(name: str) -> dict[str, dict[str, str]]:
    """readable -> short, for mapping predictions back to a dataset's own labels."""
    m = LABEL_MAPS[name]
    return {kind: {v: k for k, v in table.items()} for kind, table in m.items()}


def _resolve_label_map(name: str, entity_labels: set[str], relation_labels: set[str], source: Path) -> dict[str, dict[str, str]]:
    if name == "none":  # sorted: a set's order changes between runs, the type lists must not
        return {"entities": {l: l for l in sorted(entity_labels)}, "relations": {l: l for l in sorted(relation_labels)}}
    if name == "auto":
        for candidate, m in LABEL_MAPS.items():
            if entity_labels <= m["entities"].keys() and relation_labels <= m["relations"].keys():
                return m
        raise DataError(
            f"{source}: labels {sorted(entity_labels)} / {sorted(relation_labels)} match no known label map "
            f"({', '.join(LABEL_MAPS)}); pass --label_map=none to keep them verbatim, or a JSON file "
            '{"entities": {short: readable}, "relations": {...}}'
        )
    if name in LABEL_MAPS:
        m = LABEL_MAPS[name]
    else:
        path = Path(name)
        if not path.is_file():
            raise DataError(f"--label_map={name}: not a known map ({', '.join(LABEL_MAPS)}, auto, none) nor a file")
        m = _read_label_map_file(path)
    missing = (entity_labels - m.get("entities", {}).keys()) | (relation_labels - m.get("relations", {}).keys())
    if missing:
        raise DataError(f"{source}: labels {sorted(missing)} are not in label map {name!r}; add them or use --label_map=none")
    return m


def _read_label_map_file(path: Path) -> dict[str, dict[str, str]]:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"--label_map={path}: not a JSON file ({exc})") from None
    tables = [m.get(k, {}) for k in ("entities", "relations")] if isinstance(m, dict) else []
    if not tables or not all(isinstance(t, dict) and all(isinstance(v, str) for v in t.values()) for t in tables):
        raise DataError(f'--label_map={path}: expected {{"entities": {{short: readable}}, "relations": {{short: readable}}}}')
    return m


def sniff_format(path: Path) -> str:
    """Guess a file's format from its first record."""
    if path.read_bytes()[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        data = load_records(path)
        first = data[0] if isinstance(data, list) and data else {}
    else:
        first, lineno = None, 0
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                line = decode_line(raw, f"{path}:{lineno}")
                if line.strip():
                    break
            else:
                raise DataError(f"{path}: the file is empty")
        try:
            first = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{lineno}: not JSON; expected canonical JSONL, SpERT JSON or open-r1-text2graph rows") from None
    if isinstance(first, dict):
        if "tokens" in first and "entities" in first:
            return "spert"
        if "solution" in first:
            return "text2graph"
        if "graph" in first and "text" in first:
            return "canonical"
    raise DataError(
        f"{path}: cannot tell the format from the first record (keys: {sorted(first) if isinstance(first, dict) else type(first).__name__}); "
        "pass --format=canonical|spert|text2graph"
    )


def load_records(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save the file as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    rows = []
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+0085... which JSON strings may hold raw
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
    return rows


def from_spert(path: str | Path, label_map: str = "auto") -> list[Example]:
    path = Path(path)
    records = load_records(path)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of sentences")
    ent_labels, rel_labels = set(), set()
    for i, rec in enumerate(records):
        where = f"{path}: item {i}"
        if not isinstance(rec, dict) or not isinstance(rec.get("tokens"), list) or not isinstance(rec.get("entities"), list):
            raise DataError(f"{where}: expected an object with 'tokens' and 'entities' lists (SpERT format)")
        if not all(isinstance(t, str) for t in rec["tokens"]) or not "".join(rec["tokens"]).strip():
            raise DataError(f"{where}: 'tokens' must be a list of strings with some text")
        if not isinstance(rec.get("relations", []), list):
            raise DataError(f"{where}: 'relations' must be a list")
        for kind, items, labels in (("entities", rec["entities"], ent_labels), ("relations", rec.get("relations", []), rel_labels)):
            for j, item in enumerate(items):
                if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                    raise DataError(f"{where}: {kind}[{j}] needs a string 'type'")
                labels.add(item["type"])
    labels = _resolve_label_map(label_map, ent_labels, rel_labels, path)
    entity_types = sorted(set(labels["entities"].values()), key=list(labels["entities"].values()).index)
    relation_types = sorted(set(labels["relations"].values()), key=list(labels["relations"].values()).index)
    examples = []
    for i, rec in enumerate(records):
        tokens = rec["tokens"]
        where = f"{path}: item {i}"
        entities = []
        for j, ent in enumerate(rec["entities"]):
            start, end = ent.get("start"), ent.get("end")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(tokens)):
                raise DataError(f"{where}: entities[{j}] has span [{start}, {end}) outside the {len(tokens)} tokens")
            span = " ".join(tokens[start:end])
            if not span.strip():
                raise DataError(f"{where}: entities[{j}] spans only whitespace tokens [{start}, {end})")
            entities.append(Entity(span, labels["entities"][ent["type"]]))
        relations = []
        for j, rel in enumerate(rec.get("relations", [])):
            head, tail = rel.get("head"), rel.get("tail")
            if not (isinstance(head, int) and isinstance(tail, int) and 0 <= head < len(entities) and 0 <= tail < len(entities)):
                raise DataError(f"{where}: relations[{j}] points at entity {head}/{tail}, but there are {len(entities)}")
            relations.append(Relation(entities[head].text, entities[tail].text, labels["relations"][rel["type"]]))
        ex_id = str(rec.get("orig_id", i))
        examples.append(Example(f"{path.stem}-{i}-{ex_id}", " ".join(tokens), list(entity_types), list(relation_types), Graph(tuple(entities), tuple(relations))))
    return examples


def _graph_from_solution(solution: Any, where: str) -> Graph:
    """A text2graph `solution`: entities may carry ids and relations may point at ids or texts."""
    if isinstance(solution, str):
        try:
            solution = json.loads(solution)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: 'solution' is not valid JSON ({exc.msg})") from None
    if not isinstance(solution, dict):
        raise DataError(f"{where}: 'solution' must be a JSON object with entities and relations")
    raw_entities = solution.get("entities") or []
    raw_relations = solution.get("relations") or []
    if not isinstance(raw_entities, list) or not isinstance(raw_relations, list):
        raise DataError(f"{where}: 'solution' entities and relations must be lists")
    # ids may be strings or numbers; anything else (a list, an object) cannot be looked up
    by_id = {e["id"]: e.get("text") for e in raw_entities if isinstance(e, dict) and isinstance(e.get("id"), (str, int, float))}

    def endpoint(value: Any) -> Any:
        return by_id.get(value, value) if isinstance(value, (str, int, float)) else value

    relations = []
    for r in raw_relations:
        if isinstance(r, dict):
            relations.append({"head": endpoint(r.get("head")), "tail": endpoint(r.get("tail")), "type": r.get("type")})
    try:
        return Graph.from_dict({"entities": [{"text": e.get("text"), "type": e.get("type")} if isinstance(e, dict) else e for e in raw_entities], "relations": relations}, "solution")
    except SchemaError as exc:
        raise DataError(f"{where}: {exc}") from None


def from_text2graph_rows(rows: list[Any], source: str) -> list[Example]:
    """Convert open-r1-text2graph rows; rows whose gold graph breaks the contract are dropped and counted."""
    examples, dropped = [], {}
    for i, row in enumerate(rows):
        where = f"{source}: row {i}"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected an object with 'prompt' and 'solution'")
        text = row.get("prompt", row.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: needs the source text in 'prompt' (or 'text')")
        try:
            graph = _graph_from_solution(row.get("solution"), where)
        except DataError:
            dropped["invalid_solution"] = dropped.get("invalid_solution", 0) + 1
            continue
        entity_types = sorted({normalize(e.type) for e in graph.entities})
        relation_types = sorted({normalize(r.type) for r in graph.relations})
        graph = Graph(
            tuple(Entity(e.text, normalize(e.type)) for e in graph.entities),
            tuple(Relation(r.head, r.tail, normalize(r.type)) for r in graph.relations),
        )
        problems = validate_graph(graph, text, entity_types, relation_types)
        if problems:
            dropped[problems[0].kind] = dropped.get(problems[0].kind, 0) + 1
            continue
        examples.append(Example(str(row.get("id", i)), text, entity_types, relation_types, graph))
    if dropped:
        print(f"[t2g] {source}: kept {len(examples)} of {len(rows)} rows; dropped {sum(dropped.values())}: {dropped}", file=sys.stderr)
    return examples


def from_text2graph(path: str | Path, label_map: str = "auto") -> list[Example]:
    path = Path(path)
    records = load_records(path)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of rows")
    return from_text2graph_rows(records, str(path))


CONVERTERS: dict[str, Callable[..., list[Example]]] = {"spert": from_spert, "text2graph": from_text2graph}


def from_hub(name: str, split: str = "train", format: str = "auto", label_map: str = "auto") -> list[Example]:
    """Load a HF hub dataset (needs the network, or the dataset already in the local HF cache)."""
    try:
        import datasets
    except ImportError:
        raise DataError("loading from the hub needs the `datasets` package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise DataError(
            f"{name}: could not load split {split!r} from the HF hub ({type(exc).__name__}: {str(exc)[:200]}). "
            "Check the name and your network, or give a local file (.jsonl / .json) instead"
        ) from None
    rows = [dict(r) for r in ds]
    fmt = format
    if fmt == "auto":
        cols = set(ds.column_names)
        fmt = "canonical" if {"text", "graph"} <= cols else "text2graph" if "solution" in cols else "unknown"
    if fmt == "canonical":
        return [Example.from_dict(r, f"{name}[{split}] row {i}") for i, r in enumerate(rows)]
    if fmt == "text2graph":
        return from_text2graph_rows(rows, f"{name}[{split}]")
    raise DataError(f"{name}: columns {ds.column_names} are neither canonical nor text2graph; pass --format")
