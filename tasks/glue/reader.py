"""Read one split of a GLUE task from its official file (tab-separated, no quoting: a row is one line).

The bytes are read under the rule every loader shares (:mod:`tasks.data.textfile`): strict UTF-8, no NUL, a
leading byte-order mark (MRPC's files have one) dropped with a note. Other control characters are left in the
text: the real CoLA train file has backspaces in its sentences.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from tasks.data.textfile import DataFormatError, format_error, read_lines
from tasks.glue.formats import GlueFormat, get_format

log = logging.getLogger(__name__)


class GlueFormatError(DataFormatError):
    """A GLUE file that does not have its official layout; the message names the file and line."""


@dataclass
class GlueSplit:
    """The examples of one split: texts, labels (class indices, or float scores for regression)."""

    task: str
    split: str
    path: Path
    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float]
    skipped: int = 0  # malformed rows skipped (QQP only)

    def __len__(self) -> int:
        return len(self.labels)


def split_path(data_dir: str | Path, fmt: GlueFormat, split: str) -> Path:
    """``data_dir`` is either the GLUE root (holding ``CoLA/``, ``SST-2/`` ...) or the task's own folder."""
    data_dir = Path(data_dir)
    task_dir = data_dir / fmt.directory if (data_dir / fmt.directory).is_dir() else data_dir
    return task_dir / fmt.file_name(split)


def read_split(data_dir: str | Path, task: str, split: str) -> GlueSplit:
    """Read ``split`` of ``task`` from ``data_dir``; bad rows fail naming file and line (QQP's are skipped)."""
    fmt = get_format(task)
    if split not in fmt.headers:
        raise ValueError(f"GLUE task {task!r} has no split {split!r}; valid splits: {fmt.splits}")
    path = split_path(data_dir, fmt, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE {task} {split}: {path} does not exist; expected the official files "
            f"{[fmt.file_name(s) for s in fmt.splits]} in {path.parent} (or in {fmt.directory}/ under data.path)"
        )
    header = fmt.headers[split]
    n_columns = fmt.columns(split)
    text_a: list[str] = []
    text_b: list[str] | None = [] if fmt.text_b is not None else None
    labels: list = []
    skipped = 0
    expected = _expected(fmt, split)
    last = 0
    for line_no, line in read_lines(path, expected, GlueFormatError):
        last = line_no
        row = line.split("\t") if line else []
        if line_no == 1 and header is not None:
            _check_header(row, header, path)
            continue
        if len(row) != n_columns:
            if fmt.skip_malformed:
                skipped += 1
                continue
            raise _error(path, line_no, f"found {len(row)} tab-separated column(s), not {n_columns}", expected)
        try:
            label = _parse_label(row[fmt.label], fmt)
        except ValueError as err:
            if fmt.skip_malformed:
                skipped += 1
                continue
            raise _error(path, line_no, str(err), expected) from None
        text_a.append(row[fmt.text_a])
        if text_b is not None:
            text_b.append(row[fmt.text_b])
        labels.append(label)
    if skipped:
        log.warning("GLUE %s %s: skipped %d malformed row(s) in %s", task, split, skipped, path)
    if not labels:
        raise _error(path, last + 1, f"end of file with no examples (GLUE {task} {split} would be empty)", expected)
    return GlueSplit(task, split, path, text_a, text_b, labels, skipped)


def _error(path: Path, line: int, problem: str, expected: str) -> DataFormatError:
    return format_error(path, line, problem, expected, GlueFormatError)


def _expected(fmt: GlueFormat, split: str) -> str:
    """What a row of ``split`` should be, for error messages."""
    header = fmt.headers[split]
    columns = " <TAB> ".join(header) if header is not None else f"{fmt.n_columns} columns"
    if fmt.labels is not None:
        label = f"a label in {list(fmt.labels)}"
    else:
        label = f"a score in [{fmt.score_range[0]}, {fmt.score_range[1]}]"
    return f"rows of {columns} (tab-separated, one per line) with {label}"


def _check_header(row: list[str], header: tuple[str, ...], path: Path) -> None:
    if [c.strip().lower() for c in row] != [c.lower() for c in header]:
        raise _error(path, 1, f"header {row!r} is not the official one", f"{list(header)} (tab-separated)")


def _parse_label(value: str, fmt: GlueFormat) -> int | float:
    value = value.strip()
    if fmt.labels is not None:
        if value not in fmt.labels:
            raise ValueError(f"label {value!r} is not one of {list(fmt.labels)}")
        return fmt.labels.index(value)
    try:
        score = float(value)
    except ValueError:
        raise ValueError(f"score {value!r} is not a number") from None
    low, high = fmt.score_range
    if not (math.isfinite(score) and low <= score <= high):
        raise ValueError(f"score {score} is outside [{low}, {high}]")
    return score
