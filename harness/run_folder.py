"""The run folder's integrity: one writer at a time, loud repairs, no litter.

- :class:`RunLock`: an OS lock (``flock``) on ``<run>/.lock``. The kernel releases it when its process dies,
  however it dies, so a crash never leaves a stale lock; the file only says who holds it (pid, host, start).
  The lock is held on an open descriptor whose inode is checked against the path after every update
  (:meth:`RunLock.verify`): a deleted or replaced lock file is re-created and re-locked (a repair), or, where
  another process locked the new file first, this one stops without writing. A second process that finds the
  record "running" by a live process of this host refuses too, so a deleted ``.lock`` never lets two writers in.
- :class:`SpaceReserve`: a pre-allocated file the run frees when the disk is full, so its record can still say
  "failed: no space left on device".
- :class:`Repairs`: every repair made to a run folder (a damaged record moved aside, a checkpoint that failed
  its digest, metric lines restored, a resume) is logged as a warning and listed in ``record.repairs``.
- :func:`remove_stale_temporaries`: half-written ``.<name>.*.tmp`` files that a crash left behind.
- :func:`read_record_or_repair`: the previous record, or None; an unreadable one is moved aside, not ignored.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from harness.run_record import RECORD_FILE, now
from zoo_io.atomic import DISK_FULL_ERRNOS, temporary_name_pattern

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

    def __init__(self, run_dir: str | Path, repairs: Repairs | None = None):
        self.path = Path(run_dir) / LOCK_FILE
        self.repairs = repairs
        self._fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return "another process"
        return f"process {info.get('pid')} on {info.get('host')} (started {info.get('started')})"

    def _lock_file(self) -> int:
        """A descriptor holding the flock of the file now at ``self.path``; RunLockedError if another has it."""
        for _ in range(10):  # the file can be deleted or replaced between open and flock: then lock the new one
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise OSError(err.errno, f"cannot lock the run folder {self.path.parent} ({err.strerror}): "
                                  "its storage is read-only; a completed run is skipped there, any other needs a "
                                  "writable run.root") from None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent} is being written by {self.holder()}; wait for it to finish (a completed "
                    "run is then skipped) or stop that process: two writers would corrupt the run folder"
                ) from None
            if self._names(fd):
                os.ftruncate(fd, 0)
                info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now()}
                os.pwrite(fd, json.dumps(info).encode(), 0)
                return fd
            os.close(fd)
        raise RunLockedError(f"{self.path} keeps being replaced while this process locks it")

    def _names(self, fd: int) -> bool:
        """Whether ``self.path`` still names the file open on ``fd`` (not deleted, not replaced)."""
        try:
            on_disk, held = os.stat(self.path), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def acquire(self) -> None:
        self._fd = self._lock_file()

    def verify(self) -> None:
        """Check that this process still holds the folder's lock file; re-create it if it vanished (a repair).
        Raises RunLockedError when another process has locked the folder meanwhile: this one must stop."""
        if self._fd is None or self._names(self._fd):
            return
        lost = self._fd
        self._fd = self._lock_file()  # RunLockedError: someone else holds the new file
        os.close(lost)
        if self.repairs is not None:
            self.repairs.add(f"the run folder's {LOCK_FILE} was deleted or replaced during the run", self.path,
                             "re-created and locked again by the running process")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_writer(record: dict[str, Any] | None) -> str | None:
    """The live process of this host that a "running" record names as its writer, or None.

    Backs up the lock: if ``.lock`` was deleted under a running process, a second one can take the new file,
    but the record still names the first. A pid reused by a later process is told apart by its start time.
    """
    if not record or record.get("status") != "running":
        return None
    host, started = record.get("host") or {}, record.get("started")
    pid = host.get("pid")
    if not pid or pid == os.getpid() or host.get("hostname") != socket.gethostname() or not started:
        return None
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if created > datetime.fromisoformat(started).timestamp() + 1:  # "started" has whole seconds
        return None
    return f"process {pid} on {host.get('hostname')} (started {started})"


class SpaceReserve:
    """A pre-allocated file in the run folder, freed when the disk is full so the failure can be recorded."""

    NAME = ".space-reserve"

    def __init__(self, run_dir: str | Path, size: int = 256 << 10):  # a record takes tens of KiB
        self.path, self.size = Path(run_dir) / self.NAME, size

    def allocate(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError as err:  # a full disk now fails the run's first write with the clear error instead
            log.warning("could not reserve %d bytes in %s (%s)", self.size, self.path.parent, err)
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def is_disk_full(err: BaseException) -> bool:
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        err = err.__cause__ or err.__context__
    return False


def remove_stale_temporaries(run_dir: str | Path, repairs: Repairs) -> list[Path]:
    """Delete the temporaries of atomic writes that a crash cut short, and checkpoint digests whose checkpoint
    is gone (a kill between deleting the two files); only the lock holder may call this."""
    run_dir = Path(run_dir)
    checkpoints = run_dir / "checkpoints"
    stale = sorted(p for folder in (run_dir, checkpoints) if folder.is_dir()
                   for p in folder.glob(temporary_name_pattern()) if p.is_file())
    if checkpoints.is_dir():
        stale += sorted(p for p in checkpoints.glob("*.pt.sha256") if not p.with_suffix("").exists())
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        repairs.add("stale temporary files of interrupted writes or deletions", run_dir, "removed",
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
