"""Text generator: IMDB-like reviews whose label is decided by the whole review, written as ``aclImdb``.

Each review is filler prose (film-review words) with sentiment words scattered uniformly over it (see
``documents.compose_document``): ``p + m`` words of the review's own polarity and ``p`` of the opposite
one, with ``p`` drawn from ``pairs`` and the margin ``m`` from ``margin``. The label is the polarity in
the majority, so it is only decided by counting over the whole review: the first quarter of a review holds
about a quarter of each kind and disagrees with the label often (a test measures this). Paragraphs are
separated by ``<br /><br />`` as in IMDB. Files: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``
with ratings 7-10 for positive and 1-4 for negative reviews (a larger margin, a stronger rating), half of
each split positive. Defaults follow IMDB: 25,000 reviews per split; lengths 500-4000 bytes.
"""
from __future__ import annotations

import random
from pathlib import Path

from tasks.lra.data.imdb import RELEASE_FOLDER
from tasks.lra.generators import write_file
from tasks.lra.generators.documents import compose_document
from tasks.lra.generators.words import NEGATIVE_WORDS, POSITIVE_WORDS, REVIEW_FILLER

LRA_SIZES = {"train": 25_000, "test": 25_000}


def review(rng: random.Random, positive: bool, pairs: tuple[int, int], margin: tuple[int, int],
           min_bytes: int, max_bytes: int) -> tuple[str, int]:
    """One review and its margin (how many more words of its polarity than of the other)."""
    p, m = rng.randint(*pairs), rng.randint(*margin)
    own, other = (POSITIVE_WORDS, NEGATIVE_WORDS) if positive else (NEGATIVE_WORDS, POSITIVE_WORDS)
    keywords = [rng.choice(own) for _ in range(p + m)] + [rng.choice(other) for _ in range(p)]
    return compose_document(rng, keywords, REVIEW_FILLER, min_bytes, max_bytes, "<br /><br />"), m


def rating(positive: bool, margin: int, max_margin: int) -> int:
    strength = min(3, (margin - 1) * 4 // max(max_margin, 1))
    return 7 + strength if positive else 4 - strength


def write_text(
    out: str | Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    min_bytes: int = 500,
    max_bytes: int = 4000,
    pairs: tuple[int, int] = (4, 12),
    margin: tuple[int, int] = (1, 3),
) -> Path:
    """Write ``<out>/aclImdb/{train,test}/{pos,neg}/*.txt``; returns the ``aclImdb`` folder."""
    if not 1 <= margin[0] <= margin[1] or not 0 <= pairs[0] <= pairs[1]:
        raise ValueError(f"need 1 <= margin[0] <= margin[1] and 0 <= pairs[0] <= pairs[1], got {margin}, {pairs}")
    sizes = LRA_SIZES if sizes is None else sizes
    rng, folder = random.Random(seed), Path(out) / RELEASE_FOLDER
    for split in ("train", "test"):
        labels = [i % 2 == 0 for i in range(sizes[split])]
        rng.shuffle(labels)
        counts = {True: 0, False: 0}
        for positive in labels:
            text, m = review(rng, positive, tuple(pairs), tuple(margin), min_bytes, max_bytes)
            name = f"{counts[positive]}_{rating(positive, m, margin[1])}.txt"
            write_file(folder / split / ("pos" if positive else "neg") / name, text)
            counts[positive] += 1
    return folder
