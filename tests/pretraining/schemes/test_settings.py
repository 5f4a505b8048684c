"""A scheme's settings from a user's JSON (pretraining/schemes/settings.py): unknown names, wrong types and values
out of range are refused by name, with the fix; good values are taken, ints as numbers, lists as pairs."""
import pytest

from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.base import SchemeConfigError
from nnunet_anatomask.pretraining.schemes.settings import describe, plain, scheme_config

ANATOMASK = SCHEMES["AnatoMask"]


def test_defaults_and_overrides():
    assert scheme_config(ANATOMASK) == ANATOMASK.config_class()
    config = scheme_config(ANATOMASK, {"mask_ratio": 0.75, "betas": [0.9, 0.95], "complementary_k": 3,
                                       "error_map": "complementary", "base_lr": 1})
    assert (config.mask_ratio, config.betas, config.complementary_k, config.error_map) == \
        (0.75, (0.9, 0.95), 3, "complementary")
    assert config.base_lr == 1.0 and isinstance(config.base_lr, float)  # an int is a number
    assert plain(config)["betas"] == [0.9, 0.95]  # plain Python for the checkpoint
    assert "mask_ratio=0.75*" in describe(config) and "teacher_ratio=0.6," in describe(config)


def test_every_scheme_has_one_config_dataclass_with_its_defaults():
    for name, scheme in SCHEMES.items():
        assert scheme.config_class.__dataclass_params__.frozen, name
        assert scheme_config(scheme) == scheme.config_class(), name


@pytest.mark.parametrize("settings, message", [
    ({"mask_ration": 0.7}, "AnatoMask has no setting 'mask_ration'. Did you mean 'mask_ratio'\\? Its settings: "
                           "base_lr, .*complementary_k. Fix: correct it in nnUNet_anatomask_scheme_config"),
    ({"mask_ratio": "high"}, "the AnatoMask setting 'mask_ratio' must be a number, got 'high' \\(str\\). Fix"),
    ({"mask_ratio": True}, "the AnatoMask setting 'mask_ratio' must be a number, got True \\(bool\\)"),
    ({"complementary_k": 2.0}, "'complementary_k' must be a whole number, got 2.0 \\(float\\)"),
    ({"error_map": "comp"}, "'error_map' must be one of 'random', 'complementary', got 'comp'"),
    ({"betas": [0.9]}, "'betas' must be a list of 2 values, got \\[0.9\\]"),
    ({"mask_ratio": 1.5}, "the AnatoMaskConfig setting 'mask_ratio' = 1.5 is not allowed: it must be in \\(0, 1\\). Fix"),
    ({"complementary_k": 1}, "'complementary_k' = 1 is not allowed: it must be >= 2"),
    ({"crop_scale": 0.5}, "'crop_scale' = 0.5 is not allowed: it must be >= 1"),
])
def test_refusals_name_the_setting_and_the_fix(settings, message):
    with pytest.raises(SchemeConfigError, match=message):
        scheme_config(ANATOMASK, settings)


def test_a_bool_setting_takes_only_true_or_false():
    with pytest.raises(SchemeConfigError, match="'use_mps' must be true or false, got 0 \\(int\\)"):
        scheme_config(SCHEMES["AMLP"], {"use_mps": 0})
    assert scheme_config(SCHEMES["AMLP"], {"use_mps": False}).use_mps is False
