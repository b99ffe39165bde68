"""Cached tensors on disk: written atomically, read with ``weights_only=True``, rebuilt when unreadable."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from zoo_io.atomic import torch_save


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
