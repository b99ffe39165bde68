"""Run records as the report sees them: every ``record.json`` under the runs folder, with what a table needs.

A run folder holds ``record.json`` (written by ``harness.run``; see harness/records.py) and ``metrics.jsonl``
(one JSON line per logged step). Records are grouped by their configuration without the seed
(:attr:`RunRecord.group`): the runs of one group differ only by seed, so their mean and spread are the
seeds' mean and spread.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from harness.config import config_hash
from harness.metrics_log import METRICS_FILE
from harness.records import RECORD_FILE
from harness.run_record import RunRecord as TypedRecord
from harness.variants import MODEL_AXES

log = logging.getLogger(__name__)

# trainer settings that record more without changing what is learnt (Table 2's gradient norms): a run with them
# is compared with the runs without
OBSERVING = ("record_gradients",)


@dataclass
class RunRecord:
    """One run, as recorded. ``status``: completed | failed | running (a run still going or interrupted)."""

    run_dir: Path
    raw: dict[str, Any] = field(repr=False)

    @property
    def status(self) -> str:
        return str(self.raw.get("status", "unknown"))

    @property
    def reason(self) -> str:
        return str(self.raw.get("reason") or "")

    @property
    def task(self) -> str:
        return str(self.raw.get("task") or self.config.get("task", {}).get("name", ""))

    @property
    def backend(self) -> str:
        return str(self.raw.get("backend") or self.config.get("attention", {}).get("name", ""))

    @property
    def scale(self) -> str:
        return str(self.raw.get("scale") or self.config.get("scale", {}).get("name", ""))

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed", self.config.get("seed", 0)))

    @property
    def config(self) -> dict[str, Any]:
        return self.raw.get("config") or {}

    @property
    def updated(self) -> str:
        return str(self.raw.get("updated") or self.raw.get("finished") or self.raw.get("started") or "")

    @cached_property
    def group(self) -> str:
        """Hash of the configuration without the seed: runs that differ only by seed share it."""
        return config_hash({k: v for k, v in self.config.items() if k != "seed"})

    @cached_property
    def context_config(self) -> dict[str, Any]:
        """What is not the row's business: the configuration without the seed, the attention section and the
        model's variant settings (what is left: sizes, data, training)."""
        config = {k: v for k, v in self.config.items() if k not in ("seed", "attention")}
        config["model"] = {k: v for k, v in config.get("model", {}).items() if k not in MODEL_AXES}
        config["trainer"] = {k: v for k, v in config.get("trainer", {}).items() if k not in OBSERVING}
        return config

    @cached_property
    def context(self) -> str:
        """Hash of :attr:`context_config`: a fair table compares runs that share it."""
        return config_hash(self.context_config)

    @property
    def variant(self) -> dict[str, Any] | None:
        """The settings that make this run a variant, as ``harness.run`` recorded them (None: an older record)."""
        return self.raw.get("variant")

    @property
    def n_layers(self) -> int:
        return int(self.config.get("model", {}).get("n_layers", 0))

    @property
    def parameters(self) -> dict[str, int]:
        return self.raw.get("parameters") or {}

    @cached_property
    def typed(self) -> TypedRecord:
        """The record as harness.run writes it (older versions migrated)."""
        return TypedRecord.from_json(self.raw)

    def split_value(self, index: int) -> float | None:
        """The primary metric on evaluation split ``index`` (0: the split the best checkpoint is chosen on,
        1: the reported one; tasks whose two splits are the same hold one value)."""
        return self.typed.primary_value(index)

    def baseline_value(self, index: int) -> float | None:
        """The primary metric of the trivial predictor (the training split's commonest class) on evaluation split
        ``index``, where the task records it."""
        return self.typed.baseline_value(index)

    def metric(self, key: str) -> float | None:
        value = (self.raw.get("metrics") or {}).get(key)
        return float(value) if value is not None else None

    def curves(self) -> pd.DataFrame:
        """The run's metrics log (one row per logged step); empty when there is none."""
        return read_metrics_log(self.run_dir / METRICS_FILE)


def read_metrics_log(path: Path) -> pd.DataFrame:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    return pd.DataFrame(rows)


def load_records(root: str | Path) -> list[RunRecord]:
    """Every readable run record under ``root`` (Hydra's own folders skipped); unreadable ones are logged."""
    root = Path(root)
    found: list[RunRecord] = []
    if not root.is_dir():
        return found
    for path in sorted(root.rglob(RECORD_FILE)):
        if any(part.startswith("_hydra") or part == ".submitit" for part in path.relative_to(root).parts):
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable run record %s: %s", path, err)
            continue
        if isinstance(raw, dict):
            found.append(RunRecord(path.parent, raw))
    return found
