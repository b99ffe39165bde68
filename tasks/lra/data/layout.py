"""Finding a dataset's folder under ``data.path``, whatever layout the copy has.

The LRA release unpacks to ``lra_release/lra_release/<dataset>`` (two nested folders of the same name),
some copies are flattened to ``lra_release/<dataset>`` or ``<dataset>``, and users often point straight at
the dataset folder itself. All of these are accepted; anything else fails listing the paths tried.
"""
from __future__ import annotations

from pathlib import Path

RELEASE_PREFIXES = ("", "lra_release", "lra_release/lra_release")


def candidate_folders(root: Path, relative: str) -> list[Path]:
    """Where ``relative`` (e.g. ``pathfinder32/curv_contour_length_14``) may sit below or at ``root``."""
    root, parts = Path(root), Path(relative).parts
    candidates = [root / prefix / relative for prefix in RELEASE_PREFIXES]
    # root may already be inside the dataset: .../pathfinder32 or .../pathfinder32/curv_contour_length_14
    for i in range(1, len(parts) + 1):
        if root.parts[-i:] == parts[:i]:
            candidates.append(root.joinpath(*parts[i:]))
    return list(dict.fromkeys(candidates))


def find_folder(root: str | Path, relative: str, must_contain: str) -> Path:
    """The folder for ``relative`` under ``root`` that holds ``must_contain`` (a file or folder name)."""
    candidates = candidate_folders(Path(root), relative)
    for folder in candidates:
        if (folder / must_contain).exists():
            return folder
    tried = "\n  ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no {relative!r} folder holding {must_contain!r} under data path {str(root)!r}; tried:\n  {tried}\n"
        f"expected the LRA release layout (lra_release/lra_release/{relative}) or a flattened copy"
    )


def require_file(path: Path, what: str) -> Path:
    """``path`` itself, or a FileNotFoundError that says what the file should have been."""
    if not path.is_file():
        raise FileNotFoundError(f"missing file {str(path)!r}: expected {what}")
    return path
