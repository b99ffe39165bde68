"""A sweep's cells and its end: every cell says what became of it, the sweep says it once, and its exit code too.

Each cell (a Hydra job of ``python -m harness.run -m ...``) writes ``outcome.json`` into its Hydra job folder:
``completed``, ``skipped`` (completed before), ``failed``, ``invalid`` (its configuration, with the reason),
``locked`` (running in another process) or ``interrupted``, with its run folder. When the sweep ends, however
it ends, :class:`SweepSummary` (a Hydra callback, conf/config.yaml) and :func:`stopping_workers` print one line
per status with the run folders, write ``summary.json`` beside the cells, and :func:`exit_if_a_cell_failed`
makes ``harness.run`` exit 3 when a cell failed, was invalid or left no outcome (its process died), 75 when the
sweep was stopped.

A stop signal to the sweep's own process is passed on to the worker processes that are running a cell (Hydra's
joblib launcher), which checkpoint and return as a single run does (``harness.stop``); a ``STOP`` file in the
sweep's folder keeps every later cell from starting. With no cell running below it (cells on a cluster, whose
jobs go on), the sweep's process stops at once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness import stop
from harness.run_folder import LOCK_FILE
from zoo_io.atomic import write_json

log = logging.getLogger(__name__)
OUTCOME_FILE = "outcome.json"
SUMMARY_FILE = "summary.json"
STOP_FILE = "STOP"  # in the sweep's folder once it was asked to stop: later cells do not start
FAILING = ("failed", "invalid", "no outcome")
EXIT_CELLS_FAILED = 3  # not 1, which Hydra and Python use for their own errors (a bad override, a crash)


class _State:
    """The sweep run by this process (at most one): its folder, its planned cells, how it ended."""

    main_pid: int | None = None  # the process that called stopping_workers(): the sweep's parent
    folder: Path | None = None
    planned: list[list[str]] | None = None
    summary: dict[str, Any] | None = None


class Cell:
    """One cell's outcome file (written only in a sweep, by the main process of a run)."""

    def __init__(self, folder: Path, number: int | None, overrides: list[str], enabled: bool):
        self.folder, self.number, self.overrides, self.enabled = folder, number, overrides, enabled

    def write(self, status: str, reason: str | None = None, run_dir: str | None = None) -> None:
        if not self.enabled:
            return
        try:
            write_json(self.folder / OUTCOME_FILE, {"job": self.number, "status": status, "run_dir": run_dir,
                                                    "reason": reason, "overrides": self.overrides})
        except OSError as err:  # e.g. a full disk: the summary then lists the cell as "no outcome"
            log.error("could not write the cell's outcome to %s: %s", self.folder, err)


def planned_cells(config: DictConfig) -> list[list[str]] | None:
    """The override lists of every cell, as Hydra's basic sweeper expands them; None for another sweeper."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if "basic_sweeper" not in str(config.hydra.sweeper.get("_target_", "")):
            return None
        params = config.hydra.sweeper.get("params") or {}
        arguments = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
        return [cell for batch in batches for cell in batch]
    except Exception as err:  # the summary then lists the cells that reported
        log.debug("planned cells unknown: %s", err)
        return None


def summarise(folder: Path, planned: list[list[str]] | None) -> dict[str, Any]:
    """Every cell's outcome (a planned cell without one: "not started" or "no outcome") and the counts."""
    cells: dict[int, dict[str, Any]] = {}
    for path in sorted(folder.glob(f"*/{OUTCOME_FILE}")):
        try:
            outcome = json.loads(path.read_text())
            cells[int(outcome["job"])] = outcome | {"folder": str(path.parent)}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("unreadable cell outcome %s: %s", path, err)
    for number, overrides in enumerate(planned or []):
        if number not in cells:
            started = (folder / str(number)).is_dir()
            cells[number] = {"job": number, "status": "no outcome" if started else "not started",
                             "overrides": overrides, "run_dir": None,
                             "reason": "the job's process ended without reporting (killed?)" if started else None}
    ordered = [cells[n] for n in sorted(cells)]
    return {"sweep": str(folder), "counts": dict(Counter(c["status"] for c in ordered)), "cells": ordered}


def report(summary: dict[str, Any]) -> str:
    """The console's summary: the counts, then each cell, by the overrides that tell the cells apart."""
    counts, cells = summary["counts"], summary["cells"]
    shared = set.intersection(*(set(c["overrides"]) for c in cells)) if len(cells) > 1 else set()
    lines = [f"sweep {summary['sweep']}: {len(cells)} cell(s): "
             + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))]
    for cell in cells:
        where = cell.get("run_dir") or (f"job folder {cell['folder']}" if cell.get("folder") else "-")
        own = " ".join(o for o in cell["overrides"] if o not in shared) or "(the only cell)"
        lines.append(f"  {cell['status']:<12} {own}  ->  {where}"
                     + (f"\n               {cell['reason']}" if cell.get("reason") else ""))
    lines.append(f"(per cell: {summary['sweep']}/{SUMMARY_FILE})")
    return "\n".join(lines)


def _finish() -> None:
    """Summarise the sweep of this process once (idempotent)."""
    if _State.folder is None or _State.summary is not None:
        return
    _State.summary = summarise(_State.folder, _State.planned)
    try:
        write_json(_State.folder / SUMMARY_FILE, _State.summary)
    except OSError as err:
        log.error("could not write %s: %s", _State.folder / SUMMARY_FILE, err)
    print(report(_State.summary), file=sys.stderr, flush=True)


class SweepSummary(Callback):
    """Hydra callback: remembers the sweep's folder and cells when it starts, summarises it when it ends."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _State.folder = Path(str(config.hydra.sweep.dir))
        _State.planned = planned_cells(config)
        _State.summary = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _finish()


def _holds_a_run_lock(process: psutil.Process) -> bool:
    try:
        return any(Path(f.path).name == LOCK_FILE for f in process.open_files())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True


def _stop_sweep(signum: int, frame: FrameType | None) -> None:
    """The sweep parent's stop handler (only while no run is active in this process itself).

    Cells training in worker processes get the signal (each checkpoints and returns); the marker file stops every
    later cell before it starts, so the launcher ends normally and the summary says what stopped. Idle workers are
    never signalled: a worker that dies makes joblib's executor kill its busy siblings before they checkpoint.
    With no cell running anywhere below this process (cells on a cluster, or between two cells), it stops now.
    """
    name = signal.Signals(signum).name
    stop.note_request(name)
    if _State.folder is not None:
        with contextlib.suppress(OSError):
            (_State.folder / STOP_FILE).write_text(f"{name} received by the sweep's process {os.getpid()}\n")
    busy = [w for w in psutil.Process().children(recursive=True) if _holds_a_run_lock(w)]
    for worker in busy:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signum)
    if not busy:
        raise SystemExit(stop.EXIT_INTERRUPTED)
    log.warning("%s: passed on to the %d running cell(s); no other cell starts, the sweep ends after their "
                "checkpoints", name, len(busy))


_stop_sweep.chain = False  # never called back by a run's handler in this process (harness.stop)


def is_worker() -> bool:
    """Whether this process runs a cell for a sweep started by another process (a joblib or submitit job)."""
    return _State.main_pid != os.getpid()


def check_stop_marker(folder: Path) -> None:
    """In a cell: if the sweep was stopped, this process is asked to stop too (the cell does not start)."""
    marker = folder / STOP_FILE
    if marker.is_file():
        stop.note_request(f"the sweep was stopped ({marker.read_text().strip()})")


@contextlib.contextmanager
def stopping_workers() -> Iterator[None]:
    """Around ``harness.run``'s Hydra entry: stop signals reach the sweep's workers, the sweep is summarised."""
    _State.main_pid = os.getpid()
    installed = {}
    for name in stop.STOP_SIGNALS:
        number = getattr(signal, name)
        installed[number] = signal.signal(number, _stop_sweep)
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)
        _finish()


def exit_if_a_cell_failed() -> None:
    summary = _State.summary
    if summary is None:
        return
    counts = summary["counts"]
    if counts.get("interrupted") or counts.get("not started"):
        raise SystemExit(stop.EXIT_INTERRUPTED)
    if any(counts.get(status) for status in FAILING):
        raise SystemExit(EXIT_CELLS_FAILED)
