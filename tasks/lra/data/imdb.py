"""Text: IMDB reviews as bytes, from the ``aclImdb`` distribution (``{train,test}/{pos,neg}/<id>_<rating>.txt``).

Labels: ``pos`` 1, ``neg`` 0 (the ``unsup`` folder is ignored). Reviews are read under the rule every loader
shares (:mod:`tasks.data.textfile`) and encoded byte-level (their UTF-8 bytes + 1), truncated to ``max_len`` as
LRA's pipeline does; an empty review is an error. Files are taken in the order of their numeric id, so the
examples and their ids are the same on every machine.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tasks.data.textfile import format_error, read_text
from tasks.lra.data.examples import Examples, encode_bytes
from tasks.lra.data.layout import find_folder

RELEASE_FOLDER = "aclImdb"
LABELS = {"neg": 0, "pos": 1}
N_CLASSES = 2
_NAME = re.compile(r"(\d+)(?:_\d+)?\.txt")
EXPECTED = "the text of one review"


def _review_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"missing folder {str(folder)!r}: expected IMDB reviews as <id>_<rating>.txt files")
    files = [p for p in folder.iterdir() if p.suffix == ".txt"]
    if not files:
        raise FileNotFoundError(f"no *.txt reviews in {str(folder)!r}: expected IMDB reviews as <id>_<rating>.txt")

    def order(path: Path) -> tuple[int, str]:
        match = _NAME.fullmatch(path.name)
        return (int(match.group(1)) if match else -1, path.name)

    return sorted(files, key=order)


def read_imdb_split(folder: Path, max_len: int | None = None) -> Examples:
    """One of ``aclImdb/train`` or ``aclImdb/test``: its pos and neg reviews."""
    sequences, labels, ids = [], [], []
    for polarity, label in LABELS.items():
        for path in _review_files(folder / polarity):
            text = read_text(path, EXPECTED)
            if not text:
                raise format_error(path, 1, "the review is empty", EXPECTED)
            sequences.append(encode_bytes(text.encode("utf-8"), max_len))
            labels.append(label)
            ids.append(f"{folder.name}/{polarity}/{path.name}")
    return Examples((sequences,), np.array(labels, dtype=np.int64), ids)


def source_files(root: str | Path) -> list[Path]:
    """The files :func:`read_imdb` parses (what its cache is keyed on)."""
    folder = find_folder(root, RELEASE_FOLDER, "train")
    return [path for split in ("train", "test") for polarity in LABELS
            for path in _review_files(folder / split / polarity)]


def read_imdb(root: str | Path, max_len: int | None = None) -> dict[str, Examples]:
    """``train`` and ``test`` from an ``aclImdb`` folder under ``root`` (or ``root`` itself)."""
    folder = find_folder(root, RELEASE_FOLDER, "train")
    return {split: read_imdb_split(folder / split, max_len) for split in ("train", "test")}
