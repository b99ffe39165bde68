"""Retrieval generator: pairs of paper-like documents, related when they share a topic, written as AAN TSV.

Each document has a main topic (one of the first ``n_topics`` of ``words.TOPIC_WORDS``) and
``distractor_topics`` others: it holds ``main`` keywords of its main topic and ``main - gap`` keywords of
each distractor topic, all scattered uniformly over filler prose (``documents.compose_document``). With
distractor topics, a document's topic is only decided by counting over all of it, not by its opening.
A pair is labelled 1 when both documents have the same main topic (standing in for AAN's "paper 1 cites
paper 2") and 0 otherwise; half the pairs of each split are positive. Files:
``tsv_data/new_aan_pairs.{train,eval,test}.tsv``, no header, columns ``label id1 id2 text1 text2`` with
the label written ``1.0``/``0.0`` and ids like ``T00-00042``.
Defaults follow AAN: 147,086 / 18,090 / 17,437 pairs; documents 1000-4000 bytes.
"""
from __future__ import annotations

import random
from pathlib import Path

from tasks.lra.data.aan import RELEASE_FOLDER, SPLIT_FILES
from tasks.lra.generators import write_file
from tasks.lra.generators.documents import compose_document
from tasks.lra.generators.words import PAPER_FILLER, TOPIC_WORDS

LRA_SIZES = {"train": 147_086, "valid": 18_090, "test": 17_437}
TOPICS = tuple(TOPIC_WORDS)


class DocumentSampler:
    def __init__(
        self, rng: random.Random, topics: tuple[str, ...], main: int, gap: int, distractor_topics: int,
        min_bytes: int, max_bytes: int,
    ):
        if not 1 <= gap <= main or not 0 <= distractor_topics < len(topics):
            raise ValueError(
                f"need 1 <= gap <= main and 0 <= distractor_topics < n_topics={len(topics)}; "
                f"got gap={gap}, main={main}, distractor_topics={distractor_topics}"
            )
        self.rng, self.topics, self.main, self.gap, self.distractors = rng, topics, main, gap, distractor_topics
        self.min_bytes, self.max_bytes, self.count = min_bytes, max_bytes, 0

    def document(self, topic: str, prefix: str) -> tuple[str, str]:
        """(id, text) of a new document whose main topic is ``topic``."""
        rng = self.rng
        others = rng.sample([t for t in self.topics if t != topic], self.distractors)
        keywords = [rng.choice(TOPIC_WORDS[topic]) for _ in range(self.main)]
        for other in others:
            keywords += [rng.choice(TOPIC_WORDS[other]) for _ in range(self.main - self.gap)]
        self.count += 1
        text = compose_document(rng, keywords, PAPER_FILLER, self.min_bytes, self.max_bytes)
        return f"{prefix}-{self.count:05d}", text


def write_retrieval(
    out: str | Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    min_bytes: int = 1000,
    max_bytes: int = 4000,
    main: int = 6,
    gap: int = 2,
    distractor_topics: int = 2,
    n_topics: int = len(TOPICS),
) -> Path:
    """Write ``<out>/tsv_data/new_aan_pairs.{train,eval,test}.tsv``; returns the ``tsv_data`` folder."""
    if not 2 <= n_topics <= len(TOPICS):
        raise ValueError(f"n_topics must be in 2..{len(TOPICS)}, got {n_topics}")
    sizes = LRA_SIZES if sizes is None else sizes
    rng, folder = random.Random(seed), Path(out) / RELEASE_FOLDER
    topics = TOPICS[:n_topics]
    sampler = DocumentSampler(rng, topics, main, gap, distractor_topics, min_bytes, max_bytes)
    for split, name in SPLIT_FILES.items():
        prefix = {"train": "T", "valid": "E", "test": "S"}[split] + f"{seed % 100:02d}"
        labels = [i % 2 == 0 for i in range(sizes[split])]
        rng.shuffle(labels)
        rows = []
        for related in labels:
            first = rng.choice(topics)
            second = first if related else rng.choice([t for t in topics if t != first])
            (id1, text1), (id2, text2) = sampler.document(first, prefix), sampler.document(second, prefix)
            rows.append(f"{1.0 if related else 0.0}\t{id1}\t{id2}\t{text1}\t{text2}")
        write_file(folder / name, "\n".join(rows) + "\n")
    return folder
