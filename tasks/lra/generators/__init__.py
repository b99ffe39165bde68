"""Seeded generators that write LRA data in the official file formats, so the same loaders read them.

Each ``write_<task>(out, seed, ...)`` writes plain files under ``out`` in the release's layout; the task
(``tasks.lra.source``) generates into a staging folder and renames it into place, so readers never see a
half-written dataset. Each module's docstring describes its procedure; docs/lra.md summarises them.
"""
from __future__ import annotations

from pathlib import Path


def write_file(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path``, creating its folders (UTF-8 for text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
