"""pretraining/recipes.py: nnssl's Primus recipe pinned to nnssl's numbers, the poly schedule and the weight-decay
groups by hand (docs/backbones.md). Each docstring names the mutation the test catches."""
import pytest
import torch
from torch import nn

from nnunet_anatomask.pretraining import schedules
from nnunet_anatomask.pretraining.recipes import NNSSL_EVA_MAE, Stage1Recipe


def test_nnssl_eva_mae_recipe_is_nnssls():
    """nnssl BaseEvaMAETrainer: AdamW 3e-4, weight decay 5e-2, betas (0.9, 0.98), every parameter decayed, clip 1,
    warm-up 50 of 1000 epochs then poly, drop-path 0.2; BaseMAETrainer: mask_percentage 0.75."""
    r = NNSSL_EVA_MAE
    assert (r.lr, r.weight_decay, r.betas, r.grad_clip, r.schedule) == (3e-4, 5e-2, (0.9, 0.98), 1.0, "poly")
    assert (r.warmup_fraction, r.decay_norms_and_biases, r.drop_path_rate, r.mask_ratio) == (0.05, True, 0.2, 0.75)


def test_poly_schedule_by_hand_at_nnssls_length():
    """1000 epochs: lr 3e-4 (e + 1) / 50 for e < 50 (Lin_incr_LRScheduler), then 3e-4 (1 - (e - 50) / 950)^0.9
    (PolyLRScheduler_offset). Catches: poly without the warm-up offset, the cosine used for "poly", exponent 1."""
    lr = [NNSSL_EVA_MAE.lr_at(e, 1000) for e in range(1000)]
    assert lr[0] == pytest.approx(3e-4 / 50) and lr[49] == pytest.approx(3e-4) and lr[50] == pytest.approx(3e-4)
    assert lr[525] == pytest.approx(3e-4 * 0.5 ** 0.9)
    assert lr[999] == pytest.approx(3e-4 * (1 / 950) ** 0.9)
    assert all(a >= b for a, b in zip(lr[49:], lr[50:]))


def test_cosine_recipe_is_the_schemes_schedule():
    recipe = Stage1Recipe(source="t", lr=1e-4, min_lr=1e-6, betas=(0.9, 0.999), weight_decay=1e-5,
                          warmup_fraction=0.02)
    assert [recipe.lr_at(e, 100) for e in range(100)] == [schedules.warmup_cosine_lr(e, 100, 1e-4, 1e-6, 0.02)
                                                          for e in range(100)]
    with pytest.raises(ValueError, match="schedule"):
        Stage1Recipe(source="t", lr=1, min_lr=0, betas=(0.9, 0.9), weight_decay=0, warmup_fraction=0, schedule="step")


def test_weight_decay_groups():
    """decay_norms_and_biases=False: biases, norm weights and other 1-D parameters get none, matrices and convs
    get the recipe's (timm's rule, HPM); True: one group, all decayed (nnssl, AnatoMask's official optimiser).
    Catches: the exemption applied to conv weights, or not at all."""
    model = nn.Sequential(nn.Conv3d(1, 4, 3), nn.InstanceNorm3d(4, affine=True), nn.Linear(4, 2))
    exempt = Stage1Recipe(source="t", lr=1e-4, min_lr=0, betas=(0.9, 0.95), weight_decay=0.05, warmup_fraction=0.05,
                          decay_norms_and_biases=False).optimizer(model.parameters())
    groups = {g["weight_decay"]: {tuple(p.shape) for p in g["params"]} for g in exempt.param_groups}
    assert groups == {0.0: {(4,), (2,)}, 0.05: {(4, 1, 3, 3, 3), (2, 4)}}
    assert [len(g["params"]) for g in exempt.param_groups] == [4, 2]
    everything = NNSSL_EVA_MAE.optimizer(model.parameters())
    assert len(everything.param_groups) == 1 and everything.param_groups[0]["weight_decay"] == 0.05
    assert everything.param_groups[0]["betas"] == (0.9, 0.98) and isinstance(everything, torch.optim.AdamW)
