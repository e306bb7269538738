"""Training synonyms for type names: augmentation renames a type to one of these, so that the model
learns to read the type lists it is given instead of a fixed vocabulary.

The tables cover CoNLL04's types (what the kit's benchmark trains on); a
dataset with other types passes its own table (`--augment_synonyms=FILE`, JSON `{type: [synonym, ...]}`).
The type-conditioning test set (`t2g.eval.conditions`) renames with a DIFFERENT table: a model is
tested on names it never trained on, and tests/data check that the two tables never share a name.
`TRAINING_DISTRACTORS` are types of other domains that augmentation offers where nothing fits
(`--augment_distractors`); the test's distractors are, likewise, others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from t2g.data.canonical import DataError
from t2g.task.schema import normalize

# type (normalised) -> names it may be renamed to in training; none of them is a name of another type here.
TRAINING_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("individual", "person name", "named individual", "people"),
    "organization": ("organisation", "company or agency", "org", "group or company"),
    "location": ("geographic location", "geographical entity", "locale", "area or region"),
    "other": ("other name", "additional entity", "misc entity", "other thing"),
    "work for": ("works for", "employee of", "has a job at", "works at"),
    "kill": ("killed", "assassinated", "caused the death of", "slew"),
    "organization based in": ("based in", "has its base in", "org based in", "operates from"),
    "live in": ("lives in", "inhabits", "has a home in", "dwells in"),
    "located in": ("lies in", "is located in", "is inside", "is a place in"),
}

# Three times the names (`--augment_synonyms=wide`): the four above and eight more per type, so that a
# model meets a type under many names and cannot learn a short list of them by heart. The same rules:
# never a test name (t2g.eval.conditions), nor a near copy of one ("human" beside the test's
# "human being", "employed at" beside "employed by"), nor another type's name; checked by tests/data.
TRAINING_SYNONYMS_WIDE: dict[str, tuple[str, ...]] = {
    "person": TRAINING_SYNONYMS["person"] + ("someone", "man or woman", "personal name", "public figure",
                                             "personality", "named man or woman", "celebrity", "full name of someone"),
    "organization": TRAINING_SYNONYMS["organization"] + ("firm", "agency", "association", "corporation", "club or party",
                                                         "enterprise", "outfit", "body of people"),
    "location": TRAINING_SYNONYMS["location"] + ("site", "geographic name", "country or city", "territory", "region",
                                                 "spot on a map", "geopolitical entity", "town or country"),
    "other": TRAINING_SYNONYMS["other"] + ("something else", "remaining entity", "further named thing", "any other entity",
                                           "other named item", "extra entity", "leftover entity", "named thing"),
    "work for": TRAINING_SYNONYMS["work for"] + ("member of staff at", "on the payroll of", "serves", "holds a post at",
                                                 "staff of", "in the service of", "labours for", "has a position at"),
    "kill": TRAINING_SYNONYMS["kill"] + ("took the life of", "shot dead", "executed", "did away with", "put to death",
                                         "ended the life of", "slayed", "killer of"),
    "organization based in": TRAINING_SYNONYMS["organization based in"] + (
        "has offices in", "seated in", "main office in", "home base in", "registered in", "centred in", "run from",
        "anchored in"),
    "live in": TRAINING_SYNONYMS["live in"] + ("home is in", "stays in", "settled in", "lived in", "is domiciled in",
                                               "has lodgings in", "calls home", "makes a home in"),
    "located in": TRAINING_SYNONYMS["located in"] + ("is part of", "within", "found in", "sits in", "is in",
                                                     "contained in", "lies within", "belongs to"),
}


# Foreign types for training (`--augment_distractors=builtin`): domains CoNLL04-style news is not
# annotated for. Disjoint from the type-conditioning test's distractors (t2g.eval.conditions, checked
# by tests/data), so that the test still asks about types the model never saw.
TRAINING_DISTRACTORS: dict[str, tuple[str, ...]] = {
    "entities": ("mineral", "chemical element", "cell type", "plant species", "algorithm", "programming library",
                 "mathematical theorem", "musical chord", "star system", "bacterium"),
    "relations": ("metabolises", "crystallises as", "implements", "is expressed in", "proves", "orbits",
                  "is a subclass of", "depends on", "resolves to", "catalysed by"),
}


# --augment_synonyms names -> tables; "none" renames nothing, anything else is a JSON file
SYNONYM_TABLES = {"none": {}, "builtin": TRAINING_SYNONYMS, "wide": TRAINING_SYNONYMS_WIDE}


def load_synonyms(spec: str) -> dict[str, tuple[str, ...]]:
    """A table of SYNONYM_TABLES by name, or a JSON file {type: [synonym, ...]}."""
    if spec in SYNONYM_TABLES:
        return dict(SYNONYM_TABLES[spec])
    table = _read_json(spec, "--augment_synonyms", '{"type": ["synonym", ...]}', names=tuple(SYNONYM_TABLES))
    return check_synonyms(table, f"--augment_synonyms={spec}")


def _read_json(spec: str, flag: str, shape: str, names: tuple[str, ...] = ("none", "builtin")) -> object:
    """The JSON file a table flag names; DataError naming the flag, and its built-in `names`, when it is
    missing or not JSON."""
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"{flag}={spec}: no such file; give {', '.join(names)}, or a JSON file {shape}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{flag}={spec}: not a JSON file ({exc})") from None


def check_synonyms(table: object, where: str) -> dict[str, tuple[str, ...]]:
    """The table with normalised keys; DataError naming the bad entry when it is not {type: [names]}."""
    if not isinstance(table, Mapping):
        raise DataError(f'{where}: expected an object {{"type": ["synonym", ...]}}, got {type(table).__name__}')
    out: dict[str, tuple[str, ...]] = {}
    for key, names in table.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(f"{where}: the synonyms of {key!r} must be a non-empty list of non-empty strings")
        out[normalize(key)] = tuple(names)
    return out


def load_distractors(spec: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`none`, `builtin` (TRAINING_DISTRACTORS) or a JSON file {"entities": [...], "relations": [...]}:
    (entity types, relation types)."""
    if spec == "none":
        return (), ()
    if spec == "builtin":
        table: object = TRAINING_DISTRACTORS
    else:
        table = _read_json(spec, "--augment_distractors", '{"entities": ["type", ...], "relations": ["type", ...]}')
    where = f"--augment_distractors={spec}"
    if not isinstance(table, Mapping) or set(table) - {"entities", "relations"}:
        raise DataError(f'{where}: expected an object {{"entities": [...], "relations": [...]}}')
    out = []
    for kind in ("entities", "relations"):
        names = table.get(kind, [])
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(f"{where}: {kind!r} must be a list of non-empty strings")
        out.append(tuple(names))
    return out[0], out[1]
