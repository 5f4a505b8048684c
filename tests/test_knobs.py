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


def test_scheme_config_inline_file_and_refusals(monkeypatch, tmp_path):
    """nnUNet_anatomask_scheme_config: a JSON object inline or in a file; bad JSON, a non-object, a missing file
    are refused with the variable's name."""
    monkeypatch.setenv(knobs.SCHEME_CONFIG, '{"mask_ratio": 0.75}')
    assert knobs.scheme_config() == {"mask_ratio": 0.75}
    (tmp_path / "ablation.json").write_text('{"use_mps": false}')
    monkeypatch.setenv(knobs.SCHEME_CONFIG, str(tmp_path / "ablation.json"))
    assert knobs.scheme_config() == {"use_mps": False}
    for value, message in (("{mask_ratio: 0.75}", "its value is not valid JSON"),
                           (str(tmp_path / "missing.json"), "neither a JSON object nor an existing file"),
                           ('{"a": 1', "not valid JSON")):
        monkeypatch.setenv(knobs.SCHEME_CONFIG, value)
        with pytest.raises(knobs.KnobError, match=f"nnUNet_anatomask_scheme_config.*{message}"):
            knobs.check_all()
    (tmp_path / "list.json").write_text("[0.75]")
    monkeypatch.setenv(knobs.SCHEME_CONFIG, str(tmp_path / "list.json"))
    with pytest.raises(knobs.KnobError, match="holds a list, not a JSON object"):
        knobs.scheme_config()
    monkeypatch.delenv(knobs.SCHEME_CONFIG)
    assert knobs.scheme_config() == {}


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
