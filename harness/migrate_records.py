"""``python -m harness.migrate_records [RUNS ...]``: bring run records written by older versions of the harness up
to the current one, once, in place (atomically; ``updated`` kept).

Version 1 records get ``majority_baseline`` from their data facts; records before version 3 get ``variant``
(composed from ``conf/`` as the run would have), and every record before version 4 gets ``group``, ``context`` and
``context_any_budget`` (:func:`harness.variants.placement`). The report reads only these fields, so it leaves an
unmigrated record out and names this command. A current record whose ``group`` or ``context`` is not what
:func:`~harness.variants.placement` gives now is placed again: GLUE fine-tunings written before a setting that
follows the seed (``task.pretrain_seed``) was left out of both had one group per seed, so the report showed
one seed a cell.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.compose import register_configs
from harness.run_record import (
    RECORD_FILE,
    RECORD_VERSION,
    RunRecord,
    baseline_from_data,
    load_records,
    read_record,
)
from harness.variants import Defaults, placement, placement_hashes
from zoo_io.atomic import write_json


def migrate(record: RunRecord, defaults: Defaults) -> RunRecord:
    """``record`` as the current version writes it."""
    found = placement(record.task, record.backend, record.scale, record.config, defaults)
    if record.variant is not None:  # recorded when it ran: it stays
        found["variant"] = record.variant
    return dataclasses.replace(record, **found, version=RECORD_VERSION,
                               majority_baseline=record.majority_baseline or baseline_from_data(record.data))


def misplaced(record: RunRecord) -> bool:
    """Whether the record's group or context differ from what its config gives now (they hash the config, so
    composing ``conf/`` is not needed to tell)."""
    return any(getattr(record, key) != value for key, value in placement_hashes(record.config).items())


def migrate_folder(root: Path, dry_run: bool = False) -> list[Path]:
    """Migrate every record under ``root`` older than the current version, or placed by older code; the run
    folders changed."""
    defaults, changed = Defaults(), []
    for record in load_records(root):
        if record.version >= RECORD_VERSION and record.is_placed and not misplaced(record):
            continue
        if not dry_run:  # the record keeps the run_dir it states (where it ran), not where it was read
            stated = (read_record(record.folder) or {}).get("run_dir") or record.run_dir
            write_json(record.folder / RECORD_FILE,
                       dataclasses.replace(migrate(record, defaults), run_dir=stated).to_json())
        changed.append(record.folder)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.migrate_records", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, default=[Path("results/runs")],
                        help="folders of run records (default: results/runs)")
    parser.add_argument("--dry-run", action="store_true", help="list the records to migrate; change nothing")
    args = parser.parse_args(argv)
    register_configs()
    for root in args.runs:
        if not root.is_dir():
            parser.error(f"{root} is not a folder of run records")
        changed = migrate_folder(root, args.dry_run)
        verb = "to migrate" if args.dry_run else "migrated"
        print(f"{root}: {len(changed)} record(s) {verb} to version {RECORD_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
