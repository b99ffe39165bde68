"""Retrieval: ACL Anthology Network document pairs from ``tsv_data/new_aan_pairs.{train,eval,test}.tsv``.

No header; five tab-separated columns ``label id1 id2 text1 text2``. The label is 0 or 1 and may be
written ``1.0``/``0.0``. Both texts are encoded byte-level (byte + 1), each truncated to ``max_len``
(LRA: 4000 per document). Label 1: the first paper cites the second. The bytes are read under the rule every
loader shares (:mod:`tasks.data.textfile`); an empty text is an error, as is a file with no example.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.textfile import format_error, read_lines
from tasks.lra.data.examples import Examples, encode_bytes
from tasks.lra.data.layout import find_folder, require_file

RELEASE_FOLDER = "tsv_data"
SPLIT_FILES = {
    "train": "new_aan_pairs.train.tsv", "valid": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"
}
COLUMNS = ("label", "id1", "id2", "text1", "text2")
N_CLASSES = 2
EXPECTED = "rows of 5 tab-separated columns: label (0/1 or 0.0/1.0), id1, id2, text1, text2 (both texts non-empty)"


def parse_label(text: str) -> int | None:
    """0 or 1 from ``0``, ``1``, ``0.0`` or ``1.0``; None for anything else."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def read_aan_tsv(path: str | Path, max_len: int | None = None) -> Examples:
    path = require_file(Path(path), "an AAN pairs TSV with columns label id1 id2 text1 text2 and no header")
    first, second, labels, ids = [], [], [], []
    last = 0
    for lineno, line in read_lines(path, EXPECTED):
        last = lineno
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(COLUMNS):
            raise format_error(path, lineno, f"found {len(fields)} tab-separated columns, not {len(COLUMNS)}",
                               EXPECTED)
        label = parse_label(fields[0])
        if label is None:
            raise format_error(path, lineno, f"label {fields[0]!r} is not 0 or 1", EXPECTED)
        empty = [name for name, text in zip(COLUMNS[3:], fields[3:]) if not text]
        if empty:
            problem = f"{' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty (an empty example)"
            raise format_error(path, lineno, problem, EXPECTED)
        # the tokens are the UTF-8 bytes, exactly as in the file (strict decoding round-trips)
        first.append(encode_bytes(fields[3].encode("utf-8"), max_len))
        second.append(encode_bytes(fields[4].encode("utf-8"), max_len))
        labels.append(label)
        ids.append(f"{path.name}:{lineno}")
    if not labels:
        raise format_error(path, last + 1, "end of file with no example", EXPECTED)
    return Examples((first, second), np.array(labels, dtype=np.int64), ids)


def source_files(root: str | Path) -> list[Path]:
    """The files :func:`read_aan` parses (what its cache is keyed on)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return [folder / name for name in SPLIT_FILES.values()]


def read_aan(root: str | Path, max_len: int | None = None) -> dict[str, Examples]:
    """train/val/test (the release's ``eval`` file is the validation split)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return {split: read_aan_tsv(folder / name, max_len) for split, name in SPLIT_FILES.items()}
