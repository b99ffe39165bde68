"""Atomic writes: write a temporary file in the same folder, fsync it, then ``os.replace`` it onto the target.

Readers never see a partial file; a crash leaves at most a ``.<name>.*.tmp`` temporary beside the target,
which the next run of that folder removes (``harness.run``). A fault point (``zoo_io.faults``) sits between
the write and the rename, so tests can SIGKILL a process exactly there.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zoo_io.faults import fault_point

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".tmp"


class DiskFullError(OSError):
    """No space (or quota) left where a file was being written; the message names the file."""


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(err: OSError, path: str | Path) -> DiskFullError:
    """``err`` (ENOSPC or EDQUOT) as a DiskFullError that says which file and how much space is left."""
    try:
        stats = os.statvfs(Path(path).parent)
        free = f"{stats.f_bavail * stats.f_frsize / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    return DiskFullError(err.errno, f"no space left on device while writing {path} ({free}); free some space or "
                         "choose another run.root / data.cache_dir, then run the same command again to resume",
                         str(path))


@contextlib.contextmanager
def naming_a_full_disk(path: str | Path) -> Iterator[None]:
    """A full disk met inside raises :class:`DiskFullError` naming ``path``, not a bare or a torch error."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL_ERRNOS and not isinstance(err, DiskFullError):
            raise disk_full(err, path) from None  # the chain (a torch stream error) only obscures it
        raise


def temporary_name_pattern(name: str = "*") -> str:
    """The glob of the temporaries that :func:`atomic_write` leaves for a target called ``name``."""
    return f".{name}.*{TEMP_SUFFIX}"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path``; readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with naming_a_full_disk(path):
            write(tmp)
            fault_point("replace", path.name)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str | Path, text: str, newline: str | None = None) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def torch_save(path: str | Path, obj: Any) -> None:
    import torch  # here, not at import: tools that never save tensors start without torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a Python file: a full disk raises OSError(ENOSPC), not a torch stream error
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
