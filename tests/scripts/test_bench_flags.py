"""Every benchmark script reads its flags the kit's one way (t2g.flags): `--help` lists each flag with
its type, default and meaning, a misspelt flag fails naming the nearest, and every command that
README.md, docs/ and the scripts' own docstrings show still parses as written."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from t2g.flags import flag_fields, parse, read_command_line

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (REPO / "scripts").glob("bench_*.py"))
ENV = dict(os.environ, UNSLOTH_AUTO_INSTALL="0", UNSLOTH_LLAMA_CPP_OFFLINE="1", HF_HUB_OFFLINE="1")


def script(name: str):
    if name in sys.modules:
        return sys.modules[name]
    sys.path.insert(0, str(REPO / "scripts"))  # the scripts import each other as a script run would
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def documented_commands() -> list[tuple[str, str, str]]:
    """(where, script, its flags as written) for every `python scripts/bench_*.py ...` the docs show."""
    found = []

    def add(where: str, command: str) -> None:
        command = re.sub(r"<[^>]*>", "PLACEHOLDER", " ".join(command.split()))
        m = re.match(r"python scripts/(bench_\w+)\.py(.*)$", command)
        if m:
            found.append((where, m.group(1), m.group(2).strip()))

    def shell_lines(where: str, lines: list[str]) -> None:
        variables: dict[str, str] = {}
        lines = re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()  # a command continued with a backslash is one line
        for line in lines:
            if m := re.match(r'(\w+)="([^"]*)"$', line.strip()):
                variables[m.group(1)] = m.group(2)
                continue
            line = re.sub(r"\$(\w+)", lambda v: variables.get(v.group(1), v.group(0)), line)
            line = re.sub(r"(^|\s)#.*$", "", line)
            for part in _unquoted_split(line):
                add(where, part)

    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        blocks = re.split(r"^```.*$", text, flags=re.M)
        for i, block in enumerate(blocks):
            where = str(doc.relative_to(REPO))
            if i % 2:  # inside a fence
                shell_lines(where, block.splitlines())
            else:
                for span in re.findall(r"`([^`]+)`", block):
                    add(where, span)
    for name in SCRIPTS:
        doc = ast.get_docstring(ast.parse((REPO / "scripts" / f"{name}.py").read_text(encoding="utf-8"))) or ""
        shell_lines(f"scripts/{name}.py", doc.splitlines())
    return found


def _unquoted_split(line: str) -> list[str]:
    """A shell line cut at its command separators (&&, ;, &, |) outside quotes: a quoted regular
    expression (`--tensor_types='["attn_(q|k)=q8_0"]'`) stays one argument."""
    parts, current, quote = [], "", None
    for ch in line:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in ";&|":
            parts.append(current)
            current = ""
            continue
        current += ch
    return parts + [current]


COMMANDS = documented_commands()


def test_the_docs_show_commands_of_every_benchmark():
    assert {name for _, name, _ in COMMANDS} == set(SCRIPTS)
    assert sum(where == "docs/results.md" for where, _, _ in COMMANDS) >= 6


@pytest.mark.parametrize("where, name, flags", COMMANDS, ids=[f"{w}:{n} {f}" for w, n, f in COMMANDS])
def test_every_documented_command_parses_as_written(where, name, flags):
    module = script(name)
    parse(module.Flags, read_command_line(shlex.split(flags), f"{name}.py"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_lists_every_flag_with_type_default_and_meaning(name):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), "--help"], capture_output=True,
                          text=True, env=ENV, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith("  --")}
    fields = flag_fields(script(name).Flags)
    assert set(rows) == {f"--{f.name}" for f in fields}
    for f in fields:
        assert f.metadata.get("help"), f"{name}: --{f.name} says nothing about itself"
        assert re.search(r"\((int|float|str|bool|list)( or None)?, [^)]*\) \S", rows[f"--{f.name}"]), rows[f"--{f.name}"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_misspelt_flag_fails_naming_the_nearest(name):
    first = flag_fields(script(name).Flags)[0].name
    typo = first[:-1] + ("x" if first[-1] != "x" else "y")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / f"{name}.py"), f"--{typo}=1"], capture_output=True,
                          text=True, env=ENV, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert f"unknown flag --{typo}: did you mean --{first}" in proc.stderr and "Traceback" not in proc.stderr
