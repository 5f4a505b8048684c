"""Intervals with known answers: the paired one-axis bootstrap (scipy) and the runs x cases two-way bootstrap."""
import numpy as np
import pytest

from nnunet_anatomask.evaluation.statistics import difference, paired_interval, two_way_interval


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


def test_identical_runs_give_a_zero_width_seed_component():
    """Every run of each trainer the same: no seed variation, so the seed component has zero width and the
    combined interval is the case interval (catches cases and runs mixed up, or a combined interval that adds
    a seed spread that is not there)."""
    rng = np.random.default_rng(3)
    scheme_run, scratch_run = rng.uniform(0.6, 0.9, 15), rng.uniform(0.6, 0.9, 15)
    d = difference(np.tile(scheme_run, (3, 1)), np.tile(scratch_run, (3, 1)))
    assert d.runs == 3 and d.cases == 15
    assert d.seed_low == pytest.approx(d.diff) and d.seed_high == pytest.approx(d.diff)
    _, case_lo, case_hi = paired_interval(scheme_run, scratch_run)
    assert (d.case_low, d.case_high) == pytest.approx((case_lo, case_hi))
    assert d.high - d.low == pytest.approx(case_hi - case_lo, rel=0.15)


def test_identical_cases_give_a_zero_width_case_component():
    """Runs differ, cases not: the case component is zero wide and the combined interval is the seed one."""
    shift = np.array([[0.00], [0.05], [0.10], [0.02], [0.08]])
    scheme, scratch = np.full((5, 12), 0.7) + shift, np.full((5, 12), 0.65)
    d = difference(scheme, scratch)
    assert d.diff == pytest.approx(0.1)
    assert d.case_low == pytest.approx(d.diff) and d.case_high == pytest.approx(d.diff)
    assert d.seed_high - d.seed_low > 0.03
    assert d.high - d.low == pytest.approx(d.seed_high - d.seed_low, rel=0.15)


def test_runs_are_paired_by_seed():
    """A seed effect shared by both trainers cancels (catches runs resampled apart for scheme and Scratch)."""
    seed_effect = np.array([[-0.2], [0.0], [0.2]])
    case_values = np.random.default_rng(4).uniform(0.5, 0.8, 10)
    d = difference(case_values + seed_effect + 0.03, case_values + seed_effect)
    assert d.low == pytest.approx(0.03) and d.high == pytest.approx(0.03)


def test_two_way_interval_covers_the_true_difference():
    """Simulated runs x cases with a seed effect, a case effect and noise: the 95 % interval holds the true
    difference in most of 200 simulations (the two-way bootstrap is known to be conservative)."""
    rng = np.random.default_rng(5)
    hits = 0
    for sim in range(200):
        d = 0.02 + rng.normal(0, 0.02, (5, 1)) + rng.normal(0, 0.03, (1, 20)) + rng.normal(0, 0.01, (5, 20))
        lo, hi = two_way_interval(d, resamples=1000, seed=sim)
        hits += lo <= 0.02 <= hi
    assert hits >= 180


def test_one_run_has_no_seed_component():
    d = difference(np.array([[0.8, 0.7, 0.9]]), np.array([[0.7, 0.7, 0.8]]))
    assert d.seed_low is None and d.runs == 1 and d.low <= d.diff <= d.high


def test_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        paired_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="one shape"):
        difference(np.zeros((2, 3)), np.zeros((3, 3)))


def test_smallest_detectable_difference():
    """MDE = (z_0.975 + z_0.8) x se = 2.8016 se (Bloom 1995), se the std of the two-way bootstrap means."""
    from nnunet_anatomask.evaluation.statistics import minimum_detectable, two_way_means
    assert minimum_detectable(1.0) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert minimum_detectable(0.01, level=0.90, power=0.5) == pytest.approx(0.01 * 1.644854, abs=1e-6)
    rng = np.random.default_rng(1)
    scheme, scratch = rng.normal(0.7, 0.05, (5, 30)), rng.normal(0.7, 0.05, (5, 30))
    d = difference(scheme, scratch)
    assert d.se == pytest.approx(np.std(two_way_means(scheme - scratch), ddof=1))
    assert d.detectable == pytest.approx(2.8016 * d.se, rel=1e-4)
    assert difference(np.full((3, 4), 0.8), np.full((3, 4), 0.7)).detectable == pytest.approx(0.0)
