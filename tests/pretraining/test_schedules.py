import math

import pytest

from nnunet_anatomask.pretraining import schedules


def test_anatomask_alpha_known_values():
    assert schedules.hard_fraction_anatomask(0, 11) == 0.0
    assert schedules.hard_fraction_anatomask(5, 11) == pytest.approx(0.25)
    assert schedules.hard_fraction_anatomask(10, 11) == pytest.approx(0.5)
    assert schedules.hard_fraction_anatomask(0, 1) == 0.0  # E = 1: no division by zero, alpha 0


def test_hpm_alpha_known_values():
    assert schedules.hard_fraction_hpm(0, 10) == pytest.approx(0.05)
    assert schedules.hard_fraction_hpm(9, 10) == pytest.approx(0.5)


def test_momentum_ramps_over_first_quarter_then_constant():
    assert schedules.ema_momentum(0, 100) == pytest.approx(0.999)
    assert schedules.ema_momentum(10, 100) == pytest.approx(0.999 + 0.0009 * 10 / 25)
    assert schedules.ema_momentum(25, 100) == pytest.approx(0.9999)
    assert schedules.ema_momentum(99, 100) == pytest.approx(0.9999)
    assert schedules.ema_momentum(0, 1) == pytest.approx(0.999)


def test_warmup_then_cosine():
    # 100 epochs, 2 % warm-up = 2 epochs: 1/2, 2/2 of base, then cosine to min at the end
    lr = [schedules.warmup_cosine_lr(e, 100, 1e-4, 1e-6, 0.02) for e in range(100)]
    assert lr[0] == pytest.approx(0.5e-4)
    assert lr[1] == pytest.approx(1e-4)
    assert lr[2] == pytest.approx(1e-4)  # cosine starts at base
    mid = 2 + 49
    assert lr[mid] == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 49 / 98)))
    assert all(a >= b for a, b in zip(lr[2:], lr[3:]))
    # a 1-epoch run still has its warm-up epoch
    assert schedules.warmup_cosine_lr(0, 1, 1e-4, 1e-6, 0.02) == pytest.approx(1e-4)


def test_linear_ratio():
    assert schedules.linear_ratio(0, 5, 0.25, 0.75) == pytest.approx(0.25)
    assert schedules.linear_ratio(4, 5, 0.25, 0.75) == pytest.approx(0.75)
    assert schedules.linear_ratio(2, 5, 0.25, 0.75) == pytest.approx(0.5)
