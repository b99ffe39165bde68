"""Cached tensors on disk: written atomically, read with ``weights_only=True``, rebuilt when unreadable; and the
content keys every loader names its cache by.

A cache key covers the *content* of every file the cached object was parsed from (sha256 of the bytes), never
just a path or a modification time: a file replaced in place (same name, size and mtime) is a new key, so a run
can never train on tensors of data that is no longer there. Hashing is done on every load (sha256 reads about
1 GB/s): a stat-based shortcut would bring back exactly the staleness this key exists to prevent.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from zoo_io.atomic import torch_save, write_json


def save_cached(path: str | Path, obj: Any) -> None:
    torch_save(path, obj)


def load_cached(path: str | Path) -> Any | None:
    """The cached object, or None when absent or unreadable (then it is rebuilt)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged cache is not an error: it is rebuilt
        reason = f"{type(err).__name__}: {err}"
        warnings.warn(f"ignoring unreadable cache file {path} ({reason}); rebuilding it", stacklevel=2)
        return None


def file_digest(path: str | Path) -> str:
    """sha256 of the bytes of ``path``."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class DigestMemo:
    """Remembered file digests, keyed on what changes whenever the file's bytes do: device, inode, size, mtime
    and ctime in nanoseconds (a rewrite in place changes ctime, which no user can set back). Data sets of many
    small files (LRA's Pathfinder, IMDB) are then hashed once, not on every run; kept as one JSON file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.known: dict[str, str] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}
        self.changed = False

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_dev}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
        if key not in self.known:
            self.known[key], self.changed = file_digest(path), True
        return self.known[key]

    def save(self) -> None:
        if self.changed:
            with contextlib.suppress(OSError):  # a memo that cannot be written only costs time
                write_json(self.path, self.known)
            self.changed = False


def files_digest(files: Mapping[str, str | Path] | Iterable[str | Path], root: str | Path | None = None,
                 memo: DigestMemo | None = None) -> str:
    """One digest of several files' contents and their names: a mapping's keys (``{"train": path}``), else
    each path relative to ``root`` (or its position when there is no root). Where a file sits on disk is not
    part of it, so two copies of the same data share their caches. ``memo`` skips re-reading unchanged files."""
    if isinstance(files, Mapping):
        named = [(str(name), Path(p)) for name, p in files.items()]
    elif root is not None:
        named = [(Path(p).relative_to(root).as_posix(), Path(p)) for p in files]
    else:
        named = [(str(i), Path(p)) for i, p in enumerate(files)]
    blob = hashlib.sha256()
    for name, path in named:
        blob.update(f"{name}\0{memo.digest(path) if memo else file_digest(path)}\n".encode())
    if memo is not None:
        memo.save()
    return blob.hexdigest()


def content_key(files: Mapping[str, str | Path] | Iterable[str | Path], root: str | Path | None = None,
                **options: Any) -> str:
    """The cache key of an object parsed from ``files`` (see :func:`files_digest`) with ``options``."""
    blob = json.dumps({"files": files_digest(files, root), **options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
