"""Intervals for the difference between a scheme and Scratch, over training runs (seeds) and test cases.

Data of one table cell: per-case Dice ``[runs, cases]`` for the scheme and for Scratch. Runs are paired by seed
(the same seed draws the same batches for both, see ``launch.py``) and cases are paired (the same test cases).
The table's interval resamples runs and cases together: the two-way ("pigeonhole") bootstrap of Owen (2007,
Ann. Appl. Stat. 1(2):419-444), each resample drawing runs and cases with replacement, independently. scipy's
``bootstrap`` resamples along one axis only, so that one is written here (ours, a few lines of NumPy);
its two one-axis components use ``scipy.stats.bootstrap`` (paired): runs only (the seed component, on per-run
means) and cases only (the case component, on per-case means over runs).

The smallest difference a cell could have detected (docs/results.md): with se the standard deviation of the
two-way bootstrap means (the standard error of the mean difference, from the measured variance of runs and cases),
a true difference of MDE = (z_{1 - alpha/2} + z_{power}) x se is found (its interval excludes 0) with probability
``POWER`` at level alpha = 1 - ``LEVEL``: 2.80 se for 95 % and 80 % power, the minimum detectable effect of Bloom
(1995, Evaluation Review 19(5):547-556). A "not shown" verdict then means: no difference of MDE or more, at that
power; a smaller one may exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
POWER = 0.80


@dataclass(frozen=True)
class Difference:
    """Mean difference (scheme - Scratch) and its intervals; a component is None where its axis has one entry."""
    diff: float
    low: float
    high: float
    runs: int
    cases: int
    seed_low: Optional[float] = None
    seed_high: Optional[float] = None
    case_low: Optional[float] = None
    case_high: Optional[float] = None
    se: Optional[float] = None          # standard deviation of the two-way bootstrap means
    detectable: Optional[float] = None  # the smallest difference found with probability POWER (minimum_detectable)


def minimum_detectable(se: float, level: float = LEVEL, power: float = POWER) -> float:
    """(z_{1 - alpha/2} + z_{power}) x se, alpha = 1 - level (Bloom 1995): 2.80 se at 95 % and 80 % power."""
    from scipy.stats import norm
    return float((norm.ppf(1 - (1 - level) / 2) + norm.ppf(power)) * se)


def paired_interval(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> tuple[float, float, float]:
    """mean(a - b) and its percentile interval over paired resamples (``scipy.stats.bootstrap``, ``paired=True``);
    percentile rather than scipy's default BCa, which is undefined (NaN) when every paired difference is the same."""
    from scipy.stats import bootstrap
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"paired_interval needs two equally long, non-empty sequences (got {a.shape}, {b.shape})")
    mean = float(np.mean(a - b))
    if len(a) == 1:
        return mean, mean, mean
    res = bootstrap((a, b), lambda x, y, axis: np.mean(x - y, axis=axis), paired=True, vectorized=True,
                    n_resamples=resamples, confidence_level=level, method="percentile",
                    rng=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def two_way_means(d: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The means of mean(d) over two-way resamples of d [runs, cases], runs and cases resampled independently
    (Owen 2007): a resample's mean is w_runs' d w_cases / (runs * cases) with multinomial counts w."""
    runs, cases = d.shape
    rng = np.random.default_rng(seed)
    w_runs = rng.multinomial(runs, np.full(runs, 1 / runs), size=resamples)
    w_cases = rng.multinomial(cases, np.full(cases, 1 / cases), size=resamples)
    return np.einsum("br,rc,bc->b", w_runs, d, w_cases) / (runs * cases)


def two_way_interval(d: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of mean(d) for d [runs, cases] over the two-way resamples (``two_way_means``)."""
    low, high = np.percentile(two_way_means(d, resamples, seed), [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def difference(scheme: np.ndarray, scratch: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED,
               level: float = LEVEL) -> Difference:
    """scheme, scratch: per-case Dice [runs, cases], row i of both from the same seed, columns the same cases."""
    scheme, scratch = np.asarray(scheme, dtype=np.float64), np.asarray(scratch, dtype=np.float64)
    if scheme.ndim != 2 or scheme.shape != scratch.shape or 0 in scheme.shape:
        raise ValueError(f"difference needs two [runs, cases] arrays of one shape (got {scheme.shape}, "
                         f"{scratch.shape})")
    d = scheme - scratch
    runs, cases = d.shape
    means = two_way_means(d, resamples, seed)
    low, high = (float(x) for x in np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2]))
    se = float(np.std(means, ddof=1))
    seed_part = paired_interval(scheme.mean(1), scratch.mean(1), resamples, seed, level)[1:] if runs > 1 else \
        (None, None)
    case_part = paired_interval(scheme.mean(0), scratch.mean(0), resamples, seed, level)[1:] if cases > 1 else \
        (None, None)
    return Difference(float(d.mean()), low, high, runs, cases, *seed_part, *case_part, se,
                      minimum_detectable(se, level))
