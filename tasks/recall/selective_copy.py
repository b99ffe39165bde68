"""Selective copying, as MAD defines it.

Source: Poli et al., "Mechanistic Design and Scaling of Hybrid Architectures" (ICML 2024), athms/mad-lab
``mad/data/instances.py`` (``generate_selective_copying_instance``; baseline in
``configs/tasks/selective-copying.yml``). Tokens: content [0, V-2), blank V-2, copy marker V-1. A sequence of
``seq_len`` tokens: ``num_tokens_to_copy`` (T) content tokens (uniform, with replacement) with the
B = seq_len - 2T - 1 blanks scattered among them, then the copy marker, then T blanks. The blanks are scattered
as MAD's ``np.insert`` at indices uniform over [0, T) scatters them: each blank independently goes before one
of the T content tokens (multinomial counts; never after the last, which therefore always precedes the marker).
Targets are not shifted (MAD's convention): at the i-th blank after the marker the model emits the i-th content
token; every other target is ignored, in training as in evaluation (MAD's copying targets are the same for
both). Deviation: MAD draws the scatter from numpy's global random state; here it comes from the seeded stream.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.recall.sampling import IGNORE_INDEX, chunks


@dataclass(frozen=True)
class SelectiveCopyParams:
    """The generator's knobs (``task.<name>``); checked when made."""

    vocab_size: int = 16
    seq_len: int = 256
    num_tokens_to_copy: int = 16

    def __post_init__(self) -> None:
        if self.vocab_size < 3:
            raise ValueError(f"task.vocab_size={self.vocab_size} must be at least 3 (content, blank, copy marker)")
        if self.num_tokens_to_copy < 1:
            raise ValueError(f"task.num_tokens_to_copy={self.num_tokens_to_copy} must be positive")
        if self.seq_len <= 2 * self.num_tokens_to_copy + 1:  # MAD's assertion
            raise ValueError(f"task.seq_len={self.seq_len} must exceed 2 * task.num_tokens_to_copy + 1 = "
                             f"{2 * self.num_tokens_to_copy + 1}")

    @property
    def input_len(self) -> int:
        """Tokens the model reads per example."""
        return self.seq_len


def generate(p: SelectiveCopyParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples: inputs and targets ``[n, seq_len]`` (int64; targets ``IGNORE_INDEX`` but at the copies)."""
    parts = [_chunk(p, rows, rng) for rows in chunks(n, p.seq_len)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _chunk(p: SelectiveCopyParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    copies, length = p.num_tokens_to_copy, p.seq_len
    blank, marker = p.vocab_size - 2, p.vocab_size - 1
    content = rng.integers(0, p.vocab_size - 2, size=(n, copies))
    before = rng.multinomial(length - 2 * copies - 1, np.full(copies, 1 / copies), size=n)  # blanks before token i
    positions = np.arange(copies) + np.cumsum(before, axis=1)

    inputs = np.full((n, length), blank, dtype=np.int64)
    np.put_along_axis(inputs, positions, content, axis=1)
    inputs[:, length - copies - 1] = marker
    targets = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
    targets[:, length - copies :] = content
    return inputs, targets
