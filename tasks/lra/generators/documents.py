"""Documents of filler words with given keywords scattered uniformly over them (Text and Retrieval).

A document is a target byte length drawn from [min_bytes, max_bytes], filled with filler words; the
keywords go to word slots drawn uniformly at random over the whole document, so any part of it holds about
its share of them and no prefix decides the label. Words form sentences of 6-18 words, capitalised and
closed by a full stop; with ``paragraphs`` set, IMDB's ``<br /><br />`` separates paragraphs. A document
never exceeds ``max_bytes``, so truncating to the task's length never drops a keyword.
"""
from __future__ import annotations

import random


def _render(words: list[str], rng: random.Random, paragraph_sep: str) -> str:
    """Sentences of 6-18 words; with ``paragraph_sep``, five sentences per paragraph."""
    sentences, start = [], 0
    while start < len(words):
        end = min(start + rng.randint(6, 18), len(words))
        sentence = " ".join(words[start:end])
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        start = end
    if not paragraph_sep:
        return " ".join(sentences)
    return paragraph_sep.join(" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5))


def compose_document(
    rng: random.Random,
    keywords: list[str],
    filler: list[str],
    min_bytes: int,
    max_bytes: int,
    paragraph_sep: str = "",
) -> str:
    """A document of ``min_bytes..max_bytes`` bytes holding every keyword once, at uniform random slots."""
    if not 0 < min_bytes <= max_bytes:
        raise ValueError(f"need 0 < min_bytes <= max_bytes, got {min_bytes} and {max_bytes}")
    target = rng.randint(min_bytes, max_bytes)
    keyword_bytes = sum(len(k) + 1 for k in keywords)
    if keyword_bytes + 2 > max_bytes:
        raise ValueError(f"{len(keywords)} keywords need {keyword_bytes} bytes, more than max_bytes={max_bytes}")
    mean_filler = sum(len(w) + 1 for w in filler) / len(filler)
    n_filler = max(0, round((target - keyword_bytes) / (mean_filler + 0.2)))
    words = [rng.choice(filler) for _ in range(n_filler)]
    while True:
        slots = sorted(rng.sample(range(len(words) + len(keywords)), len(keywords)))
        document = list(words)
        for slot, keyword in zip(slots, rng.sample(keywords, len(keywords))):
            document.insert(slot, keyword)
        text = _render(document, rng, paragraph_sep)
        if len(text.encode("utf-8")) <= max_bytes:
            return text
        if not words:
            raise ValueError(f"{len(keywords)} keywords alone take more than max_bytes={max_bytes} bytes")
        del words[rng.randrange(len(words))]
