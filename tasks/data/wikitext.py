"""WikiText in its official tokenised form: ``wiki.{train,valid,test}.tokens`` (PAPER.md section 6).

Each line becomes ``line.split() + ["<eos>"]`` (fairseq counts blank lines as a lone ``<eos>``); the vocabulary
is counted on train (:mod:`tasks.data.vocab`); the tokenised splits are cached as int32 tensors under a key
made of the files' contents and the vocabulary options (:func:`tasks.data.cache.content_key`). The files are
read under the rule every loader shares (:mod:`tasks.data.textfile`: strict UTF-8, no NUL, a leading
byte-order mark dropped with a note); WikiText adds that no other control character may appear, as its tokens
are separated by spaces alone.
"""
from __future__ import annotations

import array
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tasks.data.cache import content_key, load_cached, save_cached
from tasks.data.textfile import DataFormatError as DataFormatError  # re-exported: callers catch it from here
from tasks.data.textfile import format_error, read_lines, read_text
from tasks.data.vocab import DEFAULT_SPECIALS, EOS, Vocabulary
from zoo_io.atomic import write_text

SPLIT_FILES = {"train": "wiki.train.tokens", "valid": "wiki.valid.tokens", "test": "wiki.test.tokens"}
DOWNLOAD_HINT = "python -m harness.data download wikitext-103 --dest DIR   (or wikitext-2)"
CACHE_FORMAT = 2  # 2: keyed on content; a leading byte-order mark is dropped
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
EXPECTED = "WikiText text: one paragraph or heading per line, its words separated by spaces"


@dataclass
class TokenCorpus:
    """A vocabulary and one int32 token stream per split (every line's words, then ``<eos>``)."""

    vocab: Vocabulary
    splits: dict[str, torch.Tensor]


def split_paths(folder: str | Path) -> dict[str, Path]:
    """The three official files of ``folder``; a missing folder or file fails naming what is expected."""
    folder = Path(folder)
    paths = {split: folder / name for split, name in SPLIT_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {missing}"
        raise FileNotFoundError(
            f"WikiText folder {str(folder)!r} {where}; expected the official files {list(SPLIT_FILES.values())}. "
            f"Download them with: {DOWNLOAD_HINT}"
        )
    return paths


def read_words(path: str | Path) -> Iterator[list[str]]:
    """Each line's words followed by ``<eos>``; a line that is not UTF-8 text fails naming file and line."""
    for lineno, line in read_lines(path, EXPECTED):
        bad = _CONTROL.search(line)
        if bad:
            raise format_error(path, lineno, f"control character {bad.group()!r} at column {bad.start() + 1}",
                               EXPECTED)
        yield [*line.split(), EOS]


def count_words(path: str | Path) -> Counter:
    counts: Counter = Counter()
    for words in read_words(path):
        counts.update(words)
    return counts


def encode_file(path: str | Path, vocab: Vocabulary) -> torch.Tensor:
    ids = array.array("i")
    for words in read_words(path):
        ids.extend(vocab.encode(words))
    return torch.frombuffer(ids, dtype=torch.int32).clone() if ids else torch.zeros(0, dtype=torch.int32)


def cache_key(paths: Sequence[Path], **options) -> str:
    """Hash of what the tokenised tensors depend on: the files' contents (in order) and the options."""
    return content_key(list(paths), format=CACHE_FORMAT, **options)


def load_wikitext(
    folder: str | Path,
    cache_dir: str | Path,
    specials: Sequence[str] = DEFAULT_SPECIALS,
    pad_to_multiple: int = 8,
) -> TokenCorpus:
    """Read (or load from cache) the tokenised splits of the WikiText-format folder ``folder``."""
    paths = split_paths(folder)
    key = cache_key(list(paths.values()), specials=list(specials), pad_to_multiple=pad_to_multiple)
    cache_file = Path(cache_dir) / f"wikitext-{key}.pt"
    cached = load_cached(cache_file)
    if cached is not None:
        vocab = Vocabulary(cached["symbols"], tuple(cached["specials"]))
        return TokenCorpus(vocab, {split: cached[split] for split in SPLIT_FILES})
    vocab = Vocabulary.build(count_words(paths["train"]), specials, pad_to_multiple)
    splits = {split: encode_file(path, vocab) for split, path in paths.items()}
    save_cached(cache_file, {"symbols": vocab.symbols, "specials": list(vocab.specials), **splits})
    return TokenCorpus(vocab, splits)


# ----------------------------------------------------------------------- a folder with valid and test only
ARTICLE_HEADING = re.compile(r"^ = [^=].* = $")  # " = Title = ": a new article (sections have "= =")


def article_starts(lines: Sequence[str]) -> list[int]:
    """The indices of the lines that open an article (WikiText's `` = Title = `` headings)."""
    return [i for i, line in enumerate(lines) if ARTICLE_HEADING.match(line.rstrip("\n"))]


def resplit_valid_test(folder: str | Path, dest: str | Path) -> Path:
    """A WikiText folder holding only ``wiki.valid.tokens`` and ``wiki.test.tokens`` (an evaluation copy, no
    train file) made into the three official files under ``dest``: train is the valid file; the test file is cut
    at the article heading nearest its middle, its first half the validation split (where the best checkpoint
    is chosen) and its second half the test split, so that choosing a checkpoint never sees the reported text.
    Files are rewritten only when their content changes, so a second call leaves them untouched."""
    folder, dest = Path(folder), Path(dest)
    sources = {split: folder / SPLIT_FILES[split] for split in ("valid", "test")}
    missing = [p.name for p in sources.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"WikiText folder {str(folder)!r} lacks {missing}; expected at least "
                                f"{SPLIT_FILES['valid']} and {SPLIT_FILES['test']}")
    test_lines = read_text(sources["test"], EXPECTED).splitlines(keepends=True)
    starts = [i for i in article_starts(test_lines) if i > 0]
    if not starts:
        raise format_error(sources["test"], None, "no article heading after the first line to cut the file at",
                           "WikiText articles opening with ' = Title = ' lines")
    cut = min(starts, key=lambda i: abs(i - len(test_lines) / 2))
    contents = {"train": read_text(sources["valid"], EXPECTED), "valid": "".join(test_lines[:cut]),
                "test": "".join(test_lines[cut:])}
    for split, text in contents.items():
        path = dest / SPLIT_FILES[split]
        if not (path.is_file() and path.read_bytes() == text.encode("utf-8")):
            write_text(path, text, newline="")
    return dest
