"""The linear probe (trainers/stage1_probe.py, docs/watching.md)."""
import json
import os

import numpy as np
import pytest
import torch

from nnunet_anatomask.trainers.stage1_probe import LinearHead, LinearProbe, chance_dice, dice_counts, mean_dice, \
    voxel_features
from tests.trainers.helpers import stage1_log_text
from tests.trainers.test_stage1_heldout import assert_rng_unchanged, built_runner, global_rng


@pytest.mark.parametrize("patch", [(8, 12, 16), (12, 16)])
def test_head_fitted_on_voxels_is_the_head_on_the_patch(patch):
    """The features read at voxels (grid_sample) times the head equal the head's patch logits (1x1 convolutions,
    bi/trilinear upsampling) at those voxels, also at the border. Catches: align_corners=True, axes in the wrong
    order, nearest instead of linear reads."""
    torch.manual_seed(0)
    skips = [torch.randn(2, c, *[p // 2 ** s for p in patch]) for s, c in enumerate((3, 5, 7))]
    head = LinearHead([3, 5, 7], 4, patch)
    with torch.no_grad():
        for weight in head.weights:
            weight.normal_()
        head.bias.normal_()
    voxels = torch.stack([torch.randint(p, (2, 40)) for p in patch], dim=-1)
    voxels[:, 0] = 0
    voxels[:, 1] = torch.tensor(patch) - 1
    on_patch = head(skips).movedim(1, -1)[(torch.arange(2)[:, None], *voxels.unbind(-1))]
    on_voxels = head.voxel_logits(voxel_features(skips, voxels, patch))
    assert torch.allclose(on_voxels, on_patch, atol=1e-5)


def test_dice_and_chance_known_answers():
    """Class 1: TP 2, FP 1, FN 1 -> 2*2/(4+1+1) = 2/3; class 2 absent and never predicted: left out of the mean;
    the ignore label (3) counts nowhere. Chance: class 1 covers 3 of 6 scored voxels -> 2*0.5/1.5 = 2/3."""
    labels = torch.tensor([[1, 1, 1, 0, 0, 0, 3, 3]]).view(1, 1, 8)
    predicted = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 2]])
    logits = torch.nn.functional.one_hot(predicted, 3).movedim(-1, 1).float()
    counts = dice_counts(logits, labels, classes=3, ignore_label=3)
    assert counts.tolist() == [[2, 1, 1], [0, 0, 0]]
    assert mean_dice(counts) == pytest.approx(2 / 3)
    assert chance_dice(labels, classes=3, ignore_label=3) == pytest.approx(2 / 3)
    assert np.isnan(mean_dice(torch.zeros(2, 3)))


def test_probe_rises_above_chance_after_a_short_stage1(watched):
    """Stage 1 with nnUNet_anatomask_probe_every=1: the probe's Dice after each epoch, on the validation crops, is far
    above chance (labelling every voxel foreground); it is logged, printed, summarised. Catches: labels cut from
    other boxes than the images, features of masked inputs, a head that is not fitted."""
    log = watched.checkpoint("checkpoint_final.pth")["logging"]
    dice, chance = log["probe_dice"], log["probe_chance"]
    assert len(dice) == 2 and chance[0] < 0.2
    assert all(d > c + 0.4 for d, c in zip(dice, chance)), (dice, chance)
    assert np.isfinite(log["probe_dice_at_init"][0]) and all(t > 0 for t in log["probe_time"])
    text = stage1_log_text(os.path.dirname(watched.folder))
    assert "Linear probe at initialisation (random weights): Dice" in text
    assert text.count("Linear probe: validation Dice") == 2
    summary = json.load(open(os.path.join(watched.folder, "summary.json")))
    assert summary["final_probe_dice"] == dice[-1]


def test_probe_leaves_the_model_and_the_global_rngs_alone(demo3d, monkeypatch, tmp_path):
    """A probe round (at initialisation, then one more) changes no weight, restores train mode and draws nothing from
    the global torch / numpy / random streams. Catches: a probe that trains or switches the encoder, batches or
    voxels drawn from the global streams."""
    runner = built_runner(demo3d, monkeypatch, tmp_path)
    weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
    before = global_rng()
    probe = LinearProbe(every=1, iterations=20)
    probe.on_run_start(runner)
    figures = {}
    probe.on_epoch_end(runner, 0, figures)
    assert_rng_unchanged(before)
    assert runner.model.training and all(torch.equal(v, runner.model.state_dict()[k]) for k, v in weights.items())
    assert figures["probe_dice"] == pytest.approx(probe.at_init)  # same weights, same crops: the same probe


def test_fold_all_is_not_probed_and_says_so(demo3d, monkeypatch, tmp_path):
    runner = built_runner(demo3d, monkeypatch, tmp_path, fold="all")
    probe = LinearProbe(every=1)
    probe.on_run_start(runner)
    figures = {}
    probe.on_epoch_end(runner, 0, figures)
    assert figures == {} and "Linear probe: off: fold 'all' has no validation cases" in open(runner.log.log_file).read()
