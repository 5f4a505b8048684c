"""nnUNetv2_pretrain ... all, reused by a fold; the stage-1 checkpoint handed to nnU-Net's plain trainer through
its own -pretrained_weights code, and to nnUNetTrainerFinetune through the real CLI."""
import os

import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, stage1_log_text, stage2_log_text

TRAINER = "nnUNetTrainerRandomMask"


@pytest.fixture(scope="module")
def pretrained_all(demo3d, tmp_path_factory):
    """One nnUNetv2_pretrain D 3d_fullres all run; returns (results folder, fold_all stage-1 checkpoint)."""
    results = tmp_path_factory.mktemp("results_all")
    run_cli(["nnUNetv2_pretrain", demo3d.dataset_id, "3d_fullres", "all", "-tr", TRAINER, "-device", "cpu"],
            demo3d.train_env(results))
    fold_all = fold_folder(results, demo3d.dataset_name, TRAINER, "3d_fullres", "all")
    ckpt = os.path.join(fold_all, "pretraining", "checkpoint_final.pth")
    assert os.path.isfile(ckpt)
    assert not os.path.isfile(os.path.join(fold_all, "checkpoint_final.pth"))  # stage 1 only
    return results, ckpt


def test_fold_reuses_fold_all(demo3d, pretrained_all):
    results, ckpt = pretrained_all
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 1, "-tr", TRAINER, "-device", "cpu"],
            demo3d.train_env(results))
    fold1 = fold_folder(results, demo3d.dataset_name, TRAINER, "3d_fullres", 1)
    assert f"Using the stage-1 checkpoint {ckpt}" in stage2_log_text(fold1)
    assert not os.path.isdir(os.path.join(fold1, "pretraining"))  # stage 1 did not run again
    assert os.path.isfile(os.path.join(fold1, "checkpoint_final.pth"))


def test_plain_nnunet_trainer_takes_our_checkpoint(demo3d, pretrained_all, monkeypatch, tmp_path):
    """nnU-Net's own -pretrained_weights path (maybe_load_checkpoint -> load_pretrained_weights), plain trainer."""
    _, ckpt = pretrained_all
    trainer = make_trainer(demo3d, nnUNetTrainer, monkeypatch, tmp_path)
    maybe_load_checkpoint(trainer, continue_training=False, validation_only=False, pretrained_weights_file=ckpt)
    weights = load_weights_only(ckpt)["network_weights"]
    state = trainer.network.state_dict()
    transferred = [k for k in state if ".seg_layers." not in k]
    assert any(k.startswith("encoder.") for k in transferred) and any(k.startswith("decoder.") for k in transferred)
    for key in transferred:
        assert torch.equal(state[key], weights[key]), key


def test_finetune_cli_from_stage1_checkpoint(demo3d, pretrained_all, tmp_path):
    _, ckpt = pretrained_all
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune",
             "-pretrained_weights", ckpt, "-device", "cpu"], demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0)
    assert os.path.isfile(os.path.join(fold0, "checkpoint_final.pth"))


def test_scratch_cli(demo3d, tmp_path):
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerScratch", "-device", "cpu"],
            demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerScratch", "3d_fullres", 0)
    assert os.path.isfile(os.path.join(fold0, "checkpoint_final.pth"))
    assert not os.path.isdir(os.path.join(fold0, "pretraining"))
