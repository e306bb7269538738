"""Command-line flags, one way for every entry point: a dataclass whose fields carry their help.

Recipes, `t2g <command>` and the benchmark scripts all declare their flags like this:

    @dataclass
    class EvaluateFlags:
        '''Evaluate a model on a dataset.'''
        model: str = flag(help="a .gguf, an HF folder, an adapter or a run directory")
        limit: int = flag(0, "evaluate only the first N examples (0 = all)")

and read them with `parse(EvaluateFlags, {"model": "x.gguf"})` or `run(EvaluateFlags, main)`. A field
without a default is required. `--help` lists every flag with its type, default and meaning; a
misspelt flag fails with the nearest names; a value of the wrong type fails naming the flag. Fire
reads the command line (`--name=value`, `--name value`, `--flag`, `--noflag`); this module fits
what Fire hands over to the field's declared type, so `--model=123` stays the string "123".
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import sys
import types
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")


class FlagError(ValueError):
    """A flag that does not exist, or a value that does not fit it; the message names the flag."""


def flag(default: Any = MISSING, help: str = "", *, choices: Sequence[str] | None = None, **metadata: Any) -> Any:
    """A dataclass field that is a flag: its default (none = required), a one-line help text, and
    optionally the values it allows. Mutable defaults (lists, dicts) are copied per instance."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, **metadata}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in fields(cls) if f.init]


def names(cls: type) -> list[str]:
    return [f.name for f in flag_fields(cls)]


def nearest(name: str, valid: Sequence[str]) -> str:
    """'did you mean --x?' for a misspelt flag, or where to find the list."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(f"--{c}" for c in close) + "?"
    return "run with --help to list the flags"


def _hint(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls).get(name, Any)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) for `X | None` / `Optional[X]`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _number_or_word(hint: Any) -> bool:
    """`int | str`: a number, or a word such as "auto" that the field's validation interprets."""
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and set(typing.get_args(hint)) == {int, str}


def type_name(hint: Any) -> str:
    if _number_or_word(hint):
        return "int or word"
    kind, optional = _unwrap_optional(hint)
    origin = typing.get_origin(kind) or kind
    name = {tuple: "list", list: "list", dict: "dict", bool: "bool", int: "int", float: "float", str: "str"}.get(
        origin, getattr(origin, "__name__", str(origin)))
    return name + (" or None" if optional else "")


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Fit what Fire hands over (ints, floats, bools, strings, tuples) to the field's type."""
    if _number_or_word(hint):
        if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
            return value.strip()
        return coerce(name, value, int)
    kind, optional = _unwrap_optional(hint)
    if value is None or (optional and isinstance(value, str) and value.lower() == "none"):
        if optional:
            return None
        raise FlagError(f"--{name}: a value is required ({type_name(hint)})")
    origin = typing.get_origin(kind) or kind
    if origin in (tuple, list):
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = [str(v).strip() for v in value]
        else:
            items = [str(value)]
        return tuple(items) if origin is tuple else items
    if origin is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).lower() in ("true", "false", "1", "0", "yes", "no"):
            return str(value).lower() in ("true", "1", "yes")
        raise FlagError(f"--{name}: expected True or False, got {value!r}")
    if origin is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FlagError(f"--{name}: expected a whole number, got {value!r}")
        return value
    if origin is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FlagError(f"--{name}: expected a number, got {value!r}")
        return float(value)
    if origin is str:
        if isinstance(value, (tuple, list)):
            return ",".join(map(str, value))
        if isinstance(value, bool):  # Fire turns --name=true into True; a name or a path was meant
            raise FlagError(f"--{name}: expected a name or a path, got {value!r}")
        return str(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise FlagError(f"--{name}: expected a dict like {{name: value}}, got {value!r}")
        return dict(value)
    return value


def check_choice(cls: type, name: str, value: Any) -> None:
    field = next(f for f in flag_fields(cls) if f.name == name)
    allowed = field.metadata.get("choices")
    if not allowed or value is None:
        return
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if item not in allowed:
            raise FlagError(f"--{name}={item!r} is not one of {', '.join(allowed)}; "
                            f"{nearest(str(item), allowed).replace('--', '')}")


def parse(cls: type[T], given: Mapping[str, Any], base: T | None = None) -> T:
    """An instance of `cls` from flags: defaults (or `base`'s values), then each given flag, coerced
    and checked. Raises FlagError naming an unknown flag's nearest names, a missing required flag,
    or a value that does not fit."""
    valid = names(cls)
    values: dict[str, Any] = {}
    for raw, value in given.items():
        name = raw.replace("-", "_")
        if name not in valid:
            raise FlagError(f"unknown flag --{raw}: {nearest(name, valid)}")
        values[name] = coerce(name, value, _hint(cls, name))
        check_choice(cls, name, values[name])
    if base is not None:
        return dataclasses.replace(base, **values)
    missing = [f.name for f in flag_fields(cls)
               if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
    if missing:
        raise FlagError("missing " + ", ".join(f"--{m}" for m in missing) + f" (see --help)")
    return cls(**values)


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or '""'
    if isinstance(value, str):
        return repr(value) if value == "" or " " in value else value
    return repr(value)


def help_text(cls: type, prog: str, extra: Sequence[tuple[str, str, str]] = ()) -> str:
    """usage, the class docstring, then one line a flag: --name (type, default): help.
    `extra` adds (flag, default, help) rows that are not fields (a recipe's reward weights)."""
    lines = [f"usage: {prog} [--flag=value ...]", "", inspect.cleandoc(cls.__doc__ or ""), "", "flags:"]
    rows = []
    for f in flag_fields(cls):
        if f.default is not MISSING:
            default = _shown(f.default)
        elif f.default_factory is not MISSING:
            default = _shown(f.default_factory())
        else:
            default = "required"
        choices = f.metadata.get("choices")
        meaning = f.metadata.get("help", "") + (f" [{' | '.join(choices)}]" if choices else "")
        rows.append((f"--{f.name}", f"{type_name(_hint(cls, f.name))}, {default}", meaning))
    rows += [(name, default, meaning) for name, default, meaning in extra]
    width = min(34, max(len(r[0]) for r in rows) if rows else 0)
    for name, default, meaning in rows:
        lines.append(f"  {name:<{width}} ({default}) {meaning}".rstrip())
    return "\n".join(lines)


def read_command_line(argv: Sequence[str], prog: str) -> dict[str, Any]:
    """The --flags of a command line as Fire reads them (types as Python literals)."""
    import fire

    result: dict[str, Any] = {}

    def entry(*positional: Any, **given: Any) -> None:
        if positional:
            raise FlagError(f"unexpected argument(s) {' '.join(map(str, positional))}: every setting is a --flag=value")
        result.update(given)

    fire.Fire(entry, command=list(argv), name=prog)
    return result


def wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help", "help") for a in argv)


def run(cls: type[T], main: Callable[[T], Any], argv: Sequence[str] | None = None, prog: str | None = None,
        errors: tuple[type[BaseException], ...] = ()) -> Any:
    """Parse argv into `cls` and call `main(flags)`. `--help` prints the flags. A FlagError, or one of
    `errors` raised by `main`, prints one line `prog: error: ...` to stderr and exits with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or Path(sys.argv[0]).name
    if wants_help(argv):
        print(help_text(cls, prog))
        return None
    try:
        return main(parse(cls, read_command_line(argv, prog)))
    except (FlagError, *errors) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
