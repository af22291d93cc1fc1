"""The comparison's statistics on textbook cases (wmtp_cli/compare/statistics.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wmtp_cli.compare.statistics import bootstrap_mean, paired_difference, sign_flip_p_value


def test_identical_inputs_differ_by_exactly_zero_with_p_one():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(3, 50)).astype(float)
    d = paired_difference(a, a.copy())
    assert d.interval.mean == 0.0 and d.interval.low == 0.0 and d.interval.high == 0.0
    assert d.p_value == 1.0


def test_a_known_difference_is_found():
    """Problems solved with probability 0.7 against 0.3: the difference 0.4 is inside the interval, 0 is not."""
    rng = np.random.default_rng(1)
    a = (rng.random((3, 200)) < 0.7).astype(float)
    b = (rng.random((3, 200)) < 0.3).astype(float)
    d = paired_difference(a, b)
    assert d.interval.low < 0.4 < d.interval.high
    assert d.interval.low > 0.2
    assert d.p_value < 0.001


def test_no_difference_is_not_found():
    rng = np.random.default_rng(2)
    a = (rng.random((3, 200)) < 0.5).astype(float)
    b = (rng.random((3, 200)) < 0.5).astype(float)
    d = paired_difference(a, b)
    assert d.interval.low < 0 < d.interval.high and d.p_value > 0.05


def test_the_interval_of_a_mean_matches_the_normal_approximation():
    """One seed, 2,000 Bernoulli(0.5) problems: the interval is about mean +- 1.96 sqrt(p (1-p) / n)."""
    rng = np.random.default_rng(3)
    values = (rng.random((1, 2000)) < 0.5).astype(float)
    interval = bootstrap_mean(values)
    half = 1.96 * math.sqrt(values.mean() * (1 - values.mean()) / values.size)
    assert interval.high - interval.mean == pytest.approx(half, rel=0.1)
    assert interval.mean - interval.low == pytest.approx(half, rel=0.1)


def test_the_permutation_p_value_of_a_small_exact_case():
    """Four pairs with differences (1, 1, 1, 1): of the 16 sign patterns only the 2 all-equal ones reach |mean| = 1,
    so the exact p-value is 2/16; the sampled one is close."""
    assert sign_flip_p_value([[1.0, 1.0, 1.0, 1.0]], resamples=20000) == pytest.approx(2 / 16, abs=0.01)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="same seeds and problems"):
        paired_difference(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="matrix"):
        bootstrap_mean([])
