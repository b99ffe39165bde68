"""Seed statistics and rank agreement with the paper."""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import kendalltau


@dataclass(frozen=True)
class SeedStats:
    """Mean and spread of one cell over seeds; ``std`` is the sample standard deviation (0 for one seed)."""

    mean: float
    std: float
    n: int
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedStats | None:
        values = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), std, len(values), min(values), max(values))


@dataclass(frozen=True)
class RankAgreement:
    """Kendall's tau-b between our values and the paper's over the rows that have both; ``p`` is scipy's
    two-sided p-value (meaningless for a handful of rows, shown for honesty)."""

    tau: float
    p: float
    n: int


def rank_agreement(ours: Sequence[float], paper: Sequence[float]) -> RankAgreement | None:
    """Kendall's tau between two orderings of the same rows; None with fewer than two rows or no variation.

    Both sequences hold the same metric (lower-is-better or higher-is-better alike), so tau = 1 means our
    ordering of the rows is the paper's and tau = -1 that it is reversed.
    """
    if len(ours) != len(paper):
        raise ValueError(f"rank_agreement needs paired values, got {len(ours)} and {len(paper)}")
    if len(ours) < 2 or len(set(ours)) < 2 or len(set(paper)) < 2:
        return None
    result = kendalltau(ours, paper)
    tau, p = float(result.statistic), float(result.pvalue)
    return RankAgreement(tau, p, len(ours)) if math.isfinite(tau) else None
