"""Atomic writes: write a temporary file in the same folder, fsync it, then ``os.replace`` it onto the target.

Readers never see a partial file; a crash leaves at most a ``.<name>.*.tmp`` temporary beside the target,
which the next run of that folder removes (``harness.run``). A fault point (``zoo_io.faults``) sits between
the write and the rename, so tests can SIGKILL a process exactly there.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo_io.faults import fault_point

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".tmp"


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
        write(tmp)
        fault_point("replace", path.name)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsynced(tmp: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())


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
        torch.save(obj, tmp)
        _fsynced(tmp)

    atomic_write(path, write)
