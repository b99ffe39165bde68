"""Pathfinder (32x32) and Path-X (Pathfinder-128) from the LRA release's PNGs and metadata files.

Layout: ``pathfinder<side>/<difficulty>/imgs/<k>/sample_<i>.png`` and ``.../metadata/<k>.npy``; despite
the extension each metadata file is TEXT, one line per image: ``imgs/<k> sample_<i>.png <i> <label> ...``
(further columns are the generator's parameters and are ignored). Metadata files are read in numeric
order of ``k``, lines in file order. Empty (zero-byte) images are skipped, as the release holds one;
a missing or unreadable image, a wrong size or a label other than 0/1 is an error naming the file. The
metadata is read under the rule every loader shares (:mod:`tasks.data.textfile`). Pixel value p becomes
token p + 1, row by row.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tasks.data.textfile import format_error, read_lines
from tasks.lra.data.examples import BYTE_OFFSET, Examples
from tasks.lra.data.layout import find_folder

DIFFICULTIES = ("curv_baseline", "curv_contour_length_9", "curv_contour_length_14")
N_CLASSES = 2
_METADATA_NAME = re.compile(r"(\d+)\.npy")
EXPECTED = "lines 'imgs/<k> sample_<i>.png <i> <label 0|1> ...'"


def release_folder(side: int, difficulty: str) -> str:
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown Pathfinder difficulty {difficulty!r}; valid choices: {list(DIFFICULTIES)}")
    return f"pathfinder{side}/{difficulty}"


def metadata_files(folder: Path) -> list[Path]:
    files = [p for p in (folder / "metadata").iterdir() if _METADATA_NAME.fullmatch(p.name)]
    if not files:
        raise FileNotFoundError(
            f"no metadata/<k>.npy files in {str(folder)!r}: expected one text file per image folder"
        )
    return sorted(files, key=lambda p: int(_METADATA_NAME.fullmatch(p.name).group(1)))


def read_image(path: Path, side: int) -> np.ndarray:
    """``[side * side]`` uint8 grey pixels of one PNG, row by row."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: unreadable image ({error}); expected a {side}x{side} PNG") from error
    if pixels.shape != (side, side):
        raise ValueError(f"{path}: image is {pixels.shape[1]}x{pixels.shape[0]}; expected {side}x{side}")
    return pixels.reshape(-1)


def source_files(root: str | Path, side: int = 32, difficulty: str = "curv_contour_length_14") -> list[Path]:
    """The files :func:`read_pathfinder` may parse (what its cache is keyed on): the metadata and every file
    under ``imgs/`` (listing them all is cheaper than parsing the metadata to pick the listed ones)."""
    folder = find_folder(root, release_folder(side, difficulty), "metadata")
    images = sorted(p for p in (folder / "imgs").rglob("*") if p.is_file()) if (folder / "imgs").is_dir() else []
    return [*metadata_files(folder), *images]


def read_pathfinder(root: str | Path, side: int = 32, difficulty: str = "curv_contour_length_14") -> Examples:
    """Every non-empty image listed in the metadata, in metadata order (the caller splits them)."""
    folder = find_folder(root, release_folder(side, difficulty), "metadata")
    sequences, labels, ids = [], [], []
    for meta in metadata_files(folder):
        for lineno, line in read_lines(meta, EXPECTED):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4 or fields[3] not in ("0", "1"):
                raise format_error(meta, lineno, f"found {line!r}", EXPECTED)
            image_path = folder / fields[0] / fields[1]
            if not image_path.is_file():
                raise FileNotFoundError(f"{meta}:{lineno}: lists {str(image_path)!r}, which does not exist")
            if image_path.stat().st_size == 0:
                continue  # the release's known empty image
            sequences.append(read_image(image_path, side).astype(np.int16) + BYTE_OFFSET)
            labels.append(int(fields[3]))
            ids.append(f"{fields[0]}/{fields[1]}")
    if not labels:
        raise ValueError(f"{folder}: the metadata lists no non-empty images")
    return Examples((sequences,), np.array(labels, dtype=np.int64), ids)
