import pytest

from nnunet_anatomask import knobs


def test_defaults(monkeypatch):
    for name in knobs.DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    assert knobs.read_knob(knobs.PRETRAIN_EPOCHS) == 1000
    assert knobs.read_knob(knobs.ITERS_PER_EPOCH) == 250


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "ten", "3e2"])
def test_bad_values_name_the_variable(monkeypatch, value):
    monkeypatch.setenv(knobs.SAVE_EVERY, value)
    with pytest.raises(knobs.KnobError, match=knobs.SAVE_EVERY):
        knobs.read_knob(knobs.SAVE_EVERY)


def test_fractions():
    assert knobs.validation_iterations(250) == 50
    assert knobs.validation_iterations(2) == 1
    assert knobs.warmup_epochs(0.05, 1000) == 50
    assert knobs.warmup_epochs(0.05, 3) == 1


@pytest.mark.parametrize("value", ["0", "-1e-3", "nan", "inf", "fast"])
def test_bad_learning_rates_name_the_variable(monkeypatch, value):
    monkeypatch.setenv(knobs.FINETUNE_LR, value)
    with pytest.raises(knobs.KnobError, match=knobs.FINETUNE_LR):
        knobs.check_all()


def test_learning_rate_unset_or_set(monkeypatch):
    monkeypatch.delenv(knobs.FINETUNE_LR, raising=False)
    assert knobs.read_lr(knobs.FINETUNE_LR) is None
    monkeypatch.setenv(knobs.FINETUNE_LR, " 3e-4 ")
    assert knobs.read_lr(knobs.FINETUNE_LR) == 3e-4


def test_counts_default_zero_and_refusals(monkeypatch):
    """The held-out crops and the probe cadence: whole numbers >= 0 (0 = off); anything else names the variable."""
    for name in knobs.COUNT_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    assert knobs.read_count(knobs.HELDOUT_CROPS) == 32 and knobs.read_count(knobs.PROBE_EVERY) == 0
    monkeypatch.setenv(knobs.PROBE_EVERY, " 0 ")
    assert knobs.read_count(knobs.PROBE_EVERY) == 0
    for value in ["-1", "1.5", "ten", "²"]:
        monkeypatch.setenv(knobs.HELDOUT_CROPS, value)
        with pytest.raises(knobs.KnobError, match=knobs.HELDOUT_CROPS):
            knobs.check_all()
