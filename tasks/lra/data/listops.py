"""ListOps from the LRA release: ``listops-1000/basic_{train,val,test}.tsv``.

Each file has the header ``Source<TAB>Target``; a source is a bracketed expression such as
``( ( [MAX 2 ) 9 ) ] )`` and the target a digit 0-9. Tokenised as LRA does: whitespace-separated tokens,
parentheses dropped, ``]`` kept as a token of its own. The vocabulary is closed, so an unknown token is an
error naming the file and line; so is an expression with no token, and a file with no example. The bytes are
read under the rule every loader shares (:mod:`tasks.data.textfile`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.data.textfile import format_error, read_lines
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
EXPECTED = "the header 'Source<TAB>Target', then rows '<expression><TAB><digit 0-9>' such as '( [MAX 2 9 ] )<TAB>9'"


def tokenise(source: str) -> list[str]:
    """LRA's ListOps tokeniser: drop parentheses, split on whitespace (``]`` stays a token)."""
    return source.replace("(", " ").replace(")", " ").split()


def read_listops_tsv(path: str | Path, max_len: int | None = None) -> Examples:
    """One ListOps split file; sequences longer than ``max_len`` are truncated (LRA's pipeline does too)."""
    path = require_file(Path(path), "a ListOps TSV with header 'Source<TAB>Target'")
    sequences, labels, ids = [], [], []
    last = 0
    for lineno, line in read_lines(path, EXPECTED):
        last = lineno
        if lineno == 1:
            header = line.split("\t")
            if header != HEADER:
                raise format_error(path, 1, f"header {header!r}", EXPECTED)
            continue
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise format_error(path, lineno, f"found {len(fields)} tab-separated columns, not 2 (Source, Target)",
                               EXPECTED)
        source, target = fields
        if target.strip() not in {str(d) for d in range(N_CLASSES)}:
            raise format_error(path, lineno, f"Target {target!r} is not a digit 0-9", EXPECTED)
        tokens = tokenise(source)
        if not tokens:
            raise format_error(path, lineno, f"the Source {source!r} has no token (an empty example)", EXPECTED)
        unknown = sorted(set(tokens) - set(VOCAB))
        if unknown:
            raise format_error(path, lineno, f"unknown ListOps token(s) {unknown}", f"tokens among {list(SYMBOLS)}")
        sequences.append(np.array([VOCAB[t] for t in tokens[:max_len]], dtype=np.int16))
        labels.append(int(target))
        ids.append(f"{path.name}:{lineno}")
    if not labels:
        raise format_error(path, last + 1, "end of file with no example", EXPECTED)
    return Examples((sequences,), np.array(labels, dtype=np.int64), ids)


def source_files(root: str | Path) -> list[Path]:
    """The files :func:`read_listops` parses (what its cache is keyed on)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return [folder / name for name in SPLIT_FILES.values()]


def read_listops(root: str | Path, max_len: int | None = None) -> dict[str, Examples]:
    """train/val/test from a release copy under ``root`` (nested or flattened layout)."""
    folder = find_folder(root, RELEASE_FOLDER, SPLIT_FILES["train"])
    return {split: read_listops_tsv(folder / name, max_len) for split, name in SPLIT_FILES.items()}
