"""Retrieval: ACL Anthology Network document pairs from ``tsv_data/new_aan_pairs.{train,eval,test}.tsv``.

No header; five tab-separated columns ``label id1 id2 text1 text2``. The label is 0 or 1 and may be
written ``1.0``/``0.0``. Both texts are encoded byte-level (byte + 1), each truncated to ``max_len``
(LRA: 4000 per document). Label 1: the first paper cites the second.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.lra.data.examples import Examples, encode_bytes
from tasks.lra.data.layout import find_folder, require_file

RELEASE_FOLDER = "tsv_data"
SPLIT_FILES = {
    "train": "new_aan_pairs.train.tsv", "valid": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"
}
COLUMNS = ("label", "id1", "id2", "text1", "text2")
N_CLASSES = 2


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
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            fields = line.split(b"\t")
            if len(fields) != len(COLUMNS):
                raise ValueError(
                    f"{path}:{lineno}: expected {len(COLUMNS)} tab-separated columns "
                    f"({' '.join(COLUMNS)}), found {len(fields)}"
                )
            label = parse_label(fields[0].decode("ascii", "replace"))
            if label is None:
                raise ValueError(f"{path}:{lineno}: label must be 0 or 1 (or 0.0/1.0), found {fields[0]!r}")
            first.append(encode_bytes(fields[3], max_len))
            second.append(encode_bytes(fields[4], max_len))
            labels.append(label)
            ids.append(f"{path.name}:{lineno}")
    return Examples((first, second), np.array(labels, dtype=np.int64), ids)


def read_aan(root: str | Path, max_len: int | None = None) -> dict[str, Examples]:
    """train/val/test (the release's ``eval`` file is the validation split)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return {split: read_aan_tsv(folder / name, max_len) for split, name in SPLIT_FILES.items()}
