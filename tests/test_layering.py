"""The import graph, function-level imports included: dependencies point one way (harness -> tasks ->
attention_zoo; all may use zoo_io), inside harness the run never imports its peers (the benchmarks, the
diagnostics, the report, the orchestrator), the report reads only records, experiment files and the paper's
numbers, no module imports one that imports it back, and importing a module changes nothing in the process."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
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
# harness's peers of the run, and its tools (entry points that read a run's files beside the report's numbers)
PEERS = ("harness.bench", "harness.analyze", "harness.report", "harness.reproduce")
TOOLS = ("harness.params", "harness.generate", "harness.migrate_records", "harness.export_records", "harness.gpucheck")
# all the report may import of the project: the record, the experiment files, the metrics log's name, file writes
REPORT_READS = ("harness.report", "harness.run_record", "harness.experiments", "harness.metrics_log", "zoo_io")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Project modules that ``path`` imports anywhere in it (a ``from pkg import name`` counts ``pkg.name`` if it
    is a module, else ``pkg``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                      for a in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
EDGES = {name: imports(path) for name, path in MODULES.items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_layer_above_it(package):
    upward = sorted(f"{name} imports {target}" for name, targets in EDGES.items() if name.split(".")[0] == package
                    for target in targets if target.split(".")[0] not in ALLOWED[package])
    assert not upward


def test_the_run_never_imports_its_peers_and_peers_never_import_the_orchestrator():
    wrong = []
    for name, targets in EDGES.items():
        if not name.startswith("harness"):
            continue
        for target in targets:
            if not within(name, PEERS + TOOLS) and within(target, PEERS + TOOLS):
                wrong.append(f"the run's {name} imports {target}")
            elif within(name, ("harness.bench", "harness.analyze")) and within(target, ("harness.report",
                                                                                     "harness.reproduce")):
                wrong.append(f"{name} imports {target}")
    assert not wrong


def test_the_report_reads_only_records_experiment_files_and_the_papers_numbers():
    wrong = sorted(f"{name} imports {target}" for name, targets in EDGES.items() if within(name, ("harness.report",))
                   for target in targets if not within(target, REPORT_READS))
    assert not wrong  # never composing conf/, hashing a config or locating a run folder by its config


def test_no_import_circle_anywhere():
    graph = nx.DiGraph([(name, target) for name, targets in EDGES.items() for target in targets
                        if target in MODULES and target != name])
    # a package's __init__ re-exporting its own modules is not a circle of dependencies
    cycles = [c for c in nx.simple_cycles(graph) if not any(name in PACKAGES or MODULES[name].name == "__init__.py"
                                                             for name in c)]
    assert not cycles


def test_importing_any_module_changes_nothing_in_the_process():
    """No environment variable set, no Hydra entry or resolver registered, no plugin loaded on import: entry
    points do that in their main()."""
    names = sorted(n for n in MODULES if not n.endswith("__main__"))
    script = f"""
import json, os, sys, importlib
import matplotlib, numpy, pandas, scipy, sklearn, torch  # what third-party libraries set on import is theirs
from hydra.core.config_store import ConfigStore
from omegaconf.basecontainer import BaseContainer
env, resolvers = dict(os.environ), set(BaseContainer._resolvers)
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps({{"env": sorted(k for k in set(os.environ) | set(env) if os.environ.get(k) != env.get(k)),
                  "store": sorted(ConfigStore.instance().repo),
                  "resolvers": sorted(set(BaseContainer._resolvers) - resolvers)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["env"] == [] and found["resolvers"] == []
    assert not {"attention", "trainer", "model", "run", "logger"} & set(found["store"]), found["store"]
