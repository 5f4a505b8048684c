"""Intervals for the difference between a scheme and Scratch."""
from __future__ import annotations

from typing import Sequence

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def paired_interval(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                    level: float = LEVEL) -> tuple[float, float, float]:
    """mean(a - b) and its percentile interval over paired resamples of the cases (``scipy.stats.bootstrap``,
    ``paired=True``); percentile rather than scipy's default BCa, which is undefined (NaN) when every paired
    difference is the same."""
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
