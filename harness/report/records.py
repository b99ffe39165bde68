"""The runs as the report reads them: every placed record under the runs folder (:class:`RunRecord`, version 4 on),
and a run's metrics log. Runs of one ``group`` differ only by seed, so their mean and spread are the seeds'."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from harness.metrics_log import METRICS_FILE
from harness.run_record import RunRecord, load_records

log = logging.getLogger(__name__)

MIGRATE = "python -m harness.migrate_records"


def placed_records(root: str | Path) -> list[RunRecord]:
    """The records under ``root`` that state their place in the tables; one written by older code is left out
    with a warning that names the command that brings it up to date (once)."""
    records = load_records(root)
    old = [r for r in records if not r.is_placed]
    if old:
        log.warning("%d run record(s) under %s were written by an older version (e.g. %s) and are left out of the "
                    "report: run `%s %s` once", len(old), root, old[0].folder, MIGRATE, root)
    return [r for r in records if r.is_placed]


def curves(record: RunRecord) -> pd.DataFrame:
    """The run's metrics log (one row per logged step); empty when there is none."""
    return read_metrics_log(record.folder / METRICS_FILE)


def read_metrics_log(path: Path) -> pd.DataFrame:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    return pd.DataFrame(rows)
