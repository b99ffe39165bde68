"""The paper's numbers (``results/paper/<table>.csv``): read as text, so ``OOM`` and blanks survive."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[2] / "results" / "paper"
NOT_IN_PAPER = "(not in the paper)"  # the label of a row the paper does not have


def read_paper(folder: str | Path, file: str | None) -> pd.DataFrame | None:
    """The table's CSV as strings (blank cells ""), or None when the table has no paper file."""
    if file is None:
        return None
    path = Path(folder) / file
    if not path.is_file():
        raise FileNotFoundError(f"the paper's numbers are missing: {path} (see results/paper/README.md)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "source" not in frame.columns:
        raise ValueError(f"{path}: no 'source' column; every row must say where its numbers come from")
    return frame


def paper_number(text: str | None) -> float | None:
    """A paper cell as a number; None for a blank, ``OOM`` or anything else that is not a number."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
