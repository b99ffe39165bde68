"""Changing a data file the way that fools a cache keyed on path, size or modification time."""
from __future__ import annotations

import os
from pathlib import Path


def rewrite_in_place(path: Path, old: bytes, new: bytes) -> None:
    """Replace the first ``old`` in ``path`` by ``new`` (as long), keeping the file's size and modification
    time: what a copy that preserves times (``cp -p``, ``rsync -t``) of a same-sized new version leaves."""
    assert len(old) == len(new), "the replacement must keep the file's size"
    data = path.read_bytes()
    assert old in data, f"{old!r} is not in {path}"
    stat = path.stat()
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
