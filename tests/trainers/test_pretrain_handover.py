"""nnUNetv2_pretrain ... all, reused by a fold; the stage-1 checkpoint handed to nnU-Net's plain trainer through
its own -pretrained_weights code, and to nnUNetTrainerFinetune through the real CLI."""
import os

import pytest
import torch
from nnunetv2.run.run_training import maybe_load_checkpoint
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from tests.conftest import run_cli
from tests.trainers.helpers import fold_folder, load_weights_only, make_trainer, relative_distances, stage1_log_text, \
    stage2_log_text

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


def test_finetune_cli_from_stage1_checkpoint(demo3d, pretrained_all, monkeypatch, tmp_path):
    """Stage 2 of nnUNetTrainerFinetune starts from the -pretrained_weights file given on the real command line.

    Measure: per conv / transposed-conv weight (seg_layers aside), ||w_final - w_ref|| / ||w_ref||. After
    1 epoch x 2 SGD steps (lr <= 1e-2, momentum 0.99, gradient norm clipped to 12 by nnU-Net's train_step) the
    weights move by at most ~0.6 in norm, a few percent of every such tensor (the smallest, the first conv, has
    norm ~8), so the final weights must be within 0.25 of the stage-1 checkpoint's; an independent random init of
    the same network is ~sqrt(2) away (two independent He inits), which the test checks too, so the measure
    separates the two and cannot pass by accident. Mutation caught: stage 2 not starting from the loaded weights
    (e.g. the network re-initialised in nnUNetTrainerStage2Recipe.run_training before training)."""
    _, ckpt = pretrained_all
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerFinetune",
             "-pretrained_weights", ckpt, "-device", "cpu"], demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerFinetune", "3d_fullres", 0)
    final = torch.load(os.path.join(fold0, "checkpoint_final.pth"), weights_only=False)["network_weights"]
    stage1 = load_weights_only(ckpt)["network_weights"]
    random_init = make_trainer(demo3d, nnUNetTrainer, monkeypatch, tmp_path / "init")
    random_init.initialize()
    to_stage1 = relative_distances(final, stage1)
    to_random = relative_distances(final, random_init.network.state_dict())
    assert any(k.startswith("encoder.") for k in to_stage1) and any(k.startswith("decoder.") for k in to_stage1)
    assert max(to_stage1.values()) < 0.25, sorted(to_stage1.items(), key=lambda kv: -kv[1])[:3]
    assert min(to_random.values()) > 1.0, sorted(to_random.items(), key=lambda kv: kv[1])[:3]


def test_scratch_cli(demo3d, tmp_path):
    """nnUNetTrainerScratch runs stage 2's recipe with the knobs' budget and no stage-1 weights.

    Checked: no stage 1 (no pretraining folder, no stage-1 or pretrained-weights line in the log); nnssl's recipe
    (nnUNetTrainer_warmup's warm-up optimiser line); the knob budget (1 epoch: current_epoch 1, one train loss
    logged); and the trainer name nnU-Net predicts with. Mutation caught: nnUNetTrainerStage2Recipe built on
    nnUNetTrainer instead of nnUNetTrainer_warmup (no warm-up), or Scratch getting a scheme trainer's stage 1."""
    results = tmp_path / "results"
    run_cli(["nnUNetv2_train", demo3d.dataset_id, "3d_fullres", 0, "-tr", "nnUNetTrainerScratch", "-device", "cpu"],
            demo3d.train_env(results))
    fold0 = fold_folder(results, demo3d.dataset_name, "nnUNetTrainerScratch", "3d_fullres", 0)
    final = torch.load(os.path.join(fold0, "checkpoint_final.pth"), weights_only=False)
    assert not os.path.isdir(os.path.join(fold0, "pretraining"))
    log = stage2_log_text(fold0)
    assert "stage-1" not in log and "pretrained weights" not in log.lower()
    assert "Initialized warmup_all optimizer and lr_scheduler at epoch 0" in log
    assert final["trainer_name"] == "nnUNetTrainerScratch"
    assert final["current_epoch"] == 1 and len(final["logging"]["train_losses"]) == 1
