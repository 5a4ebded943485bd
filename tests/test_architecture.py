"""The layout is the architecture (ARCHITECTURE.md): no import circle anywhere in astra_cli, and
each layer imports only the layers it is allowed to. Imports are read from the source with ast,
function-level and TYPE_CHECKING imports included: a circle through a lazy import is still a
circle in the design."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "astra_cli"

FORBIDDEN = {
    "astra_cli.vocabulary": ["astra_cli.*"],
    "astra_cli.errors": ["astra_cli.*"],
    "astra_cli.io": ["astra_cli.engine", "astra_cli.cli", "astra_cli.api", "astra_cli.science"],
    "astra_cli.science": [
        "astra_cli.engine", "astra_cli.cli", "astra_cli.api", "astra_cli.methods",
        "astra_cli.demo",
    ],
    "astra_cli.methods": ["astra_cli.engine", "astra_cli.cli", "astra_cli.api"],
    "astra_cli.engine": ["astra_cli.cli", "astra_cli.api", "astra_cli.science", "astra_cli.demo"],
    "astra_cli.api": ["astra_cli.cli"],
    "astra_cli.testing": ["astra_cli.cli", "astra_cli.api"],
    "astra_cli.plots": [
        "astra_cli.engine", "astra_cli.cli", "astra_cli.api", "astra_cli.methods",
        "astra_cli.science", "astra_cli.tables", "astra_cli.demo",
    ],
}  # fmt: skip
"""Layer -> what it may not import (a prefix, or `*` for the whole package)."""

ALLOWED = {
    "astra_cli.vocabulary": {"astra_cli.exit_codes"},
    "astra_cli.errors": {"astra_cli.exit_codes"},
    "astra_cli.io.manifest.rows": {"astra_cli.methods.base"},
    "astra_cli.io.manifest": {"astra_cli.methods.base"},
    "astra_cli.io.identifiers": set(),
}
"""Exceptions to FORBIDDEN: a manifest reads the method's option declarations (Param)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The astra_cli modules a module imports, anywhere in its source."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_graph_sees_the_known_edges():
    """The walker itself: it must see lazy imports inside functions and TYPE_CHECKING blocks."""
    assert "astra_cli.engine.planner" in GRAPH["astra_cli.engine.runner"]
    assert "astra_cli.science.grids" in GRAPH["astra_cli.methods.grid"]  # inside a method
    assert "astra_cli.engine.planner" in GRAPH["astra_cli.engine.progress"]  # TYPE_CHECKING


def test_no_import_circle():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_a_circle_would_be_found():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer):
    members = [name for name in MODULES if name == layer or name.startswith(layer + ".")]
    assert members, f"no module in layer {layer}"
    wrong = []
    for name in members:
        allowed = ALLOWED.get(name, set())
        for target in GRAPH[name] - allowed:
            for prefix in FORBIDDEN[layer]:
                if prefix == "astra_cli.*" or target == prefix or target.startswith(prefix + "."):
                    wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that returns to where it started, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            found = visit(target)
            if found:
                return found
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start)
        if found:
            return found
    return None
