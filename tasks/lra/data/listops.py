"""ListOps from the LRA release: ``listops-1000/basic_{train,val,test}.tsv``.

Each file has the header ``Source<TAB>Target``; a source is a bracketed expression such as
``( ( [MAX 2 ) 9 ) ] )`` and the target a digit 0-9. Tokenised as LRA does: whitespace-separated tokens,
parentheses dropped, ``]`` kept as a token of its own. The vocabulary is closed, so an unknown token is an
error naming the file and line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.lra.data.examples import PAD_ID, Examples
from tasks.lra.data.layout import find_folder, require_file

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
SYMBOLS = (*OPERATORS, END, *"0123456789")
VOCAB = {symbol: PAD_ID + 1 + i for i, symbol in enumerate(SYMBOLS)}
VOCAB_SIZE = len(SYMBOLS) + 1
N_CLASSES = 10
RELEASE_FOLDER = "listops-1000"
SPLIT_FILES = {"train": "basic_train.tsv", "valid": "basic_val.tsv", "test": "basic_test.tsv"}
HEADER = ["Source", "Target"]


def tokenise(source: str) -> list[str]:
    """LRA's ListOps tokeniser: drop parentheses, split on whitespace (``]`` stays a token)."""
    return source.replace("(", " ").replace(")", " ").split()


def read_listops_tsv(path: str | Path, max_len: int | None = None) -> Examples:
    """One ListOps split file; sequences longer than ``max_len`` are truncated (LRA's pipeline does too)."""
    path = require_file(Path(path), "a ListOps TSV with header 'Source<TAB>Target'")
    sequences, labels, ids = [], [], []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        if header != HEADER:
            raise ValueError(f"{path}:1: expected the header 'Source<TAB>Target', found {header!r}")
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{path}:{lineno}: expected 2 tab-separated columns (Source, Target), found {len(fields)}"
                )
            source, target = fields
            if target.strip() not in {str(d) for d in range(N_CLASSES)}:
                raise ValueError(f"{path}:{lineno}: Target must be a digit 0-9, found {target!r}")
            tokens = tokenise(source)
            unknown = sorted(set(tokens) - set(VOCAB))
            if unknown:
                raise ValueError(f"{path}:{lineno}: unknown ListOps token(s) {unknown}; valid tokens: {list(SYMBOLS)}")
            sequences.append(np.array([VOCAB[t] for t in tokens[:max_len]], dtype=np.int16))
            labels.append(int(target))
            ids.append(f"{path.name}:{lineno}")
    return Examples((sequences,), np.array(labels, dtype=np.int64), ids)


def read_listops(root: str | Path, max_len: int | None = None) -> dict[str, Examples]:
    """train/val/test from a release copy under ``root`` (nested or flattened layout)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return {split: read_listops_tsv(folder / name, max_len) for split, name in SPLIT_FILES.items()}
