"""A tiny renderer for the subset of Go's text/template that `t2g.export.modelfile` emits for Ollama.

It exists so that tests and the exporter can prove, without an Ollama binary, that the TEMPLATE in
a Modelfile renders a conversation exactly as the model's own Jinja chat template does. It follows
Go's semantics for what it supports and raises `GoTemplateError` on anything else (it never guesses):

    text                                   literal output (no `{{-`/`-}}` trim markers)
    {{ range $i, $m := .Messages }}...{{ end }}
    {{ if COND }}...{{ else if COND }}...{{ else }}...{{ end }}
    {{ $v := EXPR }}                       assignment (scoped to the enclosing block)
    {{ EXPR }}                             output
    EXPR: "string" | 123 | $v | $v.Field | $.Messages | .Messages | (EXPR)
          | eq A B | ne A B | and A B... | or A B... | not A | len A | slice A I
Messages are dicts with "role" and "content"; `.Role`/`.Content` read them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence


class GoTemplateError(ValueError):
    pass


_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\(|\)|:=|,|[^\s(),]+)')
_FUNCS = {"eq", "ne", "and", "or", "not", "len", "slice"}


@dataclass
class _Node:
    kind: str  # text | out | assign | if | range
    value: Any = None
    branches: list = field(default_factory=list)  # if: [(cond_tokens | None, body)]
    body: list = field(default_factory=list)


def _tokens(src: str) -> list[str]:
    out, pos, src = [], 0, src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise GoTemplateError(f"cannot tokenize action {{{{ {src} }}}}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _parse(template: str) -> list[_Node]:
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        if m.start() > pos:
            pieces.append(("text", template[pos:m.start()]))
        inner = m.group(1)
        if inner.startswith("-") or inner.endswith("-") or inner.startswith("/*"):
            raise GoTemplateError(f"unsupported action {{{{{inner}}}}} (trim markers and comments are not emitted)")
        pieces.append(("action", inner))
        pos = m.end()
    if "{{" in template[pos:]:
        raise GoTemplateError("unclosed action")
    if pos < len(template):
        pieces.append(("text", template[pos:]))
    body, rest = _parse_block(pieces, 0, top=True)
    return body


def _parse_block(pieces: list[tuple[str, str]], i: int, top: bool = False) -> tuple[list[_Node], int]:
    """Parse until a closing `end`/`else`; returns (nodes, index of the closing piece)."""
    nodes: list[_Node] = []
    while i < len(pieces):
        kind, src = pieces[i]
        if kind == "text":
            nodes.append(_Node("text", src))
            i += 1
            continue
        toks = _tokens(src)
        head = toks[0] if toks else ""
        if head in ("end", "else"):
            if top:
                raise GoTemplateError(f"unexpected {{{{ {src.strip()} }}}}")
            return nodes, i
        if head == "if":
            node, i = _parse_if(pieces, i, toks[1:])
        elif head == "range":
            node, i = _parse_range(pieces, i, toks[1:])
        elif len(toks) >= 3 and toks[0].startswith("$") and toks[1] == ":=":
            node, i = _Node("assign", (toks[0], toks[2:])), i + 1
        else:
            node, i = _Node("out", toks), i + 1
        nodes.append(node)
    if not top:
        raise GoTemplateError("missing {{ end }}")
    return nodes, i


def _parse_if(pieces, i, cond):
    node = _Node("if")
    while True:
        body, i = _parse_block(pieces, i + 1)
        node.branches.append((cond, body))
        toks = _tokens(pieces[i][1])
        if toks == ["end"]:
            return node, i + 1
        if toks[:2] == ["else", "if"]:
            cond = toks[2:]
        elif toks == ["else"]:
            cond = None
        else:
            raise GoTemplateError(f"unsupported {{{{ {' '.join(toks)} }}}}")


def _parse_range(pieces, i, toks):
    if len(toks) != 5 or toks[1] != "," or toks[3] != ":=":
        raise GoTemplateError("only `range $i, $m := EXPR` is supported")
    body, j = _parse_block(pieces, i + 1)
    if _tokens(pieces[j][1]) != ["end"]:
        raise GoTemplateError("`else` inside range is not supported")
    return _Node("range", (toks[0], toks[2], toks[4:]), body=body), j + 1


def _truth(v: Any) -> bool:
    return bool(v)  # Go: false, 0, "", nil, empty slice are false; so is Python's bool()


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        key = name[0].lower() + name[1:]
        if key in obj:
            return obj[key]
        if name in obj:
            return obj[name]
    raise GoTemplateError(f"no field {name} on {type(obj).__name__}")


class _Eval:
    def __init__(self, scope: dict[str, Any]):
        self.scope = scope

    def operand(self, toks: list[str], k: int) -> tuple[Any, int]:
        t = toks[k]
        if t == "(":
            depth, j = 1, k + 1
            while depth:
                if j >= len(toks):
                    raise GoTemplateError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(toks[j], 0)
                j += 1
            return self.command(toks[k + 1:j - 1]), j
        if t.startswith('"'):
            return json.loads(t), k + 1
        if re.fullmatch(r"-?\d+", t):
            return int(t), k + 1
        if t.startswith("$") or t.startswith("."):
            var, *fields = t.split(".") if not t.startswith(".") else ["$", *t[1:].split(".")]
            if var not in self.scope:
                raise GoTemplateError(f"undefined variable {var}")
            value = self.scope[var]
            for f in fields:
                value = _field(value, f)
            return value, k + 1
        raise GoTemplateError(f"unsupported operand {t!r}")

    def command(self, toks: list[str]) -> Any:
        if not toks:
            raise GoTemplateError("empty command")
        if toks[0] in _FUNCS:
            args, k = [], 1
            while k < len(toks):
                value, k = self.operand(toks, k)
                args.append(value)
            return _call(toks[0], args)
        value, k = self.operand(toks, 0)
        if k != len(toks):
            raise GoTemplateError(f"unexpected {' '.join(toks[k:])}")
        return value


def _call(name: str, args: list[Any]) -> Any:
    if name in ("eq", "ne"):
        if len(args) != 2:
            raise GoTemplateError(f"{name} takes 2 arguments here")
        return (args[0] == args[1]) == (name == "eq")
    if name == "and":
        for a in args:
            if not _truth(a):
                return a
        return args[-1]
    if name == "or":
        for a in args:
            if _truth(a):
                return a
        return args[-1]
    if name == "not":
        return not _truth(args[0])
    if name == "len":
        return len(args[0])
    if name == "slice":
        return args[0][args[1]:] if len(args) == 2 else args[0][args[1]:args[2]]
    raise GoTemplateError(f"unknown function {name}")


def _exec(nodes: list[_Node], scope: dict[str, Any], out: list[str]) -> None:
    scope = dict(scope)  # assignments are local to the block, as in Go
    for node in nodes:
        if node.kind == "text":
            out.append(node.value)
        elif node.kind == "out":
            value = _Eval(scope).command(node.value)
            out.append(value if isinstance(value, str) else json.dumps(value))
        elif node.kind == "assign":
            name, expr = node.value
            scope[name] = _Eval(scope).command(expr)
        elif node.kind == "if":
            for cond, body in node.branches:
                if cond is None or _truth(_Eval(scope).command(cond)):
                    _exec(body, scope, out)
                    break
        elif node.kind == "range":
            ivar, evar, expr = node.value
            for i, item in enumerate(_Eval(scope).command(expr)):
                _exec(node.body, {**scope, ivar: i, evar: item}, out)


def render(template: str, messages: Sequence[dict[str, str]]) -> str:
    """Render `template` with `.Messages` = messages, as Ollama's chat endpoint would."""
    root = {"messages": list(messages)}
    out: list[str] = []
    _exec(_parse(template), {"$": root}, out)
    return "".join(out)
