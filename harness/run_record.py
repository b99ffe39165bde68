"""The run record as one typed object: written by ``harness.run``, read by the report and the tools, both
through :class:`RunRecord`; ``record.json`` is its JSON.

Version 2 adds ``version``, ``segments``, ``repairs`` and one shape for the trivial predictor's score,
``majority_baseline: {split: value}`` (version 1 had GLUE's ``data.majority_baseline.<split>`` and LRA's
``data.splits.<split>.majority_baseline``). Version 3 adds ``variant``: the attention and model settings that
differ from the backend's defaults (:mod:`harness.variants`), which place the run in a table's row; ``None`` in
older records, for which the report computes it. Older records are migrated on read (:meth:`RunRecord.from_json`);
keys this version does not know are kept (``extra``) and written back unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RECORD_VERSION = 3
PRIMARY_KEYS = ("name", "mode")  # the rest of primary_metric: {split: value}, the validation split first


@dataclass
class RunRecord:
    status: str  # running | completed | failed | interrupted (stopped by a signal after a checkpoint)
    config_hash: str = ""
    run_dir: str = ""
    task: str = ""
    backend: str = ""
    scale: str = ""
    seed: int = 0
    experiment: str | None = None
    variant: dict[str, Any] | None = None  # {"attention.<knob>" | "model.<axis>": value} off the defaults
    config: dict[str, Any] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    updated: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    host: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, int] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    primary_metric: dict[str, Any] = field(default_factory=dict)  # name, mode, then {split: value}
    majority_baseline: dict[str, float] = field(default_factory=dict)  # split -> the trivial predictor's score
    throughput: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    wall_seconds: float | None = None
    resumed_from: int | None = None
    segments: int = 1
    processes: int = 1
    repairs: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    traceback: str | None = None
    version: int = RECORD_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys of other versions, kept as they were

    # ------------------------------------------------------------------------------------------ reading
    @property
    def primary_splits(self) -> list[str]:
        return [k for k in self.primary_metric if k not in PRIMARY_KEYS]

    def primary_value(self, index: int) -> float | None:
        """The primary metric on split ``index`` (0: the validation split, 1: the reported one; a task whose two
        splits are one holds one value)."""
        splits = self.primary_splits
        if not splits:
            return None
        value = self.primary_metric[splits[min(index, len(splits) - 1)]]
        return float(value) if value is not None else None

    def baseline_value(self, index: int) -> float | None:
        splits = self.primary_splits
        if not splits:
            return None
        value = self.majority_baseline.get(splits[min(index, len(splits) - 1)])
        return float(value) if value is not None else None

    # -------------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return out | self.extra

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunRecord:
        """A record of any version (older ones migrated)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known and v is not None}  # None: the field's default
        record = cls(**{"status": "unknown", **values}, extra={k: v for k, v in raw.items() if k not in known})
        if "version" not in raw:
            record.version = 1
        if not record.majority_baseline:
            record.majority_baseline = baseline_from_data(record.data)
        return record


def baseline_from_data(data: dict[str, Any]) -> dict[str, float]:
    """``{split: value}`` from a task's data facts: GLUE's ``majority_baseline.<split>`` or LRA's
    ``splits.<split>.majority_baseline``."""
    found = dict(data.get("majority_baseline") or {})
    for split, facts in (data.get("splits") or {}).items():
        if isinstance(facts, dict) and facts.get("majority_baseline") is not None:
            found.setdefault(split, facts["majority_baseline"])
    return {k: float(v) for k, v in found.items() if v is not None}
