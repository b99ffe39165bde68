"""Learning-rate schedules: the paper's inverse-sqrt (fairseq), polynomial decay, cosine with warmup."""
from __future__ import annotations

import math

import pytest

from harness.config import TrainerConfig
from harness.schedules import learning_rate


def cfg(schedule, **kw):
    return TrainerConfig(schedule=schedule, lr=5e-4, max_steps=100, **kw)


def test_inverse_sqrt_matches_fairseq():
    c = cfg("inverse_sqrt", warmup_steps=8, warmup_init_lr=1e-7)
    assert learning_rate(c, 0) == pytest.approx(1e-7)
    assert learning_rate(c, 4) == pytest.approx(1e-7 + (5e-4 - 1e-7) / 2)
    assert learning_rate(c, 8) == pytest.approx(5e-4)
    assert learning_rate(c, 32) == pytest.approx(5e-4 * math.sqrt(8 / 32))


def test_polynomial_decay_warms_up_from_zero_and_ends_at_end_lr():
    c = cfg("polynomial", warmup_steps=10, end_lr=1e-5, power=1.0)
    assert learning_rate(c, 0) == 0.0 and learning_rate(c, 10) == pytest.approx(5e-4)
    assert learning_rate(c, 55) == pytest.approx(1e-5 + (5e-4 - 1e-5) * 0.5)
    assert learning_rate(c, 100) == pytest.approx(1e-5)


def test_cosine_with_warmup():
    c = cfg("cosine", warmup_steps=10, warmup_init_lr=0.0, end_lr=0.0)
    assert learning_rate(c, 5) == pytest.approx(2.5e-4)
    assert learning_rate(c, 55) == pytest.approx(2.5e-4)
    assert learning_rate(c, 100) == pytest.approx(0.0, abs=1e-12)


def test_constant_after_warmup():
    c = cfg("constant", warmup_steps=0)
    assert learning_rate(c, 0) == learning_rate(c, 99) == 5e-4
