"""Every scheme trainer nnU-Net's lookup finds pretrains with the stage-1 recipe it documents (docs/backbones.md,
each scheme's page): the scheme's own on nnU-Net's CNNs, nnssl's EvaMAE recipe on Primus, and the mask ratio each
scheme keeps. Built in-process as nnU-Net builds them, on the shared tiny 3D plans (the network on the meta device).

Catches: a Primus trainer that pretrains with a scheme's CNN settings, RandomMask keeping 0.6 on Primus, a paper
ratio replaced by nnssl's, HPM's weight-decay exemption lost, a trainer added without a recipe here.
"""
import json

import pytest
import torch

from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE
from nnunet_anatomask.pretraining.schemes.settings import describe
from nnunet_anatomask.trainers import registry
from tests.pretraining.schemes.conftest import tiny_model
from tests.trainers.helpers import make_trainer
from tests.trainers.test_stage2_optimisers import TRAINERS

# The CNN recipe of each scheme: lr, min_lr, betas, weight decay, warm-up, schedule, clip, decay of 1-D parameters.
CNN = {
    "RandomMask": (1e-4, 1e-6, (0.9, 0.999), 1e-5, 0.02, "cosine", 12.0, True),
    "AnatoMask": (1e-4, 1e-6, (0.9, 0.999), 1e-5, 0.02, "cosine", 12.0, True),
    "GLMAE": (1e-4, 1e-6, (0.9, 0.999), 1e-5, 0.02, "cosine", 12.0, True),
    "AMLP": (1e-4, 1e-6, (0.9, 0.999), 1e-5, 0.02, "cosine", 12.0, True),
    "SelfMedHPM": (1e-4, 0.0, (0.9, 0.95), 0.05, 0.05, "cosine", 12.0, False),
}
# Mask ratio at the first and last of 10 epochs, CNN and Primus.
RATIOS = {
    "RandomMask": ((0.6, 0.6), (0.75, 0.75)),   # SparK / AnatoMask's 0.6; nnssl's 0.75 on Primus
    "GLMAE": ((0.6, 0.6), (0.75, 0.75)),        # ours: RandomMask's
    "AnatoMask": ((0.6, 0.6), (0.6, 0.6)),      # the paper's
    "SelfMedHPM": ((0.75, 0.75), (0.75, 0.75)),  # HPM's
    "AMLP": ((0.25, 0.75), (0.25, 0.75)),       # AMR
}
SCHEME_TRAINERS = {name: cls for name, cls in TRAINERS.items() if name in registry.SCHEME_TRAINERS}


def test_every_scheme_trainer_has_a_recipe_here():
    assert len(SCHEME_TRAINERS) == 5 * len(CNN) and {c.scheme_class.name for c in SCHEME_TRAINERS.values()} == set(CNN)


def test_every_recipe_trainer_pretrains_as_its_recipe_less_trainer():
    """A recipe trainer's stage 1 is its base's: the same scheme class, and a base that the test above covers."""
    recipe_trainers = {n: c for n, c in TRAINERS.items() if n in registry.RECIPE_TRAINERS and hasattr(c, "scheme_class")}
    assert recipe_trainers
    for name, cls in recipe_trainers.items():
        base = name.rsplit("_", 1)[0]
        assert base in SCHEME_TRAINERS and SCHEME_TRAINERS[base].scheme_class is cls.scheme_class, name


@pytest.mark.parametrize("name", sorted(SCHEME_TRAINERS))
def test_stage1_recipe_of_every_trainer(name, demo3d, monkeypatch, tmp_path):
    trainer_class = SCHEME_TRAINERS[name]
    runner = make_trainer(demo3d, trainer_class, monkeypatch, tmp_path, fold="all").stage1
    recipe, scheme_name, primus = runner.recipe, trainer_class.scheme_class.name, "_Primus" in name
    if primus:
        assert recipe == NNSSL_EVA_MAE
    else:
        assert (recipe.lr, recipe.min_lr, recipe.betas, recipe.weight_decay, recipe.warmup_fraction,
                recipe.schedule, recipe.grad_clip, recipe.decay_norms_and_biases) == CNN[scheme_name]
        assert recipe.drop_path_rate == 0 and recipe.mask_ratio is None
    model = tiny_model()
    scheme = trainer_class.scheme_class(model, model.grid, 10, config=runner.config)  # the runner's settings
    assert (scheme.ratio(0), scheme.ratio(9)) == pytest.approx(RATIOS[scheme_name][primus])


# RandomMask's stage 1 on Primus by the setting primus_recipe: weight decay, betas, top drop-path, mask ratio, lr,
# warm-up fraction, schedule, clip.
PRIMUS_RECIPES = {
    None: (0.05, (0.9, 0.98), 0.2, 0.75, 3e-4, 0.05, "poly", 1.0),  # unset: nnssl's
    "scheme": (1e-5, (0.9, 0.999), 0.0, 0.6, 1e-4, 0.02, "cosine", 12.0),  # RandomMask's own
}


@pytest.mark.parametrize("choice", list(PRIMUS_RECIPES))
def test_primus_stage1_builds_by_the_chosen_recipe(choice, demo3d, monkeypatch, tmp_path):
    """The real build of RandomMask on Primus S, by nnssl's recipe (the default) or, with the setting
    primus_recipe "scheme", by RandomMask's own: one AdamW group with its settings over the model, its mask ratio,
    its drop-path (rising to 0.2 in encoder and light decoder, or none), its first lr and clip; the choice in the
    log line of settings and the checkpoint's. Catches: the setting ignored, nnssl's default lost."""
    from nnunet_anatomask.trainers.registry import nnUNetTrainerRandomMask_PrimusS
    if choice is not None:
        monkeypatch.setenv("nnUNet_anatomask_scheme_config", json.dumps({"primus_recipe": choice}))
    runner = make_trainer(demo3d, nnUNetTrainerRandomMask_PrimusS, monkeypatch, tmp_path, fold="all").stage1
    runner.build()
    weight_decay, betas, drop_path, ratio, lr, warmup, schedule, clip = PRIMUS_RECIPES[choice]
    (group,) = runner.loop.optimizer.param_groups
    assert (group["weight_decay"], group["betas"]) == (weight_decay, betas)
    assert {id(p) for p in group["params"]} == {id(p) for p in runner.model.parameters()}
    assert runner.scheme.config.mask_ratio == ratio
    blocks = runner.model.network.eva.blocks
    assert blocks[0].drop_path1.__class__.__name__ == "Identity"
    assert getattr(blocks[-1].drop_path1, "drop_prob", 0.0) == pytest.approx(drop_path)
    assert getattr(runner.model.decoder_blocks[-1].drop_path2, "drop_prob", 0.0) == pytest.approx(drop_path)
    assert runner.recipe.lr_at(0, runner.num_epochs) == pytest.approx(lr / max(1, round(warmup * runner.num_epochs)))
    assert (runner.recipe.schedule, runner.recipe.grad_clip) == (schedule, clip)
    saved = runner.interop_fields()["scheme_settings"]["primus_recipe"]
    assert saved == (choice or "nnssl") and f"primus_recipe={saved!r}" in describe(runner.config)


def test_selfmedhpm_exempts_biases_and_norms_from_weight_decay(demo3d, monkeypatch, tmp_path):
    """HPM (main_pretrain.py, timm's add_weight_decay): biases and norm weights, here also the mask tokens and the
    predictor's LayerNorm, get no weight decay; every conv and linear weight gets 0.05."""
    from nnunet_anatomask.trainers.registry import nnUNetTrainerSelfMedHPM
    runner = make_trainer(demo3d, nnUNetTrainerSelfMedHPM, monkeypatch, tmp_path, fold="all").stage1
    runner.build()
    exempt, decayed = runner.loop.optimizer.param_groups
    assert exempt["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.05
    assert all(p.ndim <= 1 for p in exempt["params"]) and all(p.ndim > 1 for p in decayed["params"])
    trained = {id(p) for p in [*runner.model.parameters(), *runner.scheme.trainable_parameters()]}
    assert {id(p) for g in (exempt, decayed) for p in g["params"]} == trained
    assert torch.is_tensor(runner.scheme.predictor.mlp[0].weight) and \
        any(p is runner.scheme.predictor.mlp[0].weight for p in exempt["params"])
