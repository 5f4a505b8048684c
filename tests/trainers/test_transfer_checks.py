"""A stage-1 checkpoint from another dataset (a pool): other channels, other plans and other CT statistics each
stop nnUNetTrainerFinetune before any training, with both values and the fix (docs/pools_and_ddp.md)."""
import copy

import pytest
import torch

from nnunet_anatomask.checkpoint_io import CheckpointError
from nnunet_anatomask.trainers.registry import nnUNetTrainerFinetune, nnUNetTrainerScratch
from nnunet_anatomask.trainers.transfer_checks import check_same_plans, check_transfer
from tests.trainers.helpers import make_trainer

CONFIG = "3d_fullres"


@pytest.fixture
def pool(demo3d) -> dict:
    """A stage-1 checkpoint's transfer-relevant content, pretrained on a 'pool' planned like demo3d."""
    plans = copy.deepcopy(demo3d.plans())
    plans["dataset_name"] = "Dataset601_Pool"
    return {"scheme": "AnatoMask", "init_args": {"plans": plans, "dataset_json": demo3d.dataset_json()}}


def check(pool: dict, target_plans: dict, target_json: dict) -> None:
    check_transfer(pool, target_plans, target_json, CONFIG, "-pretrained_weights pool.pth")


def as_ct(plans: dict) -> dict:
    plans = copy.deepcopy(plans)
    plans["configurations"][CONFIG]["normalization_schemes"] = ["CTNormalization"]
    plans["foreground_intensity_properties_per_channel"]["0"].update(
        {"mean": 60.0, "std": 40.0, "percentile_00_5": -50.0, "percentile_99_5": 200.0})
    return plans


def test_same_plans_pass_and_moved_plans_pass(demo3d, pool):
    """The pool's plans moved to the target differ in data_identifier (-tp) and dataset_name only: accepted."""
    moved = copy.deepcopy(pool["init_args"]["plans"])
    moved["dataset_name"], moved["plans_name"] = demo3d.dataset_name, "nnUNetPlansFromPool"
    moved["configurations"][CONFIG]["data_identifier"] = "nnUNetPlansFromPool_3d_fullres"
    moved["configurations"][CONFIG]["batch_size"] = 4
    check(pool, moved, demo3d.dataset_json())


def test_other_channels_are_named(demo3d, pool):
    target_json = dict(demo3d.dataset_json(), channel_names={"0": "T2", "1": "FLAIR"})
    with pytest.raises(CheckpointError, match=r"pretrained on Dataset601_Pool with channels \['MRI'\].*"
                                              r"channels \['T2', 'FLAIR'\].*Fix: pretrain on a pool"):
        check(pool, demo3d.plans(), target_json)
    check(pool, demo3d.plans(), dict(demo3d.dataset_json(), channel_names={"0": "mri"}))  # case does not matter


def test_other_plans_name_each_difference_and_the_fix(demo3d, pool):
    target = copy.deepcopy(demo3d.plans())
    target["configurations"][CONFIG]["patch_size"] = [16, 32, 32]
    target["configurations"][CONFIG]["spacing"] = [2.0, 1.0, 1.0]
    with pytest.raises(CheckpointError) as error:
        check(pool, target, demo3d.dataset_json())
    message = str(error.value)
    assert "patch_size: [32, 32, 32] vs [16, 32, 32]" in message and "spacing: [1.0, 1.0, 1.0] vs [2.0, 1.0, 1.0]" \
        in message
    assert f"nnUNetv2_move_plans_between_datasets -s Dataset601_Pool -t {demo3d.dataset_name}" in message
    assert "nnUNetv2_preprocess -d" in message


def test_ct_pool_and_target_with_their_own_statistics_are_refused(demo3d, pool):
    """Catches: CT statistics not compared (plans otherwise equal: the configurations hash the same)."""
    pool = copy.deepcopy(pool)
    pool["init_args"]["plans"] = as_ct(pool["init_args"]["plans"])
    target = as_ct(demo3d.plans())
    check(pool, target, demo3d.dataset_json())  # the same statistics: accepted
    target["foreground_intensity_properties_per_channel"]["0"].update({"percentile_00_5": -1000.0, "std": 400.0})
    with pytest.raises(CheckpointError, match=r"normalised CT intensities with the statistics in Dataset601_Pool's "
                                              r"plans.*channel 0: clip \[-50, 200\], mean 60, std 40 vs clip "
                                              r"\[-1000, 200\], mean 60, std 400.*Fix: copy the pool's plans"):
        check(pool, target, demo3d.dataset_json())


def test_other_checkpoints_are_left_to_the_shape_check(demo3d, pool):
    """nnU-Net's own checkpoints (no 'scheme') from other datasets stay usable as before."""
    nnunet_ckpt = {k: v for k, v in pool.items() if k != "scheme"}
    check(nnunet_ckpt, demo3d.plans(), dict(demo3d.dataset_json(), channel_names={"0": "CT"}))


def test_finetune_refuses_before_training(demo3d, monkeypatch, tmp_path):
    """Wired into nnUNetTrainerFinetune's check of the pretrained-weights setting, in initialize() (before any
    training)."""
    trainer = make_trainer(demo3d, nnUNetTrainerScratch, monkeypatch, tmp_path)
    trainer.initialize()
    pool_json = dict(demo3d.dataset_json(), channel_names={"0": "CT"})
    ckpt = {"network_weights": trainer.network.state_dict(), "scheme": "AnatoMask", "configuration": CONFIG,
            "init_args": {"plans": demo3d.plans(), "dataset_json": pool_json}}
    torch.save(ckpt, tmp_path / "pool.pth")
    monkeypatch.setenv("nnUNet_anatomask_pretrained_weights", str(tmp_path / "pool.pth"))
    finetune = make_trainer(demo3d, nnUNetTrainerFinetune, monkeypatch, tmp_path)
    with pytest.raises(CheckpointError, match=r"channels \['CT'\]"):
        finetune.initialize()


def test_stage1_lookup_names_what_differs_in_the_plans(demo3d, pool):
    """A found stage-1 checkpoint of the same dataset whose plans hash differs: the entries are named."""
    replanned = copy.deepcopy(demo3d.plans())
    replanned["configurations"][CONFIG]["spacing"] = [1.5, 1.0, 1.0]
    ckpt = dict(pool, plans_hash="pool-hash")
    check_same_plans(ckpt, replanned, CONFIG, "pool-hash", "The stage-1 checkpoint X")  # same hash: nothing to say
    with pytest.raises(CheckpointError, match=r"X was pretrained with other plans than this run's \(checkpoint vs "
                                              r"this run\): spacing: \[1.0, 1.0, 1.0\] vs \[1.5, 1.0, 1.0\]"):
        check_same_plans(ckpt, replanned, CONFIG, "this-hash", "The stage-1 checkpoint X")
