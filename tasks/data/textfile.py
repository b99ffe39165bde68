"""Reading the text files of every data loader, under one rule, and reporting a bad file the same way everywhere.

The rule, for every text file any loader reads (WikiText, GLUE, ListOps, AAN, IMDB reviews, Pathfinder metadata):

* the bytes are UTF-8, decoded strictly (no replacement characters: a wrong encoding is an error, not noise);
* no NUL byte anywhere (a NUL means a binary or damaged file, never text);
* a UTF-8 byte-order mark at the very start of a file is dropped, with a logged note: some official releases
  carry one (GLUE's MRPC) and it is never part of the data; left in, it would glue itself to the first token.

Every problem is a :class:`DataFormatError` reading ``file:line: what was wrong; expected what would be right``.
Each format adds its own checks on top (columns, labels, vocabulary, WikiText's control characters) in that form.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
RE_ENCODE_HINT = "UTF-8 text (re-save or convert the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"


class DataFormatError(ValueError):
    """A data file that does not follow its official format; the message names the file and the line."""


def format_error(path: str | Path, line: int | None, problem: str, expected: str,
                 error: type[DataFormatError] = DataFormatError) -> DataFormatError:
    """``file:line: problem; expected ...`` (``file: ...`` when no single line is at fault), as ``error``."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return error(f"{where}: {problem}; expected {expected}")


def _drop_bom(path: str | Path, data: bytes) -> bytes:
    if data.startswith(BOM):
        log.info("%s starts with a UTF-8 byte-order mark; ignoring it (it is not part of the data)", path)
        return data[len(BOM):]
    return data


def _decode(path: str | Path, line: int, raw: bytes, expected: str, error: type[DataFormatError]) -> str:
    """One line's bytes as text, or the error naming the line and the column (in characters) at fault."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        column = len(raw[: err.start].decode("utf-8")) + 1
        problem = f"byte 0x{raw[err.start]:02x} at column {column} is not valid UTF-8 ({err.reason})"
        raise format_error(path, line, problem, RE_ENCODE_HINT, error) from None
    nul = text.find("\0")
    if nul >= 0:
        raise format_error(path, line, f"NUL byte at column {nul + 1} (a binary or damaged file)", expected, error)
    return text


def _lines(path: str | Path, expected: str, error: type[DataFormatError]) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:  # binary: lines end at \n only, as editors and `sed -n 'Np'` count them
        for line, raw in enumerate(f, start=1):
            yield line, _decode(path, line, _drop_bom(path, raw) if line == 1 else raw, expected, error)


def read_lines(path: str | Path, expected: str,
               error: type[DataFormatError] = DataFormatError) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for each line of ``path``, without its line ending (``\\n`` or ``\\r\\n``).

    ``expected`` says what the file should hold: it completes the message when a line breaks the rule, raised
    as ``error`` (a format's own subclass of :class:`DataFormatError`)."""
    for line, text in _lines(path, expected, error):
        yield line, text.removesuffix("\n").removesuffix("\r")


def read_text(path: str | Path, expected: str, error: type[DataFormatError] = DataFormatError) -> str:
    """The whole of ``path`` as text, under the same rule as :func:`read_lines` (line endings kept)."""
    return "".join(text for _, text in _lines(path, expected, error))
