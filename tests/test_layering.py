"""The import graph: dependencies point one way (harness -> tasks -> attention_zoo; all may use zoo_io) and no
module imports, at module level, one that imports it back."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("attention_zoo", "tasks", "harness", "zoo_io")
# what each package may import (itself included)
ALLOWED = {
    "zoo_io": {"zoo_io"},
    "attention_zoo": {"attention_zoo", "zoo_io"},
    "tasks": {"tasks", "attention_zoo", "zoo_io"},
    "harness": set(PACKAGES),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Project modules that ``path`` imports (a ``from pkg import name`` counts ``pkg.name`` if it is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


MODULES = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_layer_above_it(package):
    upward = sorted(
        f"{name} imports {target}"
        for name, path in MODULES.items() if name.split(".")[0] == package
        for target in imports(path, top_level_only=False) if target.split(".")[0] not in ALLOWED[package]
    )
    assert not upward


def test_module_level_imports_have_no_circle():
    graph = nx.DiGraph()
    for name, path in MODULES.items():
        for target in imports(path, top_level_only=True):
            if target in MODULES and target != name:
                graph.add_edge(name, target)
    # a package's __init__ re-exporting its own modules is not a circle of dependencies
    cycles = [c for c in nx.simple_cycles(graph) if not any(name in PACKAGES for name in c)]
    assert not cycles
