"""Seed statistics and Kendall's tau between our ordering of rows and the paper's."""
from __future__ import annotations

import math

import pytest

from harness.report.stats import SeedStats, rank_agreement


def test_identical_order_is_one_and_reversed_order_is_minus_one():
    assert rank_agreement([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]).tau == pytest.approx(1.0)
    assert rank_agreement([4.0, 3.0, 2.0, 1.0], [10.0, 20.0, 30.0, 40.0]).tau == pytest.approx(-1.0)


def test_one_swapped_pair_of_three():
    # pairs: (a,b) discordant, (a,c) concordant, (b,c) concordant -> (2 - 1) / 3
    result = rank_agreement([2.0, 1.0, 3.0], [1.0, 2.0, 3.0])
    assert result.tau == pytest.approx(1 / 3) and result.n == 3 and 0 <= result.p <= 1


def test_too_few_rows_or_no_variation_gives_none():
    assert rank_agreement([1.0], [2.0]) is None
    assert rank_agreement([], []) is None
    assert rank_agreement([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_unpaired_values_are_an_error():
    with pytest.raises(ValueError, match="paired"):
        rank_agreement([1.0, 2.0], [1.0])


def test_seed_stats_sample_std_and_non_finite_values_dropped():
    stats = SeedStats.of([1.0, 2.0, 3.0, math.nan])
    assert (stats.mean, stats.n, stats.low, stats.high) == (2.0, 3, 1.0, 3.0)
    assert stats.std == pytest.approx(1.0)
    assert SeedStats.of([5.0]).std == 0.0
    assert SeedStats.of([math.inf]) is None and SeedStats.of([]) is None
