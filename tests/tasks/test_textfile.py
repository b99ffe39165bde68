"""One rule for the text files of every loader: strict UTF-8 and no NUL byte, reported as
``file:line: what was wrong; expected what would be right``; a leading byte-order mark dropped with a note."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks.data.textfile import DataFormatError, read_lines, read_text
from tasks.data.wikitext import load_wikitext
from tasks.glue.reader import GlueFormatError, read_split
from tasks.lra.data.aan import read_aan
from tasks.lra.data.imdb import read_imdb
from tasks.lra.data.listops import read_listops
from tasks.lra.data.pathfinder import read_pathfinder
from tests.tasks.lra import fixtures


def _plain(value: Any) -> Any:
    """Loader results as plain data, to compare them."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dict__"):
        return {k: _plain(v) for k, v in vars(value).items() if k != "path"}
    return value


def _wikitext(root: Path) -> tuple[Path, Callable[[], Any]]:
    root.mkdir(parents=True)
    for split, text in (("train", " = A = \n a b c \n"), ("valid", " a b \n c a \n"), ("test", " b c \n")):
        (root / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    return root / "wiki.valid.tokens", lambda: load_wikitext(root, root.parent / "cache")


def _glue(root: Path) -> tuple[Path, Callable[[], Any]]:
    path = fixtures.write(root / "SST-2" / "train.tsv", "sentence\tlabel\na fine film\t1\na dull one\t0\n")
    return path, lambda: read_split(root, "sst2", "train")


def _listops(root: Path) -> tuple[Path, Callable[[], Any]]:
    folder = fixtures.listops_release(root, {"train": [("( [MAX 2 9 ] )", "9"), ("( [MIN 2 9 ] )", "2")]})
    return folder / "basic_train.tsv", lambda: read_listops(root)


def _aan(root: Path) -> tuple[Path, Callable[[], Any]]:
    folder = fixtures.aan_release(root, ["1\tP1\tP2\tone\ttwo", "0\tP3\tP4\tthree\tfour"])
    return folder / "new_aan_pairs.train.tsv", lambda: read_aan(root)


def _imdb(root: Path) -> tuple[Path, Callable[[], Any]]:
    folder = fixtures.imdb(root, {split: {"pos": {"0_9.txt": b"good\nfilm"}, "neg": {"1_1.txt": b"bad"}}
                                  for split in ("train", "test")})
    return folder / "train" / "pos" / "0_9.txt", lambda: read_imdb(root)


def _pathfinder(root: Path) -> tuple[Path, Callable[[], Any]]:
    folder = fixtures.pathfinder_release(root, {0: [(np.zeros((32, 32)), 0), (np.ones((32, 32)), 1)]})
    return folder / "metadata" / "0.npy", lambda: read_pathfinder(root)


LOADERS = {"wikitext": _wikitext, "glue": _glue, "listops": _listops, "aan": _aan, "imdb": _imdb,
           "pathfinder": _pathfinder}


def _insert_at_line_2(path: Path, data: bytes) -> None:
    first, rest = path.read_bytes().split(b"\n", 1)
    path.write_bytes(first + b"\n" + data + rest)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize(("bad", "problem"), [(b"\xff", "byte 0xff at column 1 is not valid UTF-8"),
                                              (b"\x00", "NUL byte at column 1")])
def test_bad_bytes_fail_naming_file_line_and_what_is_expected(tmp_path, loader, bad, problem):
    path, load = LOADERS[loader](tmp_path / "data")
    load()  # the file is fine as written
    _insert_at_line_2(path, bad)
    with pytest.raises(DataFormatError) as err:
        load()
    assert str(err.value).startswith(f"{path}:2: {problem}") and "; expected " in str(err.value)


@pytest.mark.parametrize("loader", LOADERS)
def test_a_leading_byte_order_mark_is_dropped_with_a_note(tmp_path, loader, caplog):
    path, load = LOADERS[loader](tmp_path / "data")
    without = _plain(load())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    with caplog.at_level(logging.INFO, logger="tasks.data.textfile"):
        assert _plain(load()) == without  # nothing of the mark reaches the data (no "\ufeff" token or byte)
    assert f"{path} starts with a UTF-8 byte-order mark; ignoring it" in caplog.text


def test_glue_errors_stay_glue_format_errors(tmp_path):
    path, load = _glue(tmp_path / "data")
    _insert_at_line_2(path, b"\x00")
    with pytest.raises(GlueFormatError):
        load()


def test_reader_columns_are_characters_and_line_endings_go(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes("caf\u00e9 ok\r\nsecond\n".encode() + "\u00e9t\u00e9 \xff".encode("latin-1"))
    lines = read_lines(path, "text")
    assert next(lines) == (1, "caf\u00e9 ok") and next(lines) == (2, "second")
    with pytest.raises(DataFormatError, match=r"f.txt:3: byte 0xe9 at column 1 is not valid UTF-8 .*iconv"):
        next(lines)
    path.write_bytes("one\nt\u00e9\x00\n".encode())
    with pytest.raises(DataFormatError, match=r"f.txt:2: NUL byte at column 3 .*; expected a poem"):
        read_text(path, "a poem")
