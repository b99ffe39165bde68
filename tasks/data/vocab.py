"""A word-level vocabulary built the way fairseq builds its Dictionary.

Specials first; then every word of the training text by descending count, ties broken alphabetically
(fairseq's ``finalize``); then filler symbols so that the size is a multiple of ``pad_to_multiple`` (fairseq's
``padding_factor=8``). The corpus's own ``<unk>`` token maps onto the ``<unk>`` special.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, EOS, UNK, MASK = "<pad>", "<eos>", "<unk>", "<mask>"
DEFAULT_SPECIALS = (PAD, EOS, UNK)


class Vocabulary:
    """Symbols <-> ids. ``specials`` come first (``<pad>`` = 0); unknown words map to ``<unk>``."""

    def __init__(self, symbols: Sequence[str], specials: Sequence[str] = DEFAULT_SPECIALS):
        if list(symbols[: len(specials)]) != list(specials):
            raise ValueError(f"a vocabulary must start with its specials {list(specials)}")
        if UNK not in specials:
            raise ValueError(f"the specials {list(specials)} must include {UNK}")
        self.symbols = list(symbols)
        self.specials = tuple(specials)
        self.index = {s: i for i, s in enumerate(self.symbols)}
        if len(self.index) != len(self.symbols):
            raise ValueError("a vocabulary may not hold the same symbol twice")
        self.unk = self.index[UNK]
        self.pad = self.index.get(PAD, -1)
        self.eos = self.index.get(EOS, -1)

    @classmethod
    def build(
        cls, counts: Counter, specials: Sequence[str] = DEFAULT_SPECIALS, pad_to_multiple: int = 8
    ) -> Vocabulary:
        """From word counts (specials among them are ignored: they come first anyway)."""
        words = sorted((w for w in counts if w not in specials), key=lambda w: (-counts[w], w))
        symbols = [*specials, *words]
        filler = 0
        while pad_to_multiple > 1 and len(symbols) % pad_to_multiple:
            symbols.append(f"madeupword{filler:04d}")
            filler += 1
        return cls(symbols, specials)

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, words: Iterable[str]) -> list[int]:
        index, unk = self.index, self.unk
        return [index.get(w, unk) for w in words]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        return [self.symbols[int(i)] for i in ids]
