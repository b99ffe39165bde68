"""The run folder's integrity: one writer at a time, loud repairs, no litter.

- :class:`RunLock`: an OS lock (``flock``) on ``<run>/.lock``. The kernel releases it when its process dies,
  however it dies, so a crash never leaves a stale lock; the file only says who holds it (pid, host, start).
- :class:`Repairs`: every repair made to a run folder (a damaged record moved aside, a checkpoint that failed
  its digest, metric lines restored, a resume) is logged as a warning and listed in ``record.repairs``.
- :func:`remove_stale_temporaries`: half-written ``.<name>.*.tmp`` files that a crash left behind.
- :func:`read_record_or_repair`: the previous record, or None; an unreadable one is moved aside, not ignored.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from harness.records import RECORD_FILE, now
from zoo_io.atomic import temporary_name_pattern

log = logging.getLogger(__name__)
LOCK_FILE = ".lock"
DAMAGED = "damaged"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder: this one must not write beside it."""


class Repairs:
    """The repairs of one run, over all its segments; each is logged loudly as it is made."""

    def __init__(self, earlier: list[dict[str, Any]] | None = None):
        self.items: list[dict[str, Any]] = list(earlier or [])

    def add(self, what: str, path: str | Path | None, action: str, **details: Any) -> None:
        item = {"what": what, "path": str(path) if path is not None else None, "action": action,
                "at": now(), **details}
        log.warning("repair: %s%s; %s", what, f" ({path})" if path is not None else "", action)
        self.items.append(item)

    def merge(self, earlier: list[dict[str, Any]]) -> None:
        """Put repairs known from elsewhere (a checkpoint's copy) first, without duplicates."""
        self.items = [r for r in earlier if r not in self.items] + self.items


class RunLock:
    """``with RunLock(run_dir):`` holds the folder for this process, or raises RunLockedError at once."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return "another process"
        return f"process {info.get('pid')} on {info.get('host')} (started {info.get('started')})"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is being written by {self.holder()}; wait for it to finish (a completed run "
                "is then skipped) or stop that process: two writers would corrupt the run folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": now()}).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(run_dir: str | Path, repairs: Repairs) -> list[Path]:
    """Delete the temporaries of atomic writes that a crash cut short (only the lock holder may call this)."""
    run_dir = Path(run_dir)
    stale = sorted(p for folder in (run_dir, run_dir / "checkpoints") if folder.is_dir()
                   for p in folder.glob(temporary_name_pattern()) if p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        repairs.add("stale temporary files of interrupted writes", run_dir, "removed",
                    files=[str(p.relative_to(run_dir)) for p in stale])
    return stale


def move_aside(path: Path, reason: str) -> Path:
    """Move a damaged file into ``damaged/`` beside it, with the reason in ``<name>.reason.txt``."""
    folder = path.parent / DAMAGED
    folder.mkdir(exist_ok=True)
    stamp = now().replace(":", "")
    target, n = folder / f"{path.name}.{stamp}", 1
    while target.exists():  # two damaged copies within a second keep both
        target, n = folder / f"{path.name}.{stamp}-{n}", n + 1
    os.replace(path, target)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
    return target


def read_record_or_repair(run_dir: str | Path, repairs: Repairs) -> dict[str, Any] | None:
    """The run's record, or None when there is none; an unreadable record is moved aside and reported."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
        return record
    except (ValueError, UnicodeDecodeError) as err:
        reason = f"{RECORD_FILE} is unreadable ({type(err).__name__}: {err})"
        target = move_aside(path, reason)
        repairs.add(reason, path, f"moved to {target.relative_to(path.parent)}; the run is resumed from its "
                    "checkpoints (or redone) and writes a new record")
        return None
