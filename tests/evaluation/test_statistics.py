"""Intervals with known answers."""
import numpy as np
import pytest

from nnunet_anatomask.evaluation.statistics import paired_interval


def test_constant_difference_has_a_zero_width_interval():
    a = np.linspace(0.5, 0.9, 20)
    mean, lo, hi = paired_interval(a, a - 0.1)
    assert mean == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_interval_of_a_normal_sample():
    d = np.random.default_rng(1).normal(0.05, 0.02, 30)
    mean, lo, hi = paired_interval(d, np.zeros(30))
    se = d.std(ddof=1) / np.sqrt(30)
    assert lo < mean < hi and hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert paired_interval(d, np.zeros(30)) == (mean, lo, hi)  # fixed seed


def test_pairs_are_kept():
    """Catches an unpaired bootstrap: a and b vary a lot together, their difference not at all."""
    base = np.random.default_rng(2).uniform(0, 1, 25)
    _, lo, hi = paired_interval(base + 0.02, base)
    assert hi - lo < 1e-9


def test_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        paired_interval([1.0, 2.0], [1.0])
