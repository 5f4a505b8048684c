"""A scheme's settings from a user's JSON (pretraining/schemes/settings.py): unknown names, wrong types and values
out of range are refused by name, with the fix; good values are taken, ints as numbers, lists as pairs; the run's
recipe on each backbone (run_settings: primus_recipe), and settings a backbone would ignore refused."""
import pytest

from nnunet_anatomask.pretraining.backbones import backbone_for
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from nnunet_anatomask.pretraining.schemes import SCHEMES
from nnunet_anatomask.pretraining.schemes.base import SchemeConfigError
from nnunet_anatomask.pretraining.schemes.masked_modelling import with_recipe_ratio
from nnunet_anatomask.pretraining.schemes.settings import describe, plain, run_settings, scheme_config
from tests.pretraining.backbones.test_primus import PATCH as PRIMUS_PATCH, tiny_primus
from tests.pretraining.schemes.conftest import tiny_model

ANATOMASK, RANDOM_MASK = SCHEMES["AnatoMask"], SCHEMES["RandomMask"]


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
                           "base_lr, .*complementary_k, difficulty_space. Fix: correct it in nnUNet_anatomask_scheme_config"),
    ({"mask_ratio": "high"}, "the AnatoMask setting 'mask_ratio' must be a number, got 'high' \\(str\\). Fix"),
    ({"mask_ratio": True}, "the AnatoMask setting 'mask_ratio' must be a number, got True \\(bool\\)"),
    ({"complementary_k": 2.0}, "'complementary_k' must be a whole number, got 2.0 \\(float\\)"),
    ({"error_map": "comp"}, "'error_map' must be one of 'random', 'complementary', got 'comp'"),
    ({"betas": [0.9]}, "'betas' must be a list of 2 values, got \\[0.9\\]"),
    ({"mask_ratio": 1.5}, "the AnatoMaskConfig setting 'mask_ratio' = 1.5 is not allowed: it must be in \\(0, 1\\). Fix"),
    ({"complementary_k": 1}, "'complementary_k' = 1 is not allowed: it must be >= 2"),
    ({"crop_scale": 0.5}, "'crop_scale' = 0.5 is not allowed: it must be >= 1"),
    ({"primus_recipe": "cnn"}, "the AnatoMask setting 'primus_recipe' must be one of 'nnssl', 'scheme', got 'cnn'"),
])
def test_refusals_name_the_setting_and_the_fix(settings, message):
    with pytest.raises(SchemeConfigError, match=message):
        scheme_config(ANATOMASK, settings)


def test_a_bool_setting_takes_only_true_or_false():
    with pytest.raises(SchemeConfigError, match="'use_mps' must be true or false, got 0 \\(int\\)"):
        scheme_config(SCHEMES["AMLP"], {"use_mps": 0})
    assert scheme_config(SCHEMES["AMLP"], {"use_mps": False}).use_mps is False


def test_a_backbone_recipe_ratio_replaces_only_a_default_the_paper_does_not_fix():
    """Primus' recipe ratio (nnssl's 0.75) replaces RandomMask's default 0.6; a ratio the user set wins; a paper's
    ratio (AnatoMask's 0.6) is kept; a recipe without a ratio changes nothing. Catches: the paper ratio replaced,
    the user's setting overwritten."""
    random_mask = SCHEMES["RandomMask"]
    assert with_recipe_ratio(scheme_config(random_mask), random_mask, 0.75).mask_ratio == 0.75
    user = {"mask_ratio": 0.5}
    assert with_recipe_ratio(scheme_config(random_mask, user), random_mask, 0.75, user).mask_ratio == 0.5
    assert with_recipe_ratio(scheme_config(ANATOMASK), ANATOMASK, 0.75).mask_ratio == 0.6
    assert with_recipe_ratio(scheme_config(random_mask), random_mask, None).mask_ratio == 0.6


def primus_backbone():
    return backbone_for(tiny_primus(), PRIMUS_PATCH)


def cnn_backbone():
    return backbone_for(tiny_model().network, (16, 16, 16))


def test_optimiser_settings_are_refused_where_the_backbone_has_its_own_recipe():
    """On Primus (nnssl's recipe) a base_lr or betas in the user's settings would be ignored: refused by name,
    with the fixes; other settings pass, and optimiser settings pass where the scheme's own recipe is used."""
    with pytest.raises(SchemeConfigError, match="RandomMask settings base_lr, betas are not used on this network: "
                                                "stage 1 follows nnssl BaseEvaMAETrainer here.*Fix: leave them out.*"
                                                'or set "primus_recipe": "scheme" to pretrain with them'):
        run_settings(RANDOM_MASK, {"base_lr": 1e-3, "betas": [0.9, 0.9], "mask_ratio": 0.5}, primus_backbone())
    assert run_settings(RANDOM_MASK, {"mask_ratio": 0.5}, primus_backbone())[0].mask_ratio == 0.5
    assert run_settings(RANDOM_MASK, {"base_lr": 1e-3}, cnn_backbone())[1].lr == 1e-3


def test_primus_recipe_chooses_the_primus_stage1_recipe():
    """Unset (or "nnssl"): nnssl's recipe on Primus, with its ratio 0.75 for RandomMask and drop-path 0.2;
    "scheme": the scheme's own settings (optimiser settings then taken), its ratio 0.6, no drop-path. Catches: the
    setting ignored, the default changed, the scheme's settings refused when they are used."""
    for overrides in ({}, {"primus_recipe": "nnssl"}):
        config, recipe = run_settings(RANDOM_MASK, overrides, primus_backbone())
        assert recipe == NNSSL_EVA_MAE and config.mask_ratio == 0.75
    config, recipe = run_settings(RANDOM_MASK, {"primus_recipe": "scheme", "weight_decay": 0.01}, primus_backbone())
    assert recipe == RANDOM_MASK.config_class(weight_decay=0.01).recipe("RandomMask")
    assert (recipe.lr, recipe.betas, recipe.weight_decay, recipe.drop_path_rate) == (1e-4, (0.9, 0.999), 0.01, 0.0)
    assert config.mask_ratio == 0.6 and config.primus_recipe == "scheme"
    assert "primus_recipe='scheme'*" in describe(config) and plain(config)["primus_recipe"] == "scheme"


def test_primus_recipe_is_refused_on_a_network_without_a_recipe_of_its_own():
    """The CNNs always pretrain with the scheme's recipe: a primus_recipe there would be ignored."""
    with pytest.raises(SchemeConfigError, match="RandomMask settings primus_recipe are not used on this network: "
                                                "stage 1 follows RandomMask's settings here.*leave them out of "
                                                "nnUNet_anatomask_scheme_config for this trainer\\.$"):
        run_settings(RANDOM_MASK, {"primus_recipe": "scheme"}, cnn_backbone())
