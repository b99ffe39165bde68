"""Atomic writes of the diagnostics' tables and figures (a reader never sees half a file)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from zoo_io.atomic import atomic_write


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return Path(path)


def save_figure(figure: Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=Path(path).suffix[1:] or "png", dpi=120))
    return Path(path)
