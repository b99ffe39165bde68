"""Noisy in-context recall, as MAD defines it (its benchmark's multi-query form).

Source: Poli et al., "Mechanistic Design and Scaling of Hybrid Architectures" (ICML 2024), athms/mad-lab
``mad/data/instances.py`` (``generate_noisy_in_context_recall_instance`` with ``multi_query=True``, the setting
of ``configs/tasks/noisy-in-context-recall.yml``). With ``ns = vocab_size - noise_vocab_size``: keys are
[0, ns/2), values [ns/2, ns), noise tokens [ns, vocab_size). A sequence of ``seq_len`` tokens (even) is
``seq_len/2 - 1`` slots of two tokens, then a probe pair. Each slot is, with probability ``frac_noise``, two
noise tokens (uniform, with replacement), else a key-value pair: a key uniform over the keys (keys repeat) and
that key's value in this sequence (drawn uniformly over the values at the key's first appearance: two keys may
share a value). One slot, drawn uniformly, is never noise. The probe is a key drawn uniformly from the keys
presented, followed by its value. The model reads the first ``seq_len - 1`` tokens and predicts the next: the
answers are the value of every pair whose key appeared in an earlier pair, and the probe's value; every other
target is ignored when evaluating. Training, as MAD's (``is_training=True``), predicts every next token
(``train_on=all``); ``train_on=answers`` trains on the answers only.

Deviation: MAD draws the never-noise slot over all ``seq_len/2`` slots though only the first ``seq_len/2 - 1``
are generated, so with probability 2/seq_len no slot is protected (and an all-noise sequence fails there);
here it is drawn among the generated slots. ``frac_noise=0`` with ``noise_vocab_size=0`` is MAD's in-context
recall.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.recall.sampling import IGNORE_INDEX, chunks

TRAIN_ON = ("all", "answers")


@dataclass(frozen=True)
class NoisyRecallParams:
    """The generator's knobs (``task.<name>``); checked when made."""

    vocab_size: int = 32
    seq_len: int = 128
    noise_vocab_size: int = 16
    frac_noise: float = 0.2
    train_on: str = "all"

    def __post_init__(self) -> None:
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"task.train_on={self.train_on!r} is not valid; valid choices: {list(TRAIN_ON)}")
        if self.seq_len < 4 or self.seq_len % 2:
            raise ValueError(f"task.seq_len={self.seq_len} must be even and at least 4 (a pair and the probe)")
        if not 0 <= self.noise_vocab_size <= self.vocab_size - 2:
            raise ValueError(f"task.noise_vocab_size={self.noise_vocab_size} must be in [0, task.vocab_size - 2] "
                             f"(task.vocab_size={self.vocab_size}: at least one key and one value remain)")
        if not 0 <= self.frac_noise < 1:
            raise ValueError(f"task.frac_noise={self.frac_noise} must be in [0, 1)")
        if self.frac_noise > 0 and self.noise_vocab_size == 0:
            raise ValueError(f"task.frac_noise={self.frac_noise} needs noise tokens: set task.noise_vocab_size > 0")

    @property
    def input_len(self) -> int:
        """Tokens the model reads per example (MAD's ``inputs[:-1]``)."""
        return self.seq_len - 1

    @property
    def trains_on_every_token(self) -> bool:
        return self.train_on == "all"


def generate(p: NoisyRecallParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples: inputs and targets ``[n, seq_len - 1]`` (int64; targets ``IGNORE_INDEX`` but at answers)."""
    n_keys = (p.vocab_size - p.noise_vocab_size) // 2
    parts = [_chunk(p, rows, rng) for rows in chunks(n, (p.seq_len // 2) * n_keys)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _chunk(p: NoisyRecallParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    plain = p.vocab_size - p.noise_vocab_size
    n_keys, slots, rows = plain // 2, p.seq_len // 2 - 1, np.arange(n)
    noise = rng.random((n, slots)) < p.frac_noise
    noise[rows, rng.integers(0, slots, size=n)] = False  # one slot always holds a pair
    keys = rng.integers(0, n_keys, size=(n, slots))
    table = rng.integers(n_keys, plain, size=(n, n_keys))  # each key's value in this sequence
    values = np.take_along_axis(table, keys, axis=1)

    present = (keys[..., None] == np.arange(n_keys)) & ~noise[..., None]  # [n, slots, keys]: real pair of key
    repeated = ((np.cumsum(present, axis=1, dtype=np.int32) - present) * present).any(-1)  # key seen in a pair
    probe = np.argmax(np.where(present.any(1), rng.random((n, n_keys)), -1.0), axis=1)  # uniform, presented

    pairs = np.stack([keys, values], axis=-1)  # [n, slots, 2]
    if p.noise_vocab_size:
        pairs[noise] = rng.integers(plain, p.vocab_size, size=(int(noise.sum()), 2))
    sequence = np.empty((n, p.seq_len), dtype=np.int64)
    sequence[:, :-2] = pairs.reshape(n, 2 * slots)
    sequence[:, -2], sequence[:, -1] = probe, table[rows, probe]
    answer = np.zeros((n, p.seq_len), dtype=bool)
    answer[:, 1:-2:2], answer[:, -1] = repeated, True
    return sequence[:, :-1], np.where(answer[:, 1:], sequence[:, 1:], IGNORE_INDEX)
