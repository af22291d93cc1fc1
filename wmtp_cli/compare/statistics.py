"""Means with confidence intervals and paired differences, for pass@k over seeds and problems.

The data of one cell (a weighting, a grid value) is a matrix ``values[s, i]``: the pass@k of problem i
in the run with seed s. Every cell of a comparison has the same seeds and problems, so two cells pair
up entry by entry (same seed, same problem).

- :func:`bootstrap_mean`: the mean over seeds and problems with a percentile bootstrap interval. Each
  resample draws seeds with replacement and, independently, problems with replacement (the same problems
  for every seed drawn), so the interval counts both sources of variation: which problems the benchmark
  happens to hold and which seeds the runs happened to use.
- :func:`paired_difference`: the mean of ``a - b`` with the same bootstrap on the paired differences, and
  a two-sided paired permutation p-value: under "no difference", each pair's difference is as likely to
  have either sign, so the p-value is the share of random sign flips (pair by pair) whose mean is at least
  as far from 0 as the observed one, counting the observed arrangement itself.

Identical inputs give a difference of exactly 0, an interval [0, 0] and p = 1. Randomness comes from a
generator seeded by the caller, so a table recomputes to the same digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 4000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Difference:
    interval: Interval  # of the mean of a - b
    p_value: float  # two-sided, paired permutation (sign flips)

    def as_dict(self) -> dict[str, float]:
        return {**self.interval.as_dict(), "p_value": self.p_value}


def _matrix(values) -> np.ndarray:
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"expected a (seeds, problems) matrix with at least one entry, got shape {matrix.shape}")
    return matrix


def bootstrap_mean(values, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval:
    """The mean of ``values`` (seeds x problems) and its percentile bootstrap interval over seeds and problems."""
    matrix = _matrix(values)
    n_seeds, n_problems = matrix.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(resamples, n_seeds))  # (R, S)
    problems = rng.integers(0, n_problems, size=(resamples, n_problems))  # (R, P)
    means = matrix[seeds[:, :, None], problems[:, None, :]].mean(axis=(1, 2))  # (R,)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(matrix.mean()), float(low), float(high))


def sign_flip_p_value(differences, resamples: int = RESAMPLES, seed: int = 0) -> float:
    """Two-sided paired permutation p-value of the mean of ``differences`` against 0 (see the module docstring)."""
    d = _matrix(differences).ravel()
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, d.size))
    flipped = np.abs((signs * d).mean(axis=1))
    # a tolerance of rounding, so that an arrangement as extreme as the observed one counts as such
    as_extreme = int((flipped >= observed - 1e-12 * max(1.0, observed)).sum())
    return (1 + as_extreme) / (1 + resamples)


def paired_difference(a, b, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> Difference:
    """The mean of ``a - b`` (same seed, same problem), its bootstrap interval and its paired permutation p-value."""
    a, b = _matrix(a), _matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same seeds and problems: shapes {a.shape} and {b.shape}")
    differences = a - b
    interval = bootstrap_mean(differences, resamples, seed, level)
    return Difference(interval, sign_flip_p_value(differences, resamples, seed))
