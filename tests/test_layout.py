"""The package's shape: imports point down the pipeline's layers, never up and never in a circle.

Every import of `t2g` and `rewards` counts, the lazy ones inside functions included: a lazy import
only moves a cycle from import time to call time. The layers, bottom up, are those the folders'
`__init__` docstrings state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("t2g", "rewards")

# Bottom up. A module may import its own folder and any lower layer.
LAYERS = [
    {"t2g.files", "t2g.flags"},
    {"t2g.task"},
    {"t2g.data"},
    {"t2g.models", "rewards"},
    {"t2g.infer"},
    {"t2g.synth", "t2g.eval"},
    {"t2g.export"},
    {"t2g.train"},
    {"t2g.cli", "t2g"},
]
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The kit's modules this file imports, anywhere in it (`from a import b` names a.b when b is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES)
    return found


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the folder it belongs to): the longest listed prefix."""
    best = None
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best[1])):
                best = (i, unit)
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add its folder to LAYERS")
    return best


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: {m for m in imported(path, modules) if m != name} for name, path in modules.items()}


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in graph().items():
        here, unit = layer_of(module)
        for target in sorted(targets):
            there, other = layer_of(target)
            if there > here or (there == here and other != unit):
                wrong.append(f"{module} imports {target} ({other} is not below {unit})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = graph()
    # The package face (t2g/__init__) re-exports; edges into a package name are edges into its __init__.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_every_folder_says_what_lives_there():
    for init in sorted((REPO / "t2g").rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()) >= 3, f"{init.relative_to(REPO)}: say what lives in this folder"
        for child in sorted(init.parent.glob("*.py")):
            if child.name != "__init__.py" and init.parent != REPO / "t2g":
                assert child.name in doc, f"{init.relative_to(REPO)} does not mention {child.name}"


def test_top_of_t2g_holds_only_the_face_the_cli_and_shared_helpers():
    top = sorted(p.name for p in (REPO / "t2g").glob("*.py"))
    assert top == ["__init__.py", "cli.py", "files.py", "flags.py"], top


@pytest.mark.parametrize("folder", ["t2g", "rewards", "recipes", "scripts"])
def test_no_module_is_too_long_to_read(folder):
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in sorted((REPO / folder).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"over {MAX_LINES} lines, split along their concerns: " + ", ".join(long)
