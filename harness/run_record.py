"""The run record: one typed object (:class:`RunRecord`) that ``harness.run`` writes as ``record.json`` in the run
folder, and the only thing the report, the benchmarks and the orchestrator read about a run.

A record is complete when the run writes it: besides the resolved config and the results it names the run's
experiment, its ``variant`` (its attention and model settings off the backend's defaults, :mod:`harness.variants`:
its table row), its ``group`` (the config hash without the seed and what follows it: runs that differ only by
seed), its ``context`` (the hash of :func:`context_config`: a fair table compares runs that share it) and
``context_any_budget`` (the same without ``trainer.max_steps``: the same setting at other training budgets),
whether its backend is a layer preset, the package versions, the commit and the host. Readers use these fields;
they never compose ``conf/`` or hash a config again.

Versions: 2 added ``version``, ``segments``, ``repairs`` and ``majority_baseline: {split: value}`` (version 1 had
GLUE's ``data.majority_baseline.<split>`` and LRA's ``data.splits.<split>.majority_baseline``); 3 added
``variant``; 4 added ``group``, ``context``, ``context_any_budget`` and ``preset``. Older records are brought up
to date once by ``python -m harness.migrate_records RUNS`` (:mod:`harness.migrate_records`), not on every read;
keys this version does not know are kept (``extra``) and written back unchanged.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from zoo_io.atomic import write_json

log = logging.getLogger(__name__)

RECORD_FILE = "record.json"
RECORD_VERSION = 4
PRIMARY_KEYS = ("name", "mode")  # the rest of primary_metric: {split: value}, the validation split first
PACKAGES = ("torch", "hydra-core", "omegaconf", "torchmetrics", "wandb", "numpy", "attention-zoo")
# the model settings that make a row of an ablation (Tables 10 and 12, the positional encodings); sizes do not:
# they belong to the scale
MODEL_AXES = ("channel_mixer", "positional", "norm", "prenorm", "activation", "hidden_dim", "short_conv")
# trainer settings that record more without changing what is learnt (Table 2's gradient norms): a run with them
# is compared with the runs without
OBSERVING = ("record_gradients",)


@dataclass
class RunRecord:
    """One run as recorded (``record.json``)."""

    status: str  # running | completed | failed | interrupted (stopped by a signal after a checkpoint)
    config_hash: str = ""
    run_dir: str = ""
    task: str = ""
    backend: str = ""
    scale: str = ""
    seed: int = 0
    experiment: str | None = None
    variant: dict[str, Any] | None = None  # {"attention.<knob>" | "model.<axis>": value} off the defaults
    group: str = ""  # the config hash without the seed
    context: str = ""  # the hash of context_config(config)
    context_any_budget: str = ""  # the same without trainer.max_steps
    preset: bool = False  # the backend is a layer preset (TransNormer T1/T2: Diag blocks, then Norm blocks)
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

    @property
    def folder(self) -> Path:
        """The run folder (where the record was read, for a record read by :func:`load_records`)."""
        return Path(self.run_dir)

    @property
    def relative_folder(self) -> str:
        """The run folder relative to its runs root, ``<task>/<backend>/<scale>/seed<n>-<hash>`` as
        ``harness.execute.run_dir_for`` places it: the same wherever the runs folder lies (the report's CSVs)."""
        depth = len(self.task.split("/")) + 3
        return "/".join(Path(self.run_dir).parts[-depth:])

    @property
    def spent_seconds(self) -> float | None:
        """The run's wall time over all its segments. Records written before resumed runs summed it state only
        the last segment's; their training and evaluation time, which always summed, bounds it from below."""
        if self.wall_seconds is None:
            return None
        return max(self.wall_seconds, (self.train_seconds or 0.0) + (self.eval_seconds or 0.0))

    @property
    def n_layers(self) -> int:
        return int(self.config.get("model", {}).get("n_layers", 0))

    @property
    def last_written(self) -> str:
        return self.updated or self.finished or self.started or ""

    @property
    def context_config(self) -> dict[str, Any]:
        return context_config(self.config)

    def metric(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return float(value) if value is not None else None

    @property
    def is_placed(self) -> bool:
        """Whether the record names its table group and context (version 4 on): older ones need migrating."""
        return bool(self.group and self.context)

    # -------------------------------------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return out | self.extra

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunRecord:
        """The record as written (keys of other versions kept in ``extra``; a record without ``version`` is 1)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in raw.items() if k in known and v is not None}  # None: the field's default
        record = cls(**{"status": "unknown", **values}, extra={k: v for k, v in raw.items() if k not in known})
        if "version" not in raw:
            record.version = 1
        return record


# settings whose default follows the run's seed (``conf/task/glue/_common.yaml``: ``pretrain_seed: ${seed}``): part
# of the seed while they equal it, so that the seeds of one setting form one group; a different value is a setting
SEED_FOLLOWERS = (("task", "pretrain_seed"),)


def without_seed(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration without the seed and the settings that follow it (:data:`SEED_FOLLOWERS`)."""
    seed = config.get("seed")
    seedless = {k: v for k, v in config.items() if k != "seed"}
    for section, key in SEED_FOLLOWERS:
        values = seedless.get(section)
        if isinstance(values, dict) and key in values and values[key] == seed:
            seedless[section] = {k: v for k, v in values.items() if k != key}
    return seedless


def context_config(config: dict[str, Any]) -> dict[str, Any]:
    """What is not a table row's business: the configuration without the seed (and what follows it), the attention
    section and the model's variant settings (what is left: sizes, data, training). Runs that share it are
    compared fairly."""
    context = {k: v for k, v in without_seed(config).items() if k != "attention"}
    context["model"] = {k: v for k, v in context.get("model", {}).items() if k not in MODEL_AXES}
    context["trainer"] = {k: v for k, v in context.get("trainer", {}).items() if k not in OBSERVING}
    return context


def without_budget(context: dict[str, Any]) -> dict[str, Any]:
    """A context without ``trainer.max_steps``: the same setting trained for another number of updates."""
    trainer = {k: v for k, v in context.get("trainer", {}).items() if k != "max_steps"}
    return {**context, "trainer": trainer}


def baseline_from_data(data: dict[str, Any]) -> dict[str, float]:
    """``{split: value}`` from a task's data facts: GLUE's ``majority_baseline.<split>`` or LRA's
    ``splits.<split>.majority_baseline``."""
    found = dict(data.get("majority_baseline") or {})
    for split, facts in (data.get("splits") or {}).items():
        if isinstance(facts, dict) and facts.get("majority_baseline") is not None:
            found.setdefault(split, facts["majority_baseline"])
    return {k: float(v) for k, v in found.items() if v is not None}


# ------------------------------------------------------------------------------------------- the file
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The record's JSON, or None when there is none or it cannot be read (the run itself moves an unreadable
    record aside: harness.run_folder)."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return raw if isinstance(raw, dict) else None


def write_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (stamped with ``updated``, in place) to the run folder's record.json, atomically."""
    path = Path(run_dir) / RECORD_FILE
    record["updated"] = now()
    write_json(path, record)
    return path


def is_completed(record: dict[str, Any] | None, config_hash: str) -> bool:
    return bool(record) and record.get("status") == "completed" and record.get("config_hash") == config_hash


def load_records(root: str | Path) -> list[RunRecord]:
    """Every readable run record under ``root`` (Hydra's and submitit's own folders skipped), each with
    ``run_dir`` the folder it was read from; unreadable ones are logged and skipped."""
    root = Path(root)
    found: list[RunRecord] = []
    if not root.is_dir():
        return found
    for path in sorted(root.rglob(RECORD_FILE)):
        if any(part.startswith("_hydra") or part == ".submitit" for part in path.relative_to(root).parts):
            continue
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            log.warning("skipping unreadable run record %s: %s", path, err)
            continue
        if isinstance(raw, dict):
            found.append(dataclasses.replace(RunRecord.from_json(raw), run_dir=str(path.parent)))
    return found


# ------------------------------------------------------------------------------ what the run is made on
def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def git_commit(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """The commit of the source tree and whether it had uncommitted changes, or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def host() -> dict[str, Any]:
    import torch  # here, not at the top: readers of records do not need torch

    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(), "platform": platform.platform(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
