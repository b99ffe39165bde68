"""``python -m harness.export_records SOURCE DEST [--task PREFIX ...] [--scale S ...]``: copy what the report reads of
each completed run (its ``record.json`` and ``metrics.jsonl``; never checkpoints, logs or data) from a runs folder
into another, at the same relative place, so that a report can be committed with its evidence and rebuilt from it
(``python -m harness.report --results <DEST's parent>``; docs/reproduce.md, "Committed evidence").

Only completed, placed records are copied (a failed or running run is not evidence); a record already in DEST with
the same content is left alone, a changed one replaced atomically. The copy of a record says where it came from in
nothing but its ``run_dir`` (the report reads a record where it finds it).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.metrics_log import METRICS_FILE
from harness.run_record import RECORD_FILE, load_records
from zoo_io.atomic import atomic_write

COPIED = (RECORD_FILE, METRICS_FILE)


def export(source: Path, dest: Path, tasks: Sequence[str] = (), scales: Sequence[str] = ()) -> list[Path]:
    """Copy the evidence of every completed run under ``source`` (of tasks starting with one of ``tasks`` and of
    ``scales``, when given) to the same place under ``dest``; returns the files written."""
    written = []
    for record in load_records(source):
        if record.status != "completed" or not record.is_placed:
            continue
        if tasks and not any(record.task.startswith(t) for t in tasks):
            continue
        if scales and record.scale not in scales:
            continue
        target = dest / record.folder.relative_to(source)
        for name in COPIED:
            path = record.folder / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            if (target / name).is_file() and (target / name).read_bytes() == data:
                continue
            target.mkdir(parents=True, exist_ok=True)
            atomic_write(target / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
            written.append(target / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.export_records", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a runs folder (e.g. results/runs)")
    parser.add_argument("dest", type=Path, help="where the copies go (e.g. docs/results/runs)")
    parser.add_argument("--task", nargs="+", default=[], help="task prefixes to copy (e.g. recall/); default: all")
    parser.add_argument("--scale", nargs="+", default=[], help="scales to copy; default: all")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a folder (a runs folder holds <task>/<backend>/<scale>/<run>/record.json)")
    written = export(args.source, args.dest, args.task, args.scale)
    print(f"{len(written)} file(s) written under {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
