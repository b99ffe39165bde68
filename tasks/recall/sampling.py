"""Draws the recall generators share: ordered samples without replacement, a row at a time, vectorised."""
from __future__ import annotations

import numpy as np

IGNORE_INDEX = -100  # as tasks.base.IGNORE_INDEX (kept here so the generators need no torch)


def ordered_without_replacement(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the ``k`` smallest ``scores`` in increasing order of score: ``[rows, k]``.

    With iid uniform scores this is a uniformly random ordered k-subset; with scores ``-(log w + Gumbel)`` it is
    successive sampling without replacement with probabilities proportional to ``w`` (Gumbel-top-k, the
    Plackett-Luce order), which is what ``numpy.random.choice(replace=False, p=w)`` draws, one row at a time.
    """
    smallest = np.argpartition(scores, k - 1, axis=1)[:, :k]  # the set, in no particular order
    order = np.argsort(np.take_along_axis(scores, smallest, axis=1), axis=1, kind="stable")
    return np.take_along_axis(smallest, order, axis=1)


def weighted_without_replacement(weights: np.ndarray, rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` independent ordered draws of ``k`` distinct indices of ``weights`` (probabilities ∝ weights)."""
    gumbel = -np.log(-np.log(rng.random((rows, len(weights)))))
    return ordered_without_replacement(-(np.log(weights) + gumbel), k)


def chunks(n: int, row_cost: int, budget: int = 1 << 23) -> list[int]:
    """``n`` rows cut into chunks of at most ``budget / row_cost`` rows (bounds a generator's scratch memory)."""
    size = max(1, budget // max(1, row_cost))
    return [min(size, n - start) for start in range(0, n, size)]
