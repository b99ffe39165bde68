"""Multi-query associative recall (MQAR), as Zoology defines it.

Source: Arora, Eyuboglu et al., "Zoology: Measuring and Improving Recall in Efficient Language Models" (ICLR
2024), HazyResearch/zoology ``zoology/data/multiquery_ar.py``. One example of length L (even) over a vocabulary
V: keys are drawn from [1, V/2) and values from [V/2, V), N of each, distinct within the example. The context
``k1 v1 ... kN vN`` (``num_passes`` times) comes first; then a query region of L - 2N*passes positions in which
key j appears once, at offset 2*g_j, where g_1..g_N are drawn one after another without replacement from
{0, ..., space-1} (space = (L - 2N*passes)/2) with probability of offset index i proportional to
a*(i+1)^(a-1) (``power_a`` = a: 1 is uniform, Zoology's 0.01 strongly favours short gaps). The first draw goes
to the first key of the context, so early keys tend to be asked early, as in Zoology. The target at a query's
position is its key's value (the model emits it as the next token); every other target is ignored. The input
after a query is filler, not the value, exactly as in Zoology. Filler (every position that is neither context
nor query), ``filler``:
- ``random``: uniform over [0, V) (Zoology's default ``random_non_queries=True``); such filler can be a key
  token (zoology issue 29): a key-looking token with no target, which a model may ignore;
- ``non_keys``: uniform over {0} and the value range [V/2, V), so the only keys after the context are queries;
- ``zero``: token 0 (``random_non_queries=False``, the setting of Zoology's Figure 2 configs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.recall.sampling import IGNORE_INDEX, chunks, ordered_without_replacement, weighted_without_replacement

FILLERS = ("random", "non_keys", "zero")


@dataclass(frozen=True)
class MQARParams:
    """The generator's knobs (``task.<name>``); checked when made."""

    vocab_size: int = 8192
    seq_len: int = 64
    num_kv_pairs: int = 4
    power_a: float = 0.01
    num_passes: int = 1
    filler: str = "random"

    def __post_init__(self) -> None:
        if self.filler not in FILLERS:
            raise ValueError(f"task.filler={self.filler!r} is not valid; valid choices: {list(FILLERS)}")
        for key in ("vocab_size", "seq_len", "num_kv_pairs", "num_passes"):
            if getattr(self, key) < 1:
                raise ValueError(f"task.{key}={getattr(self, key)} must be positive")
        if self.seq_len % 2:
            raise ValueError(f"task.seq_len={self.seq_len} must be even (queries sit at even offsets)")
        if self.vocab_size <= self.seq_len:  # Zoology's assertion
            raise ValueError(f"task.vocab_size={self.vocab_size} must exceed task.seq_len={self.seq_len}")
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            raise ValueError(f"task.num_kv_pairs={self.num_kv_pairs} needs as many distinct keys; task.vocab_size="
                             f"{self.vocab_size} has {self.vocab_size // 2 - 1} (keys are [1, V/2))")
        needed = 2 * self.num_kv_pairs * (self.num_passes + 1)
        if needed > self.seq_len:
            raise ValueError(f"task.seq_len={self.seq_len} is too short for task.num_kv_pairs={self.num_kv_pairs} "
                             f"with task.num_passes={self.num_passes}: it needs 2N*passes + 2N = {needed}")
        if not self.power_a > 0:
            raise ValueError(f"task.power_a={self.power_a} must be positive (1 is uniform)")

    @property
    def input_len(self) -> int:
        """Tokens the model reads per example."""
        return self.seq_len

    @property
    def context_len(self) -> int:
        return 2 * self.num_kv_pairs * self.num_passes

    def gap_weights(self) -> np.ndarray:
        """Unnormalised probability of each query offset index i = 0..space-1: a*(i+1)^(a-1)."""
        space = (self.seq_len - self.context_len) // 2
        return self.power_a * np.arange(1, space + 1, dtype=np.float64) ** (self.power_a - 1)


def generate(p: MQARParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples: inputs and targets ``[n, seq_len]`` (int64; targets ``IGNORE_INDEX`` but at queries)."""
    parts = [_chunk(p, rows, rng) for rows in chunks(n, p.vocab_size // 2 + p.seq_len)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _chunk(p: MQARParams, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    half, pairs, rows = p.vocab_size // 2, p.num_kv_pairs, np.arange(n)[:, None]
    keys = 1 + ordered_without_replacement(rng.random((n, half - 1)), pairs)  # distinct, in [1, V/2)
    values = half + ordered_without_replacement(rng.random((n, p.vocab_size - half)), pairs)  # distinct, [V/2, V)
    gaps = weighted_without_replacement(p.gap_weights(), n, pairs, rng)  # gaps[:, j]: key j's query offset / 2

    inputs = np.zeros((n, p.seq_len), dtype=np.int64)
    targets = np.full((n, p.seq_len), IGNORE_INDEX, dtype=np.int64)
    context = np.empty((n, 2 * pairs), dtype=np.int64)
    context[:, 0::2], context[:, 1::2] = keys, values
    inputs[:, : p.context_len] = np.tile(context, (1, p.num_passes))
    queries = p.context_len + 2 * gaps
    inputs[rows, queries] = keys
    targets[rows, queries] = values

    filler = np.ones((n, p.seq_len), dtype=bool)
    filler[:, : p.context_len] = False
    filler[rows, queries] = False
    if p.filler == "random":
        inputs[filler] = rng.integers(0, p.vocab_size, size=int(filler.sum()))
    elif p.filler == "non_keys":  # 0 or a value token: index 0 -> token 0, index i > 0 -> V/2 + i - 1
        drawn = rng.integers(0, p.vocab_size - half + 1, size=int(filler.sum()))
        inputs[filler] = np.where(drawn == 0, 0, half + drawn - 1)
    return inputs, targets
