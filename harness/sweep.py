"""A sweep's cells and its end: every cell says what became of it, the sweep says it once, and its exit code too.

Each cell (a Hydra job of ``python -m harness.run -m ...``) writes ``outcome.json`` into its Hydra job folder:
``completed``, ``skipped`` (completed before), ``failed``, ``invalid`` (its configuration, with the reason),
``locked`` (running in another process) or ``interrupted``, with its run folder. When the sweep ends, however
it ends, :class:`SweepSummary` (a Hydra callback, conf/config.yaml) and :func:`stopping_workers` print one line
per status with the run folders, write ``summary.json`` beside the cells, and :func:`exit_if_a_cell_failed`
makes ``harness.run`` exit 1 when a cell failed, was invalid or left no outcome (its process died).

A stop signal to the sweep's own process is passed on to its worker processes (Hydra's joblib launcher), which
checkpoint and exit as a single run does (``harness.stop``); the sweep then starts no other cell and exits 75.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
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
FAILING = ("failed", "invalid", "no outcome")
WORKER_GRACE_SECONDS = 600.0  # how long the sweep waits for its workers to checkpoint after a stop signal


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


def _forward_to_workers(signum: int, frame: FrameType | None) -> None:
    """The sweep parent's stop handler: pass the signal on, wait until no worker holds a run folder (each
    checkpoints and exits), then stop the rest of the workers and the sweep."""
    stop.note_request(signal.Signals(signum).name)
    workers = psutil.Process().children()
    if not workers:  # cells run in this process: the next one sees the request and does not start
        return
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.send_signal(signum)
    log.warning("%s: passed on to the sweep's %d worker process(es); waiting for their runs to checkpoint",
                signal.Signals(signum).name, len(workers))
    deadline = time.monotonic() + WORKER_GRACE_SECONDS
    while (busy := [w for w in workers if _holds_a_run_lock(w)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in busy:
        log.error("worker %d did not stop within %.0f s: killed (its run resumes from its last checkpoint)",
                  worker.pid, WORKER_GRACE_SECONDS)
    for worker in workers:  # idle workers and the launcher's helpers (a resource tracker ignores SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(workers, timeout=10)
    raise SystemExit(stop.EXIT_INTERRUPTED)


_forward_to_workers.chain = False  # never called back by a run's handler in this process (harness.stop)


@contextlib.contextmanager
def stopping_workers() -> Iterator[None]:
    """Around ``harness.run``'s Hydra entry: stop signals reach the sweep's workers, the sweep is summarised."""
    _State.main_pid = os.getpid()
    installed = {}
    for name in stop.STOP_SIGNALS:
        number = getattr(signal, name)
        installed[number] = signal.signal(number, _forward_to_workers)
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)
        _finish()


def stop_after_interruption(multirun: bool) -> None:
    """A sweep's worker process that was interrupted exits now (its parent is stopping the sweep)."""
    if multirun and _State.main_pid != os.getpid():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.EXIT_INTERRUPTED)


def exit_if_a_cell_failed() -> None:
    summary = _State.summary
    if summary is None:
        return
    counts = summary["counts"]
    if counts.get("interrupted") or counts.get("not started"):
        raise SystemExit(stop.EXIT_INTERRUPTED)
    if any(counts.get(status) for status in FAILING):
        raise SystemExit(1)
