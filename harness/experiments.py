"""The paper's tables as experiment files. ``conf/experiment/<table>.yaml`` is a table, whole:
- its sweep (what a run composes),
- ``reproduce`` (:class:`TablePlan`: its place among the tables, whether it is a core claim, its benchmark or
  diagnostics, what it costs),
- ``report`` (its page: title, the paper's CSV under results/paper, columns, how runs become rows:
  ``harness.report.specs``),
- ``claims`` (the paper's claims about it, decided by ``harness.report.claims``).
A run ignores the last three (``harness.config.PLAN_KEYS``). The orchestrator and the report both read the tables
from here; nothing is read at import."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
EXPERIMENTS = CONF_DIR / "experiment"


@dataclass
class Analysis:
    """``python -m harness.analyze <command>`` on the completed runs of the table's sweep."""

    command: str
    first_seed_only: bool = False
    options: dict[str, list[str]] = field(default_factory=dict)  # scale -> extra command-line options


@dataclass
class TablePlan:
    """The ``reproduce`` section of ``conf/experiment/<table>.yaml``. ``sweep``: overrides added to the sweep,
    resolved against the composed experiment (read there, e.g. Table 8's every split point)."""

    order: int | None = None  # its place among the report's tables; None: an experiment that is not a table
    core: bool = False  # one of the core claims: run by ./reproduce.sh with no TABLE
    ablation: bool = False  # on the masked LM when available, as the paper's (--ablation-task)
    extra_backends: bool = False  # --extra-backends adds rows to this table
    sweep: list[str] = field(default_factory=list)
    analysis: list[Analysis] = field(default_factory=list)
    bench: dict[str, dict[str, Any]] | None = None  # scale -> `harness.bench table7` options, instead of a sweep
    cost: dict[str, str] = field(default_factory=dict)  # scale -> what a run of the table costs (the report says it)
    with_tables: list[str] = field(default_factory=list)  # naming this table runs these too (their page is its page)

    @property
    def runs_only(self) -> bool:
        """A table made of training runs alone (no benchmark, no diagnostics)."""
        return self.bench is None and not self.analysis


@functools.cache
def experiment_file(name: str, folder: Path = EXPERIMENTS) -> dict[str, Any]:
    """The experiment file as plain data, unresolved (its sweep's interpolations need the composed config);
    empty when there is none."""
    path = folder / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.is_file() else {}


def section(name: str, key: str, folder: Path = EXPERIMENTS) -> Any:
    """One section of table ``name``'s experiment file (``report``, ``claims``, ...), None when absent."""
    return experiment_file(name, folder).get(key)


@functools.cache
def table_plan(name: str, folder: Path = EXPERIMENTS) -> TablePlan:
    """The plan of table ``name`` read off its experiment file (the default plan when it has none)."""
    path = folder / f"{name}.yaml"
    node = section(name, "reproduce", folder)
    if node is None:
        return TablePlan()
    plain = {k: v for k, v in node.items() if k != "sweep"}  # the sweep's values are resolved by the orchestrator
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TablePlan), plain))
    except Exception as err:
        raise ValueError(f"{path}: invalid reproduce section: {str(err).splitlines()[0]}") from None


@functools.cache
def table_names(folder: Path = EXPERIMENTS) -> tuple[str, ...]:
    """Every table, in the order of their ``reproduce.order``."""
    plans = {path.stem: table_plan(path.stem, folder) for path in sorted(folder.glob("*.yaml"))}
    return tuple(sorted((n for n, p in plans.items() if p.order is not None), key=lambda n: plans[n].order))


def plans() -> dict[str, TablePlan]:
    return {name: table_plan(name) for name in table_names()}


def core_tables() -> list[str]:
    return [name for name, plan in plans().items() if plan.core]


def extra_backend_tables() -> list[str]:
    return [name for name, plan in plans().items() if plan.extra_backends]
